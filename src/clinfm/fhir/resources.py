"""MEDS events as FHIR R4 resources: which resource a code becomes (:class:`CodeCatalog`), and the resource built
from one event (or, for an encounter, a START/END pair) of a subject in the store.

Resource ids name the event: ``<subject_id>-<row>``, the row of the event in the subject's timeline, so a
resource read by id is one event and a citation to it is unambiguous. Times are the store's (naive UTC,
de-identified: shifted per patient), written with ``+00:00``.

Which resource a code becomes
-----------------------------
=====================================================  =====================================================
``LOINC//…``, ``MIMIC_LAB//…``                        Observation, category ``laboratory`` (``vital-signs``
                                                       for the LOINC vital signs in :data:`VITAL_LOINC`)
``MIMIC_ITEM//…`` (ICU chart)                          Observation, ``vital-signs`` for :data:`VITAL_MIMIC`,
                                                       else ``exam``
``ICD10CM//…``, ``ICD9CM//…``                          Condition, category ``problem-list-item``
``ICD10PCS//``, ``ICD9Proc//``, ``CPT4//``, ``HCPCS//``  Procedure
``RxNorm//``, ``NDC//``, ``ATC//``, ``MIMIC_DRUG//``,  MedicationRequest (intent ``order``; MIMIC's eMAR
``MIMIC_EMAR//``                                       administrations too: no MedicationAdministration here)
``CVX//…``                                             Immunization
``ALLERGY//…``                                         AllergyIntolerance
``NOTE//…``                                            DocumentReference (the note's text as an attachment)
``VISIT//<type>//START`` (+ its ``END``)               Encounter
``SNOMED//…``                                          by the code's OMOP domain where the dataset records it
                                                       (``metadata/code_domains.json``, written by
                                                       :func:`write_code_domains`), else Condition
=====================================================  =====================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinfm import schema

DOMAINS_FILE = "metadata/code_domains.json"
PSEUDONYM_SYSTEM = "https://clinfm.dev/fhir/pseudonymous-id"
LOCAL_SYSTEM = "https://clinfm.dev/fhir/CodeSystem/"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"

SYSTEMS = {
    "LOINC": "http://loinc.org",
    "SNOMED": "http://snomed.info/sct",
    "RxNorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD10PCS": "http://www.cms.gov/Medicare/Coding/ICD10",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "urn:oid:2.16.840.1.113883.6.285",
    "ATC": "http://www.whocc.no/atc",
}
"""ClinFM vocabulary -> FHIR code system URI; other vocabularies get ``LOCAL_SYSTEM + vocabulary``."""
VOCABULARY_OF_SYSTEM = {v: k for k, v in SYSTEMS.items()}

VITAL_LOINC = frozenset({
    "8310-5", "8331-1", "8867-4", "9279-1", "8480-6", "8462-4", "85354-9", "29463-7", "8302-2", "39156-5",
    "59408-5", "2708-6", "8287-5", "9843-4", "3141-9", "8306-3", "55284-4",
})  # fmt: skip
"""LOINC codes of the FHIR vital-signs profile (temperature, heart and breathing rate, blood pressure, weight,
height, BMI, oxygen saturation, head circumference)."""
VITAL_MIMIC = frozenset({"220045", "220179", "220180", "220181", "220050", "220051", "220210", "220277",
                         "223761", "223762", "226512", "226730"})  # fmt: skip

ENCOUNTER_CLASS = {
    "IP": ("IMP", "inpatient encounter"), "ER": ("EMER", "emergency"), "OP": ("AMB", "ambulatory"),
    "ICU": ("ACUTE", "inpatient acute"), "OBS": ("OBSENC", "observation encounter"), "HH": ("HH", "home health"),
    "OTHER": ("AMB", "ambulatory"),
}  # fmt: skip
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

RESOURCE_TYPES = ("Patient", "Condition", "Observation", "MedicationRequest", "Procedure", "AllergyIntolerance",
                  "Encounter", "DocumentReference", "Immunization")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Kind:
    """The resource an event becomes, and its category (searchable with ``category=``)."""

    resource: str
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One event of a subject, with its row number in the subject's timeline (the resource id's suffix)."""

    row: int
    time: dt.datetime | None
    code: str
    numeric_value: float | None
    text_value: str | None
    unit: str | None


