"""How patients answer: P(observed answer | pathology) once answers can be wrong, unknown or non-binary.

Two layers turn the DDXPlus table into answer likelihoods.

1. **What is true** (``finding_probability``, shape (D, E)): P(finding present | d). For a yes/no evidence it is
   the table's fraction. For a categorical or multi-choice evidence the table only says whether d's definition
   lists the question (0/1), and there is no per-value table, so the model is derived from the knowledge base's
   value lists (ASSUMPTIONS below): "present" means "a non-default value"; a descriptor is asked only once its
   parent (pain, skin lesion, swelling) was answered present, and then it is non-default with probability
   ``listed(d) x theta``, where theta = 1 when the default value means the descriptor is absent ("nowhere",
   "NA", 0 on a scale: a present pain is somewhere) and 1/2 when the default is an ordinary answer ("N": a
   lesion may or may not peel off, a patient may or may not have travelled: even odds, nothing published).
   Given "non-default", every non-default value is equally likely under every pathology (maximum entropy over
   the KB's value list), so the specific value cannot separate pathologies: that constant cancels in the
   posterior and is left out of the reported log-likelihoods.
2. **What the patient says** (``AnswerProfile``): a present finding is answered "yes" with probability
   1 - false_denial - dont_know_present, "no" with false_denial, "don't know" with dont_know_present; an absent
   one "yes" with false_claim, "don't know" with dont_know_absent. A patient who does not know a finding they
   have answers "no" (counted in false_denial) or "don't know": both are modelled. Several profiles (a reliable
   patient, an unreliable one, one who knows little) form a mixture with prior weights: the posterior runs over
   (profile, pathology) and the differential is its pathology margin, so the answers themselves say how far
   to trust the answers.

The rates, profile weights, the calibration temperature and the stopping threshold live in a JSON file
(packaged default ``clinfm/defaults/ddx/answer-model.json``, fitted by ``benchmarks/ddx.py --fit`` on tuning
cases; ``$CLINFM_DDX_ANSWER_MODEL`` or an explicit path overrides it, through ``clinfm.defaults.resolve``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from clinfm.defaults import resolve
from clinfm.reasoning.knowledge import KnowledgeBase

ENV_VAR = "CLINFM_DDX_ANSWER_MODEL"
OUTCOMES = ("yes", "no", "dont_know")
"""Observed answer classes; for a categorical evidence 'yes' is any non-default value and 'no' the default."""
YES, NO, DONT_KNOW = 0, 1, 2
FLOOR = 1e-6
"""Smallest answer probability: even a profile with zero error rates never makes an answer impossible."""
ABSENT_DEFAULTS = {"nowhere", "na"}
"""Default-value meanings that say the descriptor is absent (a present parent then has a non-default value)."""
ASSUMPTIONS = [
    "categorical and multi-choice answers: 'non-default value' is as likely as 'the pathology lists the question' "
    "(x 1/2 when the default is an ordinary answer such as 'N'); the specific value is equally likely under "
    "every pathology because the knowledge base has no per-value probabilities, so it does not move the posterior",
    "patients may deny a finding they have, claim one they lack or not know; the rates are a mixture of answer "
    "profiles fitted on simulated DDXPlus cases, not measured on real patients",
]


@dataclass(frozen=True)
class AnswerProfile:
    """One way of answering: the four error rates of a kind of patient, and its prior weight in the mixture."""

    name: str
    weight: float
    false_denial: float = 0.0
    false_claim: float = 0.0
    dont_know_present: float = 0.0
    dont_know_absent: float = 0.0

    def __post_init__(self) -> None:
        rates = {k: getattr(self, k) for k in ("false_denial", "false_claim", "dont_know_present", "dont_know_absent")}
        bad = {k: v for k, v in rates.items() if not 0 <= v < 1}
        if bad or self.false_denial + self.dont_know_present >= 1 or self.false_claim + self.dont_know_absent >= 1:
            raise ValueError(f"answer profile {self.name!r} has rates {rates}: each must lie in [0, 1) and the rates "
                             f"of a present (denial + don't know) or absent (claim + don't know) finding sum below 1")
        if not self.weight > 0:
            raise ValueError(f"answer profile {self.name!r} weight {self.weight!r} must be > 0")

    def observation(self, q: np.ndarray) -> np.ndarray:
        """P(yes, no, don't know | d) for true-presence probabilities ``q`` (any shape): shape (3, *q.shape)."""
        p_yes = q * (1 - self.false_denial - self.dont_know_present) + (1 - q) * self.false_claim
        p_no = q * self.false_denial + (1 - q) * (1 - self.false_claim - self.dont_know_absent)
        p_dk = q * self.dont_know_present + (1 - q) * self.dont_know_absent
        return np.maximum(np.stack([p_yes, p_no, p_dk]), FLOOR)


@dataclass(frozen=True)
class AnswerModel:
    """A mixture of answer profiles, a temperature for the stopping posterior and the stopping threshold."""

    profiles: tuple[AnswerProfile, ...]
    temperature: float = 1.0
    threshold: float = 0.9
    source: str = "built-in"
    fitted_on: dict = field(default_factory=dict, compare=False)
    version: str = "built-in"
    """A hash of the file it was read from: a session refuses to continue under a different model."""

    def __post_init__(self) -> None:
        if not self.profiles:
            raise ValueError("an answer model needs at least one profile")
        if not self.temperature > 0:
            raise ValueError(f"temperature {self.temperature!r} must be > 0")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold {self.threshold!r} must lie in (0, 1)")

    @property
    def log_weights(self) -> np.ndarray:
        w = np.array([p.weight for p in self.profiles], dtype=float)
        return np.log(w / w.sum())

    def to_json(self) -> str:
        data = {"profiles": [asdict(p) for p in self.profiles], "temperature": self.temperature,
                "threshold": self.threshold, "fitted_on": self.fitted_on}
        return json.dumps(data, indent=2) + "\n"


EXACT = AnswerModel((AnswerProfile("exact", 1.0),), source="exact", version="exact")
"""Every answer true and known: the engine's behaviour before answer noise was modelled (for tests, baselines)."""


def load_answer_model(path: str | Path | None = None) -> AnswerModel:
    """The answer model: ``path``, else ``$CLINFM_DDX_ANSWER_MODEL``, else the packaged fitted default."""
    source = resolve("ddx_answer_model", path)
    if not source.is_file():
        raise FileNotFoundError(f"answer model file {source} does not exist (from "
                                f"{'the argument' if path else ENV_VAR if os.environ.get(ENV_VAR) else 'the package'})")
    where = str(source) if (path or os.environ.get(ENV_VAR)) else "packaged:clinfm/defaults/ddx/answer-model.json"
    return parse_answer_model(source.read_text(), where)


@lru_cache(maxsize=16)
def parse_answer_model(text: str, source: str = "text") -> AnswerModel:
    """An answer model from its JSON text (cached: sessions reload it on every answer)."""
    try:
        data = json.loads(text)
        profiles = tuple(AnswerProfile(**p) for p in data["profiles"])
        return AnswerModel(profiles, float(data.get("temperature", 1.0)), float(data.get("threshold", 0.9)),
                           source, data.get("fitted_on", {}), "am-" + hashlib.sha256(text.encode()).hexdigest()[:12])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"answer model {source} is not valid: expected {{'profiles': [{{'name', 'weight', "
                         f"'false_denial', ...}}], 'temperature', 'threshold'}} ({exc})") from None


