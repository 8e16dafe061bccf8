"""The patient's record as evidence: antecedents and known conditions read from a MEDS timeline.

``clinfm/defaults/ddx/record-evidence-map.csv`` (or ``$CLINFM_DDX_RECORD_MAP``) maps record codes to DDXPlus evidences, one row per (evidence, vocabulary):

* ``system`` ``KB``: the codes are the ICD-10 codes the knowledge base gives the named pathology
  (``release_conditions.json``), so a chart that says J45 counts as "Do you have asthma?" because the KB's
  asthma pathology is J45; ``ICD10`` / ``ICD9`` / ``ICD10PCS`` / ``ICD9PROC``: space-separated code prefixes in
  that vocabulary (an empty list means any code of it); ``SNOMED``: whole SNOMED CT concept ids (as OMOP and
  Synthea/FHIR records carry them);
* ``window_days``: the code counts only if recorded that many days before the reference time ("surgery in the
  last month", "active cancer"); empty means any time before it.

Only presence is read: a code in the record makes the finding present; its absence says nothing (records are
incomplete), so nothing is set to "no". Codes match after dropping dots and case (``ICD10CM//J45.909`` and
``ICD10CM//J45909`` both match ``J45``); ICD-10 rows match ``ICD10CM//`` and ``ICD10//`` codes, ICD-9 rows
``ICD9CM//`` and ``ICD9//``. Medications are not mapped (no ingredient-to-evidence table).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from clinfm.defaults import resolve
from clinfm.reasoning.knowledge import KnowledgeBase
from clinfm.reasoning.models import AnsweredEvidence
from clinfm.schema import Event, Subject

VOCABULARIES = {"ICD10": ("ICD10CM", "ICD10"), "ICD9": ("ICD9CM", "ICD9"), "ICD10PCS": ("ICD10PCS",),
                "ICD9PROC": ("ICD9Proc", "ICD9PROC", "ICD9PCS"), "SNOMED": ("SNOMED", "SNOMEDCT")}
EXACT_SYSTEMS = {"SNOMED"}
"""SNOMED CT ids are not hierarchical by prefix: those rows match whole codes only."""
SEX_CODES = {"GENDER//F": "female", "GENDER//M": "male", "SEX//F": "female", "SEX//M": "male"}


@dataclass(frozen=True)
class CodeRule:
    """Record codes (``vocabularies`` x ``prefixes``, dot-free upper case) that make ``evidence_id`` present."""

    evidence_id: str
    vocabularies: tuple[str, ...]
    prefixes: tuple[str, ...]  # () matches every code of the vocabularies
    window_days: int | None
    note: str
    exact: bool = False

    def matches(self, code: str) -> bool:
        vocabulary, _, value = code.partition("//")
        if vocabulary not in self.vocabularies or not value:
            return False
        bare = value.replace(".", "").upper()
        if self.exact:
            return bare in self.prefixes
        return not self.prefixes or bare.startswith(self.prefixes)


@dataclass(frozen=True)
class RecordSummary:
    """What the record says about a patient, for the interview: findings, and sex and age when recorded."""

    findings: list[AnsweredEvidence]
    sex: str | None
    age: int | None


def load_code_rules(kb: KnowledgeBase, text: str | None = None) -> tuple[CodeRule, ...]:
    """The mapping table (packaged default), checked against the knowledge base: every evidence must be a
    yes/no evidence of it and every ``KB`` row a pathology of it."""
    text = text if text is not None else resolve("ddx_record_map").read_text()
    return _rules(kb.version, text, _kb_icd10(kb))


def _kb_icd10(kb: KnowledgeBase) -> tuple[tuple[str, str, str], ...]:
    binary = ",".join(e.id for e in kb.evidences if e.is_binary)
    return tuple((p.name, p.icd10, binary) for p in kb.pathologies)


@lru_cache(maxsize=4)
def _rules(kb_version: str, text: str, kb_icd10: tuple[tuple[str, str, str], ...]) -> tuple[CodeRule, ...]:
    icd10 = {name: code for name, code, _ in kb_icd10}
    binary = set(kb_icd10[0][2].split(",")) if kb_icd10 else set()
    rules = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        eid, system, codes = row["evidence_id"].strip(), row["system"].strip().upper(), row["codes"].strip()
        if eid not in binary:
            raise ValueError(f"record map line {line}: {eid!r} is not a yes/no evidence of knowledge base {kb_version}")
        if system == "KB":
            if codes not in icd10:
                raise ValueError(f"record map line {line}: {codes!r} is not a pathology of knowledge base {kb_version}")
            prefixes = tuple(c.strip().replace(".", "").upper() for c in icd10[codes].split(","))
            vocabularies = VOCABULARIES["ICD10"]
        elif system in VOCABULARIES:
            prefixes = tuple(c.replace(".", "").upper() for c in codes.split())
            vocabularies = VOCABULARIES[system]
        else:
            raise ValueError(f"record map line {line}: system {system!r} is not one of KB, {', '.join(VOCABULARIES)}")
        window = row.get("window_days", "").strip()
        rules.append(CodeRule(eid, vocabularies, prefixes, int(window) if window else None, row.get("note", ""),
                              system in EXACT_SYSTEMS))
    return tuple(rules)


def record_findings(kb: KnowledgeBase, events: Iterable[Event], as_of: dt.datetime | None = None,
                    sex: str | None = None) -> list[AnsweredEvidence]:
    """Evidences present by the record at ``as_of`` (default: the last timed event), one answer per evidence
    with source "record" and the codes it came from. Female-only evidences are left out for a male patient."""
    events = list(events)
    timed = [e for e in events if e.time is not None]
    as_of = as_of or (max(e.time for e in timed) if timed else None)
    applicable = kb.applicable_mask(sex)
    codes: dict[str, list[str]] = {}
    for rule in load_code_rules(kb):
        if not applicable[kb.evidence_index[rule.evidence_id]]:
            continue
        for e in events:
            if e.time is not None and as_of is not None and e.time > as_of:
                continue  # the future of the reference time is not evidence
            if rule.window_days is not None and (e.time is None or as_of is None
                                                 or (as_of - e.time).days > rule.window_days):
                continue
            if rule.matches(e.code):
                found = codes.setdefault(rule.evidence_id, [])
                if e.code not in found:
                    found.append(e.code)
    out = []
    for eid, found in codes.items():
        ev = kb.evidence(eid)
        out.append(AnsweredEvidence(evidence_id=eid, question=ev.question, value=True, present=True,
                                    display="yes (from the record)", source="record", record_codes=found[:10]))
    return out


def summarize_record(kb: KnowledgeBase, subject: Subject, as_of: dt.datetime | None = None) -> RecordSummary:
    """Findings, sex (``GENDER//F`` / ``GENDER//M``) and age in whole years at ``as_of`` from a MEDS subject."""
    sex = next((SEX_CODES[c] for c in subject.static_codes if c in SEX_CODES), None)
    timed = [e for e in subject.events if e.time is not None]
    as_of = as_of or (max(e.time for e in timed) if timed else None)
    birth = subject.birth
    age = int((as_of - birth).days // 365.25) if birth and as_of else None
    age = age if age is not None and 0 <= age <= 120 else None
    return RecordSummary(record_findings(kb, subject.events, as_of, sex), sex, age)
