"""The DDXPlus knowledge base: pathologies, evidences (questions) and P(evidence | pathology), loaded from files.

Nothing clinical is written in code here: every number comes from the three DDXPlus release files (packaged in
``clinfm/defaults/ddxplus`` with their licence and attribution, or a folder in the same format) plus ``data/evidence_sex.json``; the knowledge-base version is a hash of those bytes.

What the files hold, and how the engine reads them (checked against the real release):

* ``symptom_condition_probs.json`` gives, per pathology, the fraction of DDXPlus training cases in which each
  evidence was recorded, and ``condition_counts`` (cases per pathology, used as the prior). For the 208 binary
  evidences that fraction is P(evidence present | pathology). For the 10 categorical and 5 multi-choice
  evidences it is 0 or 1 only: DDXPlus records them (with a default value such as "nowhere" or 0) for every
  case of a pathology whose definition includes the question. There is no per-value table (no ``E_xx_@_V_yy``).
* ``release_conditions.json`` gives ICD-10 and a severity from 1 (most severe: anaphylaxis, NSTEMI/STEMI) to
  5 (least: URTI, panic attack); it has no age or sex information.
* ``release_evidences.json`` gives question texts, data types, value meanings and a parent question
  (``code_question``); only the pain, skin-lesion and swelling descriptors have a parent present in the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from clinfm.defaults import resolve

FILES = ("release_conditions.json", "release_evidences.json", "symptom_condition_probs.json")
SEX_FILE = Path(__file__).resolve().parent / "data" / "evidence_sex.json"
DEFAULT_EPS = 1e-3
"""Likelihoods are clipped to [eps, 1 - eps]: one unexpected answer costs a pathology at most a factor 1,000
(log 6.9) instead of zeroing it, so a single mistaken answer can be outweighed by the rest of the history."""
CANT_MISS_MAX_SEVERITY = 2
"""DDXPlus severity 1-2 (anaphylaxis, NSTEMI/STEMI, unstable angina, pulmonary embolism, pneumothorax, ...)."""
SEXES = ("female", "male")


@dataclass(frozen=True)
class Evidence:
    id: str
    question: str
    data_type: str  # B binary, C categorical, M multi-choice
    is_antecedent: bool
    parent: str | None
    default_value: str | int | None
    values: dict[str, str]  # value code -> English meaning ({} for binary and numeric scales)
    possible_values: tuple[str | int, ...]
    female_only: bool = False

    @property
    def is_binary(self) -> bool:
        return self.data_type == "B"


@dataclass(frozen=True)
class Pathology:
    name: str
    icd10: str
    severity: int
    cases: int

    @property
    def cant_miss(self) -> bool:
        return self.severity <= CANT_MISS_MAX_SEVERITY


@dataclass(frozen=True)
class KnowledgeBase:
    """Pathologies x evidences. ``presence[d, e]`` is P(e recorded | d) as published; ``likelihood`` is it clipped."""

    pathologies: tuple[Pathology, ...]
    evidences: tuple[Evidence, ...]
    presence: np.ndarray  # (D, E) raw fractions from the table
    eps: float
    version: str
    source: str
    likelihood: np.ndarray = field(init=False)  # (D, E) clipped to [eps, 1 - eps]
    log_prior: np.ndarray = field(init=False)  # (D,)
    evidence_index: dict[str, int] = field(init=False)
    pathology_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        cases = np.array([p.cases for p in self.pathologies], dtype=float)
        set_ = object.__setattr__
        set_(self, "likelihood", np.clip(self.presence, self.eps, 1 - self.eps))
        set_(self, "log_prior", np.log(cases / cases.sum()))
        set_(self, "evidence_index", {e.id: i for i, e in enumerate(self.evidences)})
        set_(self, "pathology_index", {p.name: i for i, p in enumerate(self.pathologies)})

    @property
    def binary_mask(self) -> np.ndarray:
        return np.array([e.is_binary for e in self.evidences])

    @property
    def cant_miss_mask(self) -> np.ndarray:
        return np.array([p.cant_miss for p in self.pathologies])

    def evidence(self, evidence_id: str) -> Evidence:
        try:
            return self.evidences[self.evidence_index[evidence_id]]
        except KeyError:
            raise KeyError(f"unknown evidence {evidence_id!r}; expected one of the {len(self.evidences)} "
                           f"DDXPlus evidence ids such as 'E_91'") from None

    def applicable_mask(self, sex: str | None) -> np.ndarray:
        """Evidences that can be asked and can move the posterior for a patient of this sex."""
        female_only = np.array([e.female_only for e in self.evidences])
        return ~female_only if sex == "male" else np.ones(len(self.evidences), dtype=bool)


def resolve_dir(path: str | Path | None = None) -> Path:
    """The DDXPlus folder: the argument, else $CLINFM_DDXPLUS_DIR, else the copy packaged in ``clinfm/defaults``."""
    folder = resolve("ddxplus", path)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"DDXPlus knowledge base folder {folder} lacks {', '.join(missing)}; pass a folder "
                                f"holding {', '.join(FILES)} or set CLINFM_DDXPLUS_DIR")
    return folder


def load_knowledge_base(path: str | Path | None = None, eps: float = DEFAULT_EPS) -> KnowledgeBase:
    """Load (and cache) the knowledge base from a DDXPlus-format folder."""
    if not 0 < eps < 0.5:
        raise ValueError(f"eps {eps!r} must lie in (0, 0.5)")
    return _load(resolve_dir(path).resolve(), eps)


@lru_cache(maxsize=8)
def _load(folder: Path, eps: float) -> KnowledgeBase:
    raw = {name: (folder / name).read_bytes() for name in FILES}
    sex_raw = SEX_FILE.read_bytes()
    conditions = json.loads(raw["release_conditions.json"])
    evidences = json.loads(raw["release_evidences.json"])
    table = json.loads(raw["symptom_condition_probs.json"])
    female_only = set(json.loads(sex_raw)["female_only"])

    names = list(table["conditions"])
    unknown = set(names) ^ set(conditions)
    if unknown:
        raise ValueError(f"pathologies {sorted(unknown)} are not in both release_conditions.json and the table")
    evidence_ids = list(table["symptoms"])
    if set(evidence_ids) != set(evidences):
        raise ValueError(f"table evidences differ from release_evidences.json: {sorted(set(evidence_ids) ^ set(evidences))}")
    pathologies = tuple(
        Pathology(name, conditions[name]["icd10-id"], int(conditions[name]["severity"]),
                  int(table["condition_counts"][name]))
        for name in names
    )
    evs = tuple(_evidence(evidences[eid], evidences, eid in female_only) for eid in evidence_ids)
    presence = np.array([[float(table["probabilities"][d][e]) for e in evidence_ids] for d in names])
    digest = hashlib.sha256()
    for name, content in [*raw.items(), (SEX_FILE.name, sex_raw)]:
        digest.update(name.encode() + b"\0" + content)
    return KnowledgeBase(pathologies, evs, presence, eps, f"ddxplus-{digest.hexdigest()[:16]}", str(folder))


def _evidence(spec: dict, all_specs: dict, female_only: bool) -> Evidence:
    parent = spec.get("code_question")
    return Evidence(
        id=spec["name"],
        question=spec["question_en"],
        data_type=spec["data_type"],
        is_antecedent=bool(spec["is_antecedent"]),
        parent=parent if parent != spec["name"] and parent in all_specs else None,
        default_value=spec.get("default_value"),
        values={code: meaning["en"] for code, meaning in (spec.get("value_meaning") or {}).items()},
        possible_values=tuple(spec.get("possible-values") or ()),
        female_only=female_only,
    )


def find_evidences(query: str, kb: KnowledgeBase | None = None, limit: int = 10) -> list[tuple[str, str]]:
    """Evidences whose question mentions every word of ``query`` (or whose id is ``query``): [(id, question)]."""
    kb = kb or load_knowledge_base()
    if query.strip().upper() in kb.evidence_index:
        e = kb.evidence(query.strip().upper())
        return [(e.id, e.question)]
    words = [w for w in re.findall(r"[a-z0-9]+", query.lower()) if len(w) > 2]
    hits = [(e.id, e.question) for e in kb.evidences
            if words and all(w in e.question.lower() for w in words)]
    return hits[:limit]
