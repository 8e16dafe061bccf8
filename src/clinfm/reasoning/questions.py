"""Which question to ask next: the unasked evidence with the largest expected information gain, and when to stop.

The gain is computed under the answer model (a patient may answer yes, no or "don't know", wrongly or not) on
the joint posterior over (answer profile, pathology). Yes/no, categorical and multi-choice evidences are all
candidates; a descriptor (pain location, lesion colour, ...) only once its parent was answered present, since
its likelihood is conditional on it. Under the per-value model of ``answer_model`` every non-default value is
equally likely under every pathology, so a categorical question's gain equals that of "default or not".
Stopping uses the calibrated posterior against the answer model's fitted threshold.
"""

from __future__ import annotations

import numpy as np

from clinfm.reasoning.answer_model import AnswerModel, observation_log_likelihood
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.models import AnsweredEvidence, Question

CHUNK = 128
"""Posteriors per block in ``information_gain``: (CHUNK, 3, E, D) floats stay near 30 MB."""
DONT_KNOW_OPTION = "don't know"


def information_gain(post: np.ndarray, lik: np.ndarray) -> np.ndarray:
    """Expected bits gained on the pathology by asking each evidence, shape (N, E).

    ``post`` (N, K, D) is the joint posterior over (answer profile, pathology), ``lik`` (K, 3, D, E) the answer
    probabilities. H(d) - sum_o P(o) H(d | o), with P(o, d) = sum_k post[k, d] P(o | k, d).
    """
    out = np.empty((post.shape[0], lik.shape[-1]))
    for s in range(0, post.shape[0], CHUNK):
        p = post[s:s + CHUNK]
        joint = np.einsum("nkd,kode->noed", p, lik)  # (n, 3, E, D) P(o, d)
        p_o = joint.sum(axis=-1)  # (n, 3, E)
        pd = p.sum(axis=1)  # (n, D)
        h_d = -(pd * np.log2(np.maximum(pd, 1e-300))).sum(axis=-1)
        j_log_j = (joint * np.log2(np.maximum(joint, 1e-300))).sum(axis=(1, 3))  # (n, E)
        o_log_o = (p_o * np.log2(np.maximum(p_o, 1e-300))).sum(axis=1)
        out[s:s + CHUNK] = h_d[:, None] + j_log_j - o_log_o
    return np.maximum(out, 0.0)


def expected_information_gain(kb: KnowledgeBase, joint_post: np.ndarray, askable: np.ndarray,
                              model: AnswerModel) -> np.ndarray:
    """Gain in bits of every evidence for one patient, shape (E,); 0 where not askable.

    ``joint_post`` is the normalized posterior over (profile, pathology), shape (K, D).
    """
    lik = np.exp(observation_log_likelihood(kb, model))
    return np.where(askable, information_gain(joint_post[None], lik)[0], 0.0)


def askable_mask(kb: KnowledgeBase, answers: list[AnsweredEvidence], sex: str | None) -> np.ndarray:
    """Evidences applicable to the patient, not yet answered (by anyone, the record included), and, for a
    descriptor, under a parent answered present; shape (E,)."""
    present = {a.evidence_id for a in answers if a.present}
    mask = kb.applicable_mask(sex) & np.array([e.parent is None or e.parent in present for e in kb.evidences])
    for a in answers:
        mask[kb.evidence_index[a.evidence_id]] = False
    return mask


def stop_reason(post: np.ndarray, asked: int, budget: int | None, askable: np.ndarray, threshold: float) -> str | None:
    """Why questioning should stop now, or None to go on; ``post`` is the calibrated posterior."""
    if post.max() >= threshold:
        return f"confident: leading pathology at {post.max():.1%} >= {threshold:.0%} (calibrated posterior)"
    if budget is not None and asked >= budget:
        return f"question budget of {budget} spent"
    if not askable.any():
        return "no questions left to ask"
    return None


def options(kb: KnowledgeBase, evidence_id: str) -> list[str]:
    """What the patient may answer: yes/no, the value meanings (or scale numbers), and "don't know"."""
    ev = kb.evidence(evidence_id)
    if ev.is_binary:
        return ["yes", "no", DONT_KNOW_OPTION]
    return [ev.values.get(str(v), str(v)) for v in ev.possible_values] + [DONT_KNOW_OPTION]


def next_question(kb: KnowledgeBase, joint_post: np.ndarray, askable: np.ndarray,
                  model: AnswerModel) -> Question | None:
    """The most informative askable question, with its text and options; None when nothing is left to learn."""
    if not askable.any():
        return None
    gain = expected_information_gain(kb, joint_post, askable, model)
    j = int(np.argmax(np.where(askable, gain, -1.0)))
    if gain[j] <= 1e-9:
        return None
    ev = kb.evidences[j]
    return Question(evidence_id=ev.id, text=ev.question, data_type=ev.data_type, options=options(kb, ev.id),
                    is_antecedent=ev.is_antecedent, information_gain_bits=round(float(gain[j]), 4))
