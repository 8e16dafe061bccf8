"""Fixtures: a three-pathology toy knowledge base in the DDXPlus file format, and the real DDXPlus one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfm.reasoning.knowledge import load_knowledge_base

# P(evidence present | pathology); E_145 is one of the female-only evidences in data/evidence_sex.json.
TOY_PROBS = {
    "Alpha": {"E_1": 0.9, "E_2": 0.2, "E_3": 0.5, "E_145": 0.5, "E_4": 1.0, "E_5": 0.0},
    "Beta": {"E_1": 0.1, "E_2": 0.8, "E_3": 0.5, "E_145": 0.5, "E_4": 0.0, "E_5": 0.0},
    "Gamma": {"E_1": 0.5, "E_2": 0.5, "E_3": 0.5, "E_145": 0.5, "E_4": 1.0, "E_5": 0.0},
}
TOY_COUNTS = {"Alpha": 500, "Beta": 300, "Gamma": 200}
TOY_SEVERITY = {"Alpha": 4, "Beta": 3, "Gamma": 1}


def _binary(eid: str, question: str) -> dict:
    return {"name": eid, "code_question": eid, "question_en": question, "question_fr": "", "is_antecedent": False,
            "default_value": 0, "value_meaning": {}, "possible-values": [], "data_type": "B"}


def write_toy_kb(folder: Path, probs: dict = TOY_PROBS, counts: dict = TOY_COUNTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    conditions = {name: {"condition_name": name, "cond-name-eng": name, "cond-name-fr": name,
                         "icd10-id": f"X{i}", "symptoms": {}, "antecedents": {}, "severity": TOY_SEVERITY.get(name, 3)}
                  for i, name in enumerate(probs)}
    evidences = {eid: _binary(eid, f"Question {eid}?") for eid in next(iter(probs.values())) if eid != "E_4"}
    evidences["E_4"] = {"name": "E_4", "code_question": "E_4", "question_en": "Where is the pain?", "question_fr": "",
                        "is_antecedent": False, "default_value": "V_0", "data_type": "M",
                        "value_meaning": {"V_0": {"en": "nowhere", "fr": ""}, "V_1": {"en": "chest", "fr": ""},
                                          "V_2": {"en": "head", "fr": ""}},
                        "possible-values": ["V_0", "V_1", "V_2"]}
    table = {"conditions": list(probs), "symptoms": list(evidences), "probabilities": probs, "condition_counts": counts}
    (folder / "release_conditions.json").write_text(json.dumps(conditions))
    (folder / "release_evidences.json").write_text(json.dumps(evidences))
    (folder / "symptom_condition_probs.json").write_text(json.dumps(table))
    return folder


@pytest.fixture
def toy_kb(tmp_path):
    return load_knowledge_base(write_toy_kb(tmp_path / "toy"))


@pytest.fixture(scope="session")
def real_kb():
    return load_knowledge_base()  # the copy packaged in clinfm/defaults/ddxplus