# --- what is true -----------------------------------------------------------------------------------------------

def descriptor_theta(kb: KnowledgeBase) -> np.ndarray:
    """P(non-default | listed, parent present) per evidence, shape (E,): 1 for binary evidences (unused)."""
    out = np.ones(len(kb.evidences))
    for j, e in enumerate(kb.evidences):
        if e.is_binary:
            continue
        default = str(e.default_value)
        meaning = e.values.get(default, default).strip().lower()
        absent_means_default = meaning in ABSENT_DEFAULTS or (default == "0" and not e.values)
        out[j] = 1.0 if absent_means_default else 0.5
    return out


def finding_probability(kb: KnowledgeBase) -> np.ndarray:
    """P(finding present | d), shape (D, E); a descriptor's is conditional on its parent being present."""
    q = kb.likelihood.copy()
    nonbinary = ~kb.binary_mask
    listed = kb.presence[:, nonbinary] > 0.5
    q[:, nonbinary] = np.where(listed, descriptor_theta(kb)[nonbinary] * (1 - kb.eps), kb.eps)
    return q


def observation_log_likelihood(kb: KnowledgeBase, model: AnswerModel) -> np.ndarray:
    """log P(observed answer o | d, profile k), shape (K, 3, D, E); cached per (kb, model)."""
    key = (kb.version, model)
    cached = _CACHE.get(key)
    if cached is None:
        q = finding_probability(kb)
        cached = np.log(np.stack([p.observation(q) for p in model.profiles]))
        cached.setflags(write=False)
        _CACHE.clear() if len(_CACHE) > 8 else None
        _CACHE[key] = cached
    return cached


_CACHE: dict[tuple, np.ndarray] = {}


def mixture_log_posterior(joint: np.ndarray) -> np.ndarray:
    """Pathology margin of a joint log posterior over (profile, pathology): logsumexp over axis -2."""
    m = joint.max(axis=-2, keepdims=True)
    return (m + np.log(np.exp(joint - m).sum(axis=-2, keepdims=True))).squeeze(-2)


def calibrated(log_post: np.ndarray, model: AnswerModel) -> np.ndarray:
    """The posterior the engine reports and stops on: softmax(log posterior / temperature) along the last axis."""
    z = log_post / model.temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
