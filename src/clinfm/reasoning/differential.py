"""Naive-Bayes differential diagnosis over the DDXPlus pathologies, with the findings behind each posterior.

log P(d, k | answers) = log prior(d) + log w(k) + sum over answers of log P(observed answer | d, k) + const: answers
independent given the pathology d and the answer profile k (``answer_model``); the differential is the margin
over k, reported through the answer model's calibration temperature.

* The chief complaint, findings read from the record and answers a clinician enters are taken as true:
  P(yes | d) is the table's fraction clipped to [eps, 1 - eps]. The patient's own answers (yes, no, don't know)
  go through the answer-noise model.
* Categorical / multi-choice evidence: "non-default value" vs "default", with the model derived in
  ``answer_model`` from which pathologies list the question and what its default value means; a descriptor
  counts only once its parent (pain, lesion, swelling) was answered present. The specific value chosen (which
  body part, how intense) does not separate pathologies: there is no per-value table. Age is recorded but not
  used. Sex only removes the female-only questions for a male patient (``data/evidence_sex.json``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clinfm.reasoning import answer_model as am
from clinfm.reasoning.answer_model import AnswerModel, load_answer_model
from clinfm.reasoning.knowledge import KnowledgeBase, load_knowledge_base
from clinfm.reasoning.models import AnsweredEvidence, AnswerSource, AnswerValue, Candidate, DifferentialResult, Finding

TOP_K = 5
CANT_MISS_THRESHOLD = 0.01
ABSTAIN_ENTROPY = 0.5
"""Abstain when the posterior keeps more than half its maximum entropy (about 7 equally likely pathologies)."""
ABSTAIN_TOP = 0.3
"""... or when the leading pathology is below 30%."""
YES = {"yes", "y", "true", "1", "present"}
NO = {"no", "n", "false", "0", "absent"}
DONT_KNOW = "don't know"
CERTAIN_SOURCES = ("complaint", "record", "clinician")
ASSUMPTIONS = [
    "answers are treated as independent given the pathology and the answer profile (naive Bayes)",
    "priors are the DDXPlus training-set case counts, not the prevalence in your clinic",
    "age is recorded but not used: the knowledge base has no age-conditional probabilities",
    *am.ASSUMPTIONS,
]


# --- answers ----------------------------------------------------------------------------------------------------

def parse_answer(kb: KnowledgeBase, evidence_id: str, value: AnswerValue,
                 source: AnswerSource = "patient") -> AnsweredEvidence:
    """Validate an answer against the evidence's type and values; say whether it means 'present'."""
    ev = kb.evidence(evidence_id)
    if isinstance(value, str) and value.strip().lower() in (DONT_KNOW, "dont know", "unknown"):
        return dont_know(kb, evidence_id, source)
    if ev.is_binary:
        present = _parse_bool(value, evidence_id)
        return AnsweredEvidence(evidence_id=ev.id, question=ev.question, value=present, present=present,
                                display="yes" if present else "no", source=source)
    values = value if isinstance(value, list) else [value]
    allowed = {str(v) for v in ev.possible_values}
    codes = [_value_code(v, ev.values) for v in values]
    bad = [v for v in codes if v not in allowed]
    if bad or (ev.data_type == "C" and len(codes) != 1):
        raise ValueError(f"answer {value!r} to {evidence_id} ({ev.data_type}) is not one of {sorted(allowed)[:12]}...")
    present = any(c != str(ev.default_value) for c in codes)
    typed = [int(c) if c.isdigit() else c for c in codes]
    display = ", ".join(ev.values.get(c, c) for c in codes)
    return AnsweredEvidence(evidence_id=ev.id, question=ev.question, value=typed if ev.data_type == "M" else typed[0],
                            present=present, display=display, source=source)


