"""Simulated patients drawn from the knowledge base, and interviews that answer the engine from their profile.

A case: pathology ~ condition counts; sex female/male with equal odds; each binary evidence present
independently with P(e | pathology) (female-only evidences absent for a male). DDXPlus starts every case from
an initial evidence, so one present non-antecedent symptom is drawn uniformly as the chief complaint; a case
with no present symptom is redrawn (DDXPlus has none). Categorical and multi-choice evidences are not
simulated: the table has no per-value probabilities for them. All randomness comes from one seeded Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinfm.reasoning.differential import normalize
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.questions import CONFIDENCE_THRESHOLD, Policy, stop_reason


@dataclass(frozen=True)
class SimulatedCase:
    pathology: int
    sex: str
    present: np.ndarray  # (E,) bool; False for every non-binary evidence
    initial_evidence: int


@dataclass(frozen=True)
class Interview:
    """Rank of the true pathology (0 = top) after the initial complaint and after each question."""

    ranks: list[int]
    stop_reason: str

    @property
    def questions(self) -> int:
        return len(self.ranks) - 1

    def rank_within(self, budget: int | None) -> int:
        return self.ranks[-1] if budget is None else self.ranks[min(budget, self.questions)]

    def questions_within(self, budget: int | None) -> int:
        return self.questions if budget is None else min(budget, self.questions)


def sample_cases(kb: KnowledgeBase, n: int, seed: int = 0) -> list[SimulatedCase]:
    """Draw ``n`` cases, reproducibly for a seed."""
    rng = np.random.default_rng(seed)
    prior = np.exp(kb.log_prior)
    symptom = kb.binary_mask & ~np.array([e.is_antecedent for e in kb.evidences])
    cases: list[SimulatedCase] = []
    while len(cases) < n:
        d = int(rng.choice(len(prior), p=prior))
        sex = "female" if rng.random() < 0.5 else "male"
        present = (rng.random(len(kb.evidences)) < kb.presence[d]) & kb.binary_mask & kb.applicable_mask(sex)
        complaints = np.flatnonzero(present & symptom)
        if complaints.size:
            cases.append(SimulatedCase(d, sex, present, int(rng.choice(complaints))))
    return cases


def _answer_log_lik(kb: KnowledgeBase, j: int, present: bool) -> np.ndarray:
    p = kb.likelihood[:, j]
    return np.log(p if present else 1 - p)


def _rank(log_post: np.ndarray, d: int) -> int:
    return int((log_post > log_post[d]).sum())


def interview(kb: KnowledgeBase, case: SimulatedCase, policy: Policy, rng: np.random.Generator,
              budget: int | None = None, threshold: float = CONFIDENCE_THRESHOLD) -> Interview:
    """Ask ``policy``'s questions, answered from the case's profile, until confident or out of questions."""
    askable = kb.binary_mask & kb.applicable_mask(case.sex)
    askable[case.initial_evidence] = False
    log_post = kb.log_prior + _answer_log_lik(kb, case.initial_evidence, True)
    ranks = [_rank(log_post, case.pathology)]
    while True:
        post = normalize(log_post)
        reason = stop_reason(post, len(ranks) - 1, budget, askable, threshold)
        if reason:
            return Interview(ranks, reason)
        j = policy(kb, post, askable, rng)
        askable[j] = False
        log_post = log_post + _answer_log_lik(kb, j, bool(case.present[j]))
        ranks.append(_rank(log_post, case.pathology))


def full_profile_ranks(kb: KnowledgeBase, cases: list[SimulatedCase]) -> np.ndarray:
    """Rank of the true pathology when every applicable binary evidence is answered, shape (N,)."""
    log_lik = np.log(kb.likelihood)  # (D, E)
    log_not = np.log(1 - kb.likelihood)
    out = np.empty(len(cases), dtype=int)
    for i, c in enumerate(cases):
        used = kb.binary_mask & kb.applicable_mask(c.sex)
        x = c.present[used].astype(float)
        lp = kb.log_prior + log_lik[:, used] @ x + log_not[:, used] @ (1 - x)
        out[i] = _rank(lp, c.pathology)
    return out