class CodeCatalog:
    """code -> :class:`Kind` (or None for codes that are part of Patient: birth, death, static codes)."""

    def __init__(self, descriptions: dict[str, str] | None = None, domains: dict[str, str] | None = None) -> None:
        self.descriptions = descriptions or {}
        self.domains = domains or {}
        self._kinds: dict[str, Kind | None] = {}

    @classmethod
    def for_dataset(cls, path: str | Path, descriptions: dict[str, str]) -> CodeCatalog:
        file = Path(path) / DOMAINS_FILE
        domains = json.loads(file.read_text()) if file.exists() else {}
        return cls(descriptions, domains)

    def kind(self, code: str) -> Kind | None:
        hit = self._kinds.get(code, ...)
        if hit is ...:
            hit = self._kinds[code] = self._classify(code)
        return hit  # type: ignore[return-value]

    def _classify(self, code: str) -> Kind | None:
        if code in (schema.BIRTH, schema.DEATH) or schema.is_static(code):
            return None
        vocab, _, value = code.partition(schema.SEP)
        if vocab == "VISIT":
            return Kind("Encounter") if value.endswith("//START") else None
        if vocab == "NOTE":
            return Kind("DocumentReference", "clinical-note")
        if vocab == "ALLERGY":
            return Kind("AllergyIntolerance")
        if vocab in ("RxNorm", "NDC", "ATC", "MIMIC_DRUG", "MIMIC_EMAR"):
            return Kind("MedicationRequest")
        if vocab == "CVX":
            return Kind("Immunization")
        if vocab in ("ICD10CM", "ICD9CM"):
            return Kind("Condition", "problem-list-item")
        if vocab in ("ICD10PCS", "ICD9Proc", "CPT4", "HCPCS"):
            return Kind("Procedure")
        if vocab == "LOINC":
            return Kind("Observation", "vital-signs" if value in VITAL_LOINC else "laboratory")
        if vocab == "MIMIC_LAB":
            return Kind("Observation", "laboratory")
        if vocab == "MIMIC_ITEM":
            return Kind("Observation", "vital-signs" if value in VITAL_MIMIC else "exam")
        domain = self.domains.get(code)
        if domain == "Procedure":
            return Kind("Procedure")
        if domain == "Measurement":
            return Kind("Observation", "laboratory")
        if domain == "Observation":
            return Kind("Observation", "exam")
        if domain == "Drug":
            return Kind("MedicationRequest")
        if vocab == "SNOMED" or domain == "Condition":
            return Kind("Condition", "problem-list-item")
        return Kind("Observation")

    def coding(self, code: str) -> dict[str, Any]:
        """The FHIR Coding of a ClinFM code (``ALLERGY//`` and ``NOTE//`` prefixes are not part of it)."""
        bare = code.removeprefix("ALLERGY//")
        vocab, _, value = bare.partition(schema.SEP)
        if not value:
            vocab, value = "CLINFM", bare
        out = {"system": SYSTEMS.get(vocab, LOCAL_SYSTEM + vocab), "code": token_value(value)}
        display = self.descriptions.get(code) or self.descriptions.get(bare)
        if display:
            out["display"] = display[:250]
        return out

    def concept(self, code: str) -> dict[str, Any]:
        coding = self.coding(code)
        return {"coding": [coding], "text": coding.get("display", code)}


def token_value(value: str) -> str:
    """A code as a FHIR ``code`` (no leading, trailing or repeated whitespace: ``'NaCl 0.9%  Flush'``)."""
    return " ".join(value.split())


def write_code_domains(dataset: str | Path, omop_source: str | Path | None = None) -> Path:
    """Record each code's OMOP domain (Condition, Procedure, Measurement, Observation, Drug) beside the dataset's
    metadata, read from the OMOP ``concept`` table (default: the embedded Eunomia), so that SNOMED codes become
    the right resource. Codes the concept table does not know are left out (they default as documented)."""
    import duckdb
    import pyarrow.parquet as pq

    from clinfm.data.ingest.omop import eunomia_path

    dataset = Path(dataset)
    codes = set(pq.read_table(dataset / schema.CODES_FILE, columns=["code"]).column(0).to_pylist())
    source = Path(omop_source) if omop_source else eunomia_path()
    if not source.exists():
        raise FileNotFoundError(f"OMOP source {str(source)!r} does not exist (expected a DuckDB file)")
    con = duckdb.connect(str(source), read_only=True)
    try:
        rows = con.execute("SELECT vocabulary_id, concept_code, domain_id FROM concept").fetchall()
    finally:
        con.close()
    domains = {f"{v}{schema.SEP}{c}": d for v, c, d in rows if f"{v}{schema.SEP}{c}" in codes}
    out = dataset / DOMAINS_FILE
    out.write_text(json.dumps(dict(sorted(domains.items())), indent=1) + "\n")
    return out