def _parse_bool(value: AnswerValue, evidence_id: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in YES or text in NO:
        return text in YES
    raise ValueError(f"answer {value!r} to binary evidence {evidence_id} is not yes/no")


def _value_code(value: AnswerValue, meanings: dict[str, str]) -> str:
    """Accept a value code ('V_123'), a scale number (7) or its English meaning ('nowhere')."""
    text = str(value).strip()
    by_meaning = {m.lower(): code for code, m in meanings.items()}
    return by_meaning.get(text.lower(), text)


# --- the posterior ----------------------------------------------------------------------------------------------

def dont_know(kb: KnowledgeBase, evidence_id: str, source: AnswerSource = "patient") -> AnsweredEvidence:
    """A "don't know" answer: it moves the posterior as P(don't know | d) says (a patient rarely doesn't know
    a finding they lack, more often one they have)."""
    ev = kb.evidence(evidence_id)
    return AnsweredEvidence(evidence_id=ev.id, question=ev.question, value=DONT_KNOW, present=False, unknown=True,
                            display=DONT_KNOW, source=source)


def observation(answer: AnsweredEvidence) -> int:
    return am.DONT_KNOW if answer.unknown else am.YES if answer.present else am.NO


def answer_log_likelihood(kb: KnowledgeBase, answer: AnsweredEvidence, model: AnswerModel | None = None) -> np.ndarray:
    """log P(answer | d, profile k), shape (K, D); certain sources (complaint, record, clinician) use the
    clipped table fraction for every profile, patient answers the answer-noise model."""
    model = model or load_answer_model()
    j = kb.evidence_index[answer.evidence_id]
    if answer.source in CERTAIN_SOURCES and not answer.unknown:
        q = am.finding_probability(kb)[:, j]
        row = np.log(q if answer.present else 1 - q)
        return np.broadcast_to(row, (len(model.profiles), len(row)))
    return am.observation_log_likelihood(kb, model)[:, observation(answer), :, j]


def usable_answers(kb: KnowledgeBase, answers: list[AnsweredEvidence], sex: str | None) -> list[AnsweredEvidence]:
    """Answers that may move the posterior: applicable to the sex, and a descriptor only under a parent answered
    present (its likelihood is conditional on the parent)."""
    applicable = kb.applicable_mask(sex)
    present = {a.evidence_id for a in answers if a.present}
    return [a for a in answers if applicable[kb.evidence_index[a.evidence_id]]
            and (kb.evidence(a.evidence_id).parent is None or kb.evidence(a.evidence_id).parent in present)]


def joint_log_posterior(kb: KnowledgeBase, answers: Iterable[AnsweredEvidence], sex: str | None = None,
                        model: AnswerModel | None = None) -> np.ndarray:
    """Unnormalized log posterior over (answer profile, pathology), shape (K, D)."""
    model = model or load_answer_model()
    out = model.log_weights[:, None] + kb.log_prior[None, :]
    for a in usable_answers(kb, list(answers), sex):
        out = out + answer_log_likelihood(kb, a, model)
    return out


def log_posterior(kb: KnowledgeBase, answers: list[AnsweredEvidence], sex: str | None = None,
                  model: AnswerModel | None = None) -> np.ndarray:
    """Unnormalized log posterior of the pathologies (profiles summed out), shape (D,)."""
    return am.mixture_log_posterior(joint_log_posterior(kb, answers, sex, model))


def normalize(log_post: np.ndarray) -> np.ndarray:
    z = np.exp(log_post - log_post.max())
    return z / z.sum()


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy along the last axis, in bits (0 log 0 = 0)."""
    p = np.asarray(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p), 0.0)
    return -terms.sum(axis=-1)


def _logsumexp(x: np.ndarray) -> float:
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum()))


def contributions(kb: KnowledgeBase, answers: list[AnsweredEvidence], log_post: np.ndarray, d: int,
                  model: AnswerModel | None = None) -> np.ndarray:
    """Log-likelihood ratio of each answer for pathology d against the rest of the differential, shape (A,).

    The rest is the mixture of the other pathologies weighted by their current posterior, so a finding counts
    'for' d when it separates d from its actual competitors, not from pathologies already ruled out; answer
    profiles are mixed with their current posterior weights.
    """
    others = np.arange(len(log_post)) != d
    log_w = log_post[others] - _logsumexp(log_post[others])
    model = model or load_answer_model()
    profile_w = normalize(am.mixture_log_posterior(joint_log_posterior(kb, answers, None, model).T))  # (K,)
    out = np.empty(len(answers))
    for i, a in enumerate(answers):
        ll = am.mixture_log_posterior(answer_log_likelihood(kb, a, model) + np.log(profile_w)[:, None])
        out[i] = ll[d] - _logsumexp(ll[others] + log_w)
    return out


def _findings(answers: list[AnsweredEvidence], llr: np.ndarray, sign: int, n: int = 3) -> list[Finding]:
    order = np.argsort(-sign * llr)
    return [Finding(evidence_id=answers[i].evidence_id, question=answers[i].question, answer=answers[i].display,
                    log_likelihood_ratio=round(float(llr[i]), 3))
            for i in order[:n] if sign * llr[i] > 0.05]


# --- the answer -------------------------------------------------------------------------------------------------

def abstention_reason(post: np.ndarray, n_answers: int, max_entropy: float = ABSTAIN_ENTROPY,
                      min_top: float = ABSTAIN_TOP) -> str | None:
    """Why the posterior is too flat to name a diagnosis, or None when it is not."""
    if n_answers == 0:
        return "insufficient evidence: no findings answered yet, the differential is the prior"
    h = float(entropy_bits(post) / np.log2(len(post)))
    if h > max_entropy:
        return f"insufficient evidence: posterior is flat (normalized entropy {h:.2f} > {max_entropy})"
    if post.max() < min_top:
        return f"insufficient evidence: leading pathology has only {post.max():.0%} (< {min_top:.0%})"
    return None


def differential(answers: list[AnsweredEvidence], sex: str | None = None, kb: KnowledgeBase | None = None,
                 top_k: int = TOP_K, cant_miss_threshold: float = CANT_MISS_THRESHOLD,
                 model: AnswerModel | None = None) -> DifferentialResult:
    """The ranked differential for these answers, can't-miss pathologies kept and flagged below the top k.

    Probabilities are the calibrated posterior (``answer_model.calibrated``), the one the interview stops on.
    """
    kb = kb or load_knowledge_base()
    model = model or load_answer_model()
    used = usable_answers(kb, answers, sex)
    lp = log_posterior(kb, answers, sex, model)
    post = am.calibrated(lp, model)
    order = np.argsort(-post)
    flagged = kb.cant_miss_mask & (post >= cant_miss_threshold)
    shown = list(order[:top_k]) + [d for d in order[top_k:] if flagged[d]]
    candidates = [_candidate(kb, used, lp, post, int(d), rank, bool(flagged[d]), model)
                  for rank, d in enumerate(shown, start=1)]
    reason = abstention_reason(post, sum(a.source != "record" for a in used))
    h = float(entropy_bits(post))
    return DifferentialResult(
        candidates=candidates,
        top=None if reason else candidates[0],
        probability=round(float(post[order[0]]), 6),
        entropy_bits=round(h, 4),
        normalized_entropy=round(h / float(np.log2(len(post))), 4),
        evidence=list(answers),
        abstained=reason is not None,
        abstention_reason=reason,
        warnings=_warnings(kb, answers, used, candidates),
        assumptions=ASSUMPTIONS,
        kb_version=kb.version,
    )


def _candidate(kb: KnowledgeBase, used: list[AnsweredEvidence], lp: np.ndarray, post: np.ndarray, d: int,
               rank: int, flagged: bool, model: AnswerModel) -> Candidate:
    p = kb.pathologies[d]
    llr = contributions(kb, used, lp, d, model) if used else np.zeros(0)
    return Candidate(rank=rank, pathology=p.name, icd10=p.icd10, severity=p.severity,
                     probability=round(float(post[d]), 6), cant_miss=flagged,
                     findings_for=_findings(used, llr, +1), findings_against=_findings(used, llr, -1))


def _warnings(kb: KnowledgeBase, answers: list[AnsweredEvidence], used: list[AnsweredEvidence],
              candidates: list[Candidate]) -> list[str]:
    out = [f"answer to {a.evidence_id} ignored: it does not apply to this patient's sex or its parent question "
           f"was not answered present" for a in answers if a not in used]
    urgent = [c.pathology for c in candidates if c.cant_miss]
    if urgent:
        out.append(f"can't-miss pathologies still on the differential: {', '.join(urgent)}")
    return out
