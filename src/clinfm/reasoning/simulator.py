"""Simulated DDXPlus patients (clean, noisy, incomplete) and batched interviews that answer the engine.

A case: pathology ~ condition counts; sex female/male with equal odds; each yes/no evidence present independently
with P(e | pathology) (female-only evidences absent for a male); a categorical or multi-choice descriptor is
non-default with the answer model's ``finding_probability`` when its parent (pain, lesion, swelling) is present.
One present non-antecedent symptom is the chief complaint, true and known (a case without one is redrawn).
Every answer the patient would give is drawn up front, so policies compare on the same answers:

* ``clean``: every answer true;
* ``noisy``: each answer wrong with probability ``error_rate`` (4%): yes <-> no, default <-> non-default;
* ``incomplete``: the patient knows each of their findings with probability ``known`` (60%); one they do not
  know is answered "no" with probability ``denial_share`` (1/2), else "don't know"; absent findings are "no".

The interviews are vectorized over cases with numpy; they use the same likelihoods as the session
(``answer_model.observation_log_likelihood``). All randomness comes from seeded Generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinfm.reasoning.answer_model import DONT_KNOW, NO, YES, AnswerModel, calibrated, finding_probability, \
    mixture_log_posterior, observation_log_likelihood
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.questions import information_gain

KINDS = ("clean", "noisy", "incomplete")
POLICIES = ("information_gain", "random", "most_common")


@dataclass(frozen=True)
class CaseBatch:
    """N simulated patients: what is true, and what each would answer to every question."""

    kind: str
    pathology: np.ndarray  # (N,) int
    male: np.ndarray  # (N,) bool
    truth: np.ndarray  # (N, E) bool: finding present (a non-default value for a descriptor)
    answers: np.ndarray  # (N, E) int8: YES / NO / DONT_KNOW the patient gives if asked
    initial_evidence: np.ndarray  # (N,) int: the chief complaint

    def __len__(self) -> int:
        return len(self.pathology)


@dataclass(frozen=True)
class InterviewBatch:
    """Per case: rank of the true pathology after the complaint and each question, where it stopped, how sure."""

    ranks: np.ndarray  # (N, budget + 1) int; rows repeat their last value once a case stopped
    questions: np.ndarray  # (N,) int asked
    confidence: np.ndarray  # (N,) calibrated posterior of the leading pathology when it stopped
    correct: np.ndarray  # (N,) bool: the leading pathology at the stop is the true one
    confident_stop: np.ndarray  # (N,) bool: stopped because confidence reached the threshold
    categorical_asked: np.ndarray  # (N,) int: categorical / multi-choice questions among those asked


def parent_index(kb: KnowledgeBase) -> np.ndarray:
    """Index of each evidence's parent question, -1 where it has none, shape (E,)."""
    return np.array([kb.evidence_index[e.parent] if e.parent else -1 for e in kb.evidences])


def sample_cases(kb: KnowledgeBase, n: int, seed: int = 0, kind: str = "clean", *, error_rate: float = 0.04,
                 known: float = 0.6, denial_share: float = 0.5) -> CaseBatch:
    """Draw ``n`` cases of one kind, reproducibly for a seed."""
    if kind not in KINDS:
        raise ValueError(f"case kind {kind!r} is not one of {KINDS}")
    rng = np.random.default_rng(seed)
    prior = np.exp(kb.log_prior)
    q = finding_probability(kb)
    parents = parent_index(kb)
    female_only = ~kb.applicable_mask("male")
    symptom = kb.binary_mask & ~np.array([e.is_antecedent for e in kb.evidences])
    rows: list[tuple[int, bool, np.ndarray, int]] = []
    while len(rows) < n:
        m = 2 * (n - len(rows)) + 8
        d = rng.choice(len(prior), size=m, p=prior)
        male = rng.random(m) < 0.5
        u = rng.random((m, len(kb.evidences)))
        pick = rng.random(m)
        truth = (u < kb.presence[d]) & kb.binary_mask & ~(male[:, None] & female_only)
        has_parent = parents >= 0
        parent_true = np.where(has_parent, truth[:, np.where(has_parent, parents, 0)], True)
        truth |= ~kb.binary_mask & (u < q[d]) & parent_true
        complaints = truth & symptom
        for i in np.flatnonzero(complaints.any(axis=1))[: n - len(rows)]:
            options = np.flatnonzero(complaints[i])
            rows.append((int(d[i]), bool(male[i]), truth[i], int(options[int(pick[i] * len(options))])))
    pathology = np.array([r[0] for r in rows])
    male = np.array([r[1] for r in rows])
    truth = np.stack([r[2] for r in rows])
    initial = np.array([r[3] for r in rows])
    answers = np.where(truth, YES, NO).astype(np.int8)
    if kind == "noisy":
        answers = np.where(rng.random(truth.shape) < error_rate, np.where(truth, NO, YES), answers).astype(np.int8)
    elif kind == "incomplete":
        unknown = truth & (rng.random(truth.shape) >= known)
        said = np.where(rng.random(truth.shape) < denial_share, NO, DONT_KNOW)
        answers = np.where(unknown, said, answers).astype(np.int8)
    answers[np.arange(len(rows)), initial] = YES
    return CaseBatch(kind, pathology, male, truth, answers, initial)