# --- resources ------------------------------------------------------------------------------------------
def instant(t: dt.datetime) -> str:
    return t.replace(tzinfo=dt.UTC).isoformat()


def patient_resource(subject_id: int, birth: dt.datetime | None, gender: str | None,
                     death: dt.datetime | None) -> dict[str, Any]:  # fmt: skip
    """Patient: the pseudonymous id as identifier, gender, birth date (de-identified: shifted)."""
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": str(subject_id),
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": str(subject_id)}],
        "gender": {"F": "female", "M": "male"}.get(gender or "", "unknown"),
    }  # fmt: skip
    if birth is not None:
        res["birthDate"] = birth.date().isoformat()
    if death is not None:
        res["deceasedDateTime"] = instant(death)
    return res


def event_resource(subject_id: int, ev: Row, kind: Kind, catalog: CodeCatalog,
                   end: dt.datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The resource of one event (``end``: an encounter's END time)."""
    rid = f"{subject_id}-{ev.row}"
    patient = {"reference": f"Patient/{subject_id}"}
    when = instant(ev.time) if ev.time is not None else None
    r = kind.resource
    if r == "Observation":
        res: dict[str, Any] = {"resourceType": r, "id": rid, "status": "final", "code": catalog.concept(ev.code),
                               "subject": patient}  # fmt: skip
        if kind.category:
            res["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": kind.category}]}]
        if when:
            res["effectiveDateTime"] = when
        if ev.numeric_value is not None:
            q: dict[str, Any] = {"value": _number(ev.numeric_value)}
            if ev.unit:
                q.update(unit=ev.unit, system="http://unitsofmeasure.org", code=ev.unit)
            res["valueQuantity"] = q
        elif ev.text_value:
            res["valueString"] = ev.text_value
        return res
    if r == "Condition":
        res = {"resourceType": r, "id": rid, "code": catalog.concept(ev.code), "subject": patient,
               "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": kind.category or "problem-list-item"}]}]}  # fmt: skip
        if when:
            res.update(onsetDateTime=when, recordedDate=when)
        return res
    if r == "MedicationRequest":
        res = {"resourceType": r, "id": rid, "status": "completed", "intent": "order",
               "medicationCodeableConcept": catalog.concept(ev.code), "subject": patient}  # fmt: skip
        if when:
            res["authoredOn"] = when
        return res
    if r == "Procedure":
        res = {"resourceType": r, "id": rid, "status": "completed", "code": catalog.concept(ev.code), "subject": patient}
        if when:
            res["performedDateTime"] = when
        return res
    if r == "Immunization":
        return {"resourceType": r, "id": rid, "status": "completed", "vaccineCode": catalog.concept(ev.code),
                "patient": patient, "occurrenceDateTime": when or "1900-01-01"}  # fmt: skip
    if r == "AllergyIntolerance":
        res = {"resourceType": r, "id": rid, "code": catalog.concept(ev.code), "patient": patient}
        if when:
            res["recordedDate"] = when
        return res
    if r == "Encounter":
        vtype = ev.code.split(schema.SEP)[1]
        code, display = ENCOUNTER_CLASS.get(vtype, ENCOUNTER_CLASS["OTHER"])
        res = {"resourceType": r, "id": rid, "status": "finished" if end else "in-progress",
               "class": {"system": ACT_CODE, "code": code, "display": display}, "subject": patient,
               "type": [{"text": vtype}]}  # fmt: skip
        if when:
            res["period"] = {"start": when, **({"end": instant(end)} if end else {})}
        return res
    if r == "DocumentReference":
        kind_name = ev.code.split(schema.SEP, 1)[1]
        text = ev.text_value or ""
        res = {"resourceType": r, "id": rid, "status": "current",
               "type": {"coding": [{"system": LOCAL_SYSTEM + "note-kind", "code": kind_name}], "text": kind_name},
               "category": [{"coding": [{"system": LOCAL_SYSTEM + "note-category", "code": "clinical-note"}]}],
               "subject": patient,
               "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                           "data": base64.b64encode(text.encode()).decode()}}]}  # fmt: skip
        if when:
            res["date"] = when
        return res
    raise ValueError(f"resource type {r!r} is not one of {RESOURCE_TYPES}")


def _number(x: float) -> float | int:
    """float32 values printed as the decimal they were recorded as (``7.2``, not ``7.199999809``)."""
    v = float(f"{x:.6g}")
    return int(v) if v.is_integer() and abs(v) < 2**53 else v
