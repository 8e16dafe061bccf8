"""Which question to ask next: the unasked evidence with the largest expected information gain, and when to stop.

Only binary evidences are asked: categorical and multi-choice ones have no per-value probabilities in the
knowledge base (see ``differential``), so their expected gain cannot be computed honestly. The random and
most-common policies exist as baselines for ``benchmarks/ddx.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clinfm.reasoning.differential import entropy_bits
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.models import Question

CONFIDENCE_THRESHOLD = 0.9
Policy = Callable[[KnowledgeBase, np.ndarray, np.ndarray, np.random.Generator], int]
"""(kb, posterior (D,), askable mask (E,), rng) -> evidence index to ask next."""


def expected_information_gain(kb: KnowledgeBase, post: np.ndarray, askable: np.ndarray) -> np.ndarray:
    """H(posterior) - E_answer[H(posterior | answer)] in bits for every evidence, shape (E,); 0 where not askable."""
    lik = kb.likelihood.T  # (E, D) P(yes | d)
    joint_yes = lik * post  # (E, D)
    joint_no = (1 - lik) * post
    p_yes = joint_yes.sum(axis=1)  # (E,)
    p_no = 1 - p_yes
    h_yes = entropy_bits(joint_yes / p_yes[:, None])
    h_no = entropy_bits(joint_no / p_no[:, None])
    gain = entropy_bits(post) - (p_yes * h_yes + p_no * h_no)
    return np.where(askable, np.maximum(gain, 0.0), 0.0)


def askable_mask(kb: KnowledgeBase, asked: set[str], sex: str | None) -> np.ndarray:
    """Binary evidences applicable to the patient and not yet asked, shape (E,)."""
    mask = kb.binary_mask & kb.applicable_mask(sex)
    for eid in asked:
        mask[kb.evidence_index[eid]] = False
    return mask


def stop_reason(post: np.ndarray, asked: int, budget: int | None, askable: np.ndarray,
                threshold: float = CONFIDENCE_THRESHOLD) -> str | None:
    """Why questioning should stop now, or None to go on."""
    if post.max() >= threshold:
        return f"confident: leading pathology at {post.max():.0%} >= {threshold:.0%}"
    if budget is not None and asked >= budget:
        return f"question budget of {budget} spent"
    if not askable.any():
        return "no questions left to ask"
    return None


# --- policies ---------------------------------------------------------------------------------------------------

def information_gain_policy(kb: KnowledgeBase, post: np.ndarray, askable: np.ndarray,
                            rng: np.random.Generator) -> int:
    return int(np.argmax(np.where(askable, expected_information_gain(kb, post, askable), -np.inf)))


def random_policy(kb: KnowledgeBase, post: np.ndarray, askable: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(askable)))


def prevalence(kb: KnowledgeBase) -> np.ndarray:
    """Overall P(evidence present) under the prior, shape (E,)."""
    return np.exp(kb.log_prior) @ kb.presence


def most_common_policy(kb: KnowledgeBase, post: np.ndarray, askable: np.ndarray, rng: np.random.Generator) -> int:
    return int(np.argmax(np.where(askable, prevalence(kb), -1.0)))


POLICIES: dict[str, Policy] = {
    "information_gain": information_gain_policy,
    "most_common": most_common_policy,
    "random": random_policy,
}


def next_question(kb: KnowledgeBase, post: np.ndarray, askable: np.ndarray) -> Question | None:
    """The most informative askable question, with its text and options; None when nothing is left to learn."""
    if not askable.any():
        return None
    gain = expected_information_gain(kb, post, askable)
    j = information_gain_policy(kb, post, askable, np.random.default_rng(0))
    if gain[j] <= 1e-9:
        return None
    ev = kb.evidences[j]
    return Question(evidence_id=ev.id, text=ev.question, data_type=ev.data_type, options=["yes", "no", "don't know"],
                    is_antecedent=ev.is_antecedent, information_gain_bits=round(float(gain[j]), 4))