def complaint_log_likelihood(kb: KnowledgeBase, initial_evidence: np.ndarray | int) -> np.ndarray:
    """log P(chief complaint present | d), (N, D) or (D,): the complaint is what the patient came with, so it is
    taken as true (the answer model is not applied to it), as DDXPlus's initial evidence always is."""
    return np.log(kb.likelihood[:, initial_evidence]).T


def _rank(marginal: np.ndarray, d: np.ndarray) -> np.ndarray:
    own = marginal[np.arange(len(d)), d]
    return (marginal > own[:, None]).sum(axis=1)


def run_interviews(kb: KnowledgeBase, cases: CaseBatch, model: AnswerModel, *, budget: int = 15,
                   policy: str = "information_gain", threshold: float | None = None, seed: int = 0) -> InterviewBatch:
    """Interview every case: ask ``policy``'s question, read the pre-drawn answer, stop when confident or out."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    threshold = model.threshold if threshold is None else threshold
    rng = np.random.default_rng(seed)
    lik = np.exp(observation_log_likelihood(kb, model))  # (K, 3, D, E)
    log_lik = observation_log_likelihood(kb, model)
    n, e = cases.truth.shape
    rows = np.arange(n)
    parents = parent_index(kb)
    asked = np.zeros((n, e), dtype=bool)
    asked[rows, cases.initial_evidence] = True
    applicable = ~(cases.male[:, None] & ~kb.applicable_mask("male"))
    joint = model.log_weights[None, :, None] + (kb.log_prior + complaint_log_likelihood(kb, cases.initial_evidence))[:, None, :]
    prevalence = np.exp(kb.log_prior) @ finding_probability(kb)
    ranks = np.zeros((n, budget + 1), dtype=int)
    active = np.ones(n, dtype=bool)
    questions = np.zeros(n, dtype=int)
    cat_asked = np.zeros(n, dtype=int)
    confidence = np.zeros(n)
    confident_stop = np.zeros(n, dtype=bool)
    leader = np.zeros(n, dtype=int)
    for step in range(budget + 1):
        marginal = mixture_log_posterior(joint)
        ranks[:, step] = np.where(active, _rank(marginal, cases.pathology), ranks[:, max(step - 1, 0)])
        conf = calibrated(marginal, model)
        top = conf.max(axis=1)
        parent_yes = np.where(parents >= 0, asked[:, np.maximum(parents, 0)]
                              & (cases.answers[:, np.maximum(parents, 0)] == YES), True)
        askable = ~asked & applicable & (kb.binary_mask | parent_yes)
        stopping = active & ((top >= threshold) | (step == budget) | ~askable.any(axis=1))
        confidence[stopping] = top[stopping]
        leader[stopping] = conf[stopping].argmax(axis=1)
        confident_stop[stopping] = top[stopping] >= threshold
        active &= ~stopping
        if not active.any():
            break
        idx = np.flatnonzero(active)
        choice = _choose(policy, joint[idx], lik, askable[idx], prevalence, rng)
        asked[idx, choice] = True
        questions[idx] += 1
        cat_asked[idx] += ~kb.binary_mask[choice]
        obs = cases.answers[idx, choice]
        joint[idx] += log_lik[:, obs, :, choice]  # (n, K, D)
    return InterviewBatch(ranks, questions, confidence, leader == cases.pathology, confident_stop, cat_asked)


def _choose(policy: str, joint: np.ndarray, lik: np.ndarray, askable: np.ndarray, prevalence: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    if policy == "information_gain":
        post = np.exp(joint - joint.max(axis=(1, 2), keepdims=True))
        post /= post.sum(axis=(1, 2), keepdims=True)
        return np.where(askable, information_gain(post, lik), -1.0).argmax(axis=1)
    if policy == "random":
        return np.where(askable, rng.random(askable.shape), -1.0).argmax(axis=1)
    return np.where(askable, prevalence[None, :], -1.0).argmax(axis=1)


def full_profile_ranks(kb: KnowledgeBase, cases: CaseBatch, model: AnswerModel) -> np.ndarray:
    """Rank of the true pathology when every applicable question is answered, shape (N,)."""
    log_lik = observation_log_likelihood(kb, model)  # (K, 3, D, E)
    parents = parent_index(kb)
    applicable = ~(cases.male[:, None] & ~kb.applicable_mask("male"))
    parent_yes = np.where(parents >= 0, cases.answers[:, np.maximum(parents, 0)] == YES, True)
    used = applicable & (kb.binary_mask | parent_yes)
    joint = np.empty((len(cases), len(model.profiles), len(kb.pathologies)))
    for o in (YES, NO, DONT_KNOW):
        mask = (used & (cases.answers == o)).astype(float)  # (N, E)
        term = np.einsum("ne,kde->nkd", mask, log_lik[:, o])
        joint = term if o == YES else joint + term
    joint += model.log_weights[None, :, None] + kb.log_prior[None, None, :]
    return _rank(mixture_log_posterior(joint), cases.pathology)
