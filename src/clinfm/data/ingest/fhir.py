"""FHIR R4 to MEDS: Bundles (``*.json``) and Bulk Data NDJSON (``*.ndjson``, ``*.ndjson.gz``), streamed.

Each resource is parsed with ``orjson`` and the few fields an event needs are checked explicitly; nothing
is validated through ``fhir.resources`` (ten times slower and it would reject whole records for fields we
never read). A resource that cannot become events goes to the quarantine with the field, the value and
what was expected.

Mapping (one event per row unless said otherwise)
-------------------------------------------------
==========================  ==========================================================================
Patient                     ``MEDS_BIRTH`` at ``birthDate``, ``MEDS_DEATH`` at ``deceasedDateTime``;
                            static ``GENDER//…``, ``RACE//<display>``, ``ETHNICITY//<display>`` (US Core
                            race/ethnicity ``ombCategory``, else their ``text``)
Encounter                   ``VISIT//<type>//START`` at ``period.start``, ``…//END`` at ``period.end``;
                            ``<type>`` from ``class.code`` (:data:`VISIT_CLASSES`, else ``OTHER``)
Condition                   code at ``onsetDateTime`` | ``onsetPeriod.start`` | ``recordedDate``
Observation                 code at ``effectiveDateTime`` | ``effectivePeriod.start`` | ``effectiveInstant``
                            | ``issued``; ``valueQuantity`` -> ``numeric_value`` + ``unit``; a coded answer
                            or a string -> ``text_value``; each ``component`` (blood pressure) is its own
                            event with its own code (the panel code is kept only when it has a value)
MedicationRequest           ``RxNorm//…`` at ``authoredOn`` (a ``medicationReference`` must resolve to a
MedicationAdministration    contained or same-Bundle Medication); administration at ``effective[x]``
Procedure                   code at ``performedDateTime`` | ``performedPeriod.start``
Immunization                ``CVX//…`` at ``occurrenceDateTime``
AllergyIntolerance          ``ALLERGY//<code>`` (``ALLERGY//RxNorm//29046``) at ``recordedDate`` | onset:
                            the prefix keeps "allergic to lisinopril" apart from "took lisinopril"
DiagnosticReport            code at ``effective[x]`` | ``issued``; ``conclusion`` or text
                            ``presentedForm`` in ``text_value``
DocumentReference           ``NOTE//<kind>`` at ``date`` | ``context.period.start`` with the decoded text
                            of the first ``text/*`` attachment; ``<kind>`` from :data:`NOTE_KINDS`, else
                            the type's code (``NOTE//LOINC//11488-4``), else ``NOTE//OTHER``
==========================  ==========================================================================

Codes: the first coding whose ``system`` is in :data:`VOCABULARIES` wins, else the first coding with a code
in a local vocabulary named after its system (:func:`local_vocabulary`: ``http://acme.org/labs`` ->
``FHIR_ACME_ORG_LABS//K123``; a coding without a system -> ``FHIR_NOSYSTEM//…``). ``coding.display`` becomes
the code's description.

Bookkeeping: the table of a record is its ``resourceType``; lines and files that cannot be typed count under
``unparseable`` (a whole unreadable Bundle file under ``Bundle``). A parsed Bundle counts as one converted
``Bundle`` record besides its entries. Types in :data:`NON_EVENT_TYPES` are converted with no events.
Records with status ``entered-in-error`` (or a ``not-done`` event, or a refuted condition) are quarantined:
they are kept for audit but are not events on the timeline. Times are taken as UTC when they carry no
offset; a partial date (``2020``, ``2020-03``) means its first day.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from clinfm import schema
from clinfm.data.ingest.base import IngestTask, ShardBuilder, ShardOutput, SourcePlan

MiB = 2**20
DEFAULT_CHUNK_BYTES = 64 * MiB
"""Plain ``.ndjson`` files larger than this are split into byte ranges, one task each."""

FLUSH_EVENTS = 100_000
"""Hand a batch to the dataset builder once it holds about this many events (bounds a worker's memory)."""

VOCABULARIES = {
    "http://snomed.info/sct": "SNOMED",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD10PCS",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
}
"""FHIR code system URL -> vocabulary (OMOP ``vocabulary_id`` spelling, as in :mod:`clinfm.schema`)."""

VISIT_CLASSES = {
    "IMP": "IP",
    "ACUTE": "IP",
    "NONAC": "IP",
    "EMER": "ER",
    "AMB": "OP",
    "HH": "HH",
    "OBSENC": "OBS",
}
"""``Encounter.class.code`` (v3 ActCode) -> visit type; any other class is ``OTHER``."""

NOTE_KINDS = {
    "18842-5": "DISCHARGE",
    "11506-3": "PROGRESS",
    "34117-2": "HP",
    "11488-4": "CONSULT",
    "34111-5": "ED",
    "28570-0": "PROCEDURE",
    "18748-4": "RADIOLOGY",
    "34746-8": "NURSING",
}
"""LOINC document type -> ``NOTE//<kind>`` for the common clinical note types."""

NON_EVENT_TYPES = frozenset({
    # Synthea emits these beside the clinical record: billing, who/where, plans and supplies. The clinical
    # facts they point at (the encounter, the procedure behind an ImagingStudy or Device) come as their own
    # resources, so converting these too would only duplicate or add administrative noise.
    "Claim", "ClaimResponse", "ExplanationOfBenefit", "Coverage", "Provenance", "Organization", "Practitioner",
    "PractitionerRole", "Location", "Device", "CareTeam", "CarePlan", "ImagingStudy", "SupplyDelivery",
    "Medication", "Bundle",
    # Infrastructure, terminology, knowledge and financial resources: not about one subject's timeline.
    "Account", "ActivityDefinition", "AuditEvent", "Basic", "Binary", "CapabilityStatement", "CatalogEntry",
    "ChargeItem", "ChargeItemDefinition", "CodeSystem", "CompartmentDefinition", "ConceptMap", "Consent",
    "Contract", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DeviceDefinition", "DeviceMetric",
    "EffectEvidenceSynthesis", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EventDefinition",
    "Evidence", "EvidenceVariable", "ExampleScenario", "GraphDefinition", "Group", "HealthcareService",
    "ImplementationGuide", "InsurancePlan", "Invoice", "Library", "Linkage", "Measure", "MeasureReport",
    "MedicationKnowledge", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
    "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition",
    "MessageHeader", "NamingSystem", "ObservationDefinition", "OperationDefinition", "OperationOutcome",
    "OrganizationAffiliation", "Parameters", "PaymentNotice", "PaymentReconciliation", "Person",
    "PlanDefinition", "Questionnaire", "RelatedPerson", "ResearchDefinition", "ResearchElementDefinition",
    "ResearchStudy", "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "Slot", "SpecimenDefinition",
    "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial",
    "SubstanceSpecification", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet",
    "VerificationResult",
})  # fmt: skip
"""FHIR R4 resource types that are deliberately converted to no events.

They are counted as read and converted (accounted for, nothing lost by accident) because the reconciliation
only knows ``read == converted + quarantined``. The clinical R4 types not in this list and without a
converter (MedicationStatement, ServiceRequest, Specimen, ...) are quarantined instead, so that data a
future converter should map is visible rather than silently dropped.
"""

UNMAPPED_CLINICAL_TYPES = frozenset({
    "AdverseEvent", "Appointment", "AppointmentResponse", "BiologicallyDerivedProduct", "BodyStructure",
    "ClinicalImpression", "Communication", "CommunicationRequest", "Composition", "DetectedIssue",
    "DeviceRequest", "DeviceUseStatement", "DocumentManifest", "EpisodeOfCare", "FamilyMemberHistory", "Flag",
    "Goal", "GuidanceResponse", "ImmunizationEvaluation", "ImmunizationRecommendation", "List", "Media",
    "MedicationDispense", "MedicationStatement", "MolecularSequence", "NutritionOrder",
    "QuestionnaireResponse", "RequestGroup", "ResearchSubject", "RiskAssessment", "ServiceRequest", "Specimen",
    "SupplyRequest", "Task", "VisionPrescription",
})  # fmt: skip
"""Patient-level FHIR R4 types with no converter yet: quarantined with a reason saying so."""

DATETIME_EXPECTED = "expected YYYY[-MM[-DD[Thh:mm:ss[.fff]+zz:zz]]]"
_DATETIME_RE = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?)?)?")
_RACE_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_ETHNICITY_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
_RETRACTED = frozenset({"entered-in-error", "not-done"})
_FLOAT32_MAX = 3.4028234e38
_INT63 = 2**63 - 1
_CACHE_LIMIT = 1 << 20


# --- identifiers, codes and times ----------------------------------------------------------------------
def subject_id(fhir_id: str) -> int:
    """The MEDS ``subject_id`` of a FHIR Patient id: stable across runs, files and processes.

    A canonical decimal id that fits int64 (``"12345"``, no sign or leading zeros) is used as is; any other
    id (Synthea's UUIDs) becomes the first 8 bytes of its SHA-256 as a non-negative int63. A decimal id and
    a hashed one could collide with probability about n²/2⁶⁴: negligible for any real population.
    """
    sid = _SUBJECT_IDS.get(fhir_id)
    if sid is None:
        if (
            fhir_id.isdigit()
            and fhir_id.isascii()
            and (fhir_id == "0" or fhir_id[0] != "0")
            and int(fhir_id) <= _INT63
        ):
            sid = int(fhir_id)
        else:
            sid = int.from_bytes(hashlib.sha256(fhir_id.encode()).digest()[:8], "big") & _INT63
        if len(_SUBJECT_IDS) > _CACHE_LIMIT:
            _SUBJECT_IDS.clear()
        _SUBJECT_IDS[fhir_id] = sid
    return sid


_SUBJECT_IDS: dict[str, int] = {}


def local_vocabulary(system: str | None) -> str:
    """The vocabulary for a code system ClinFM does not know: ``FHIR_`` + the URL's host and path.

    ``http://www.acme.org/fhir/labs`` -> ``FHIR_ACME_ORG_FHIR_LABS``; ``urn:oid:1.2.3`` -> ``FHIR_OID_1_2_3``;
    no system -> ``FHIR_NOSYSTEM``. Deterministic, so one system always gives one vocabulary.
    """
    if not system:
        return "FHIR_NOSYSTEM"
    text = re.sub(r"^(https?://(www\.)?|urn:)", "", system.strip(), flags=re.IGNORECASE)
    text = re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")
    return f"FHIR_{text}" if text else "FHIR_NOSYSTEM"


def _code(system: object, value: str) -> str:
    key = (system, value)
    code = _CODES.get(key)
    if code is None:
        vocab = VOCABULARIES.get(system) if system.__class__ is str else None
        code = f"{vocab or local_vocabulary(system if system.__class__ is str else None)}{schema.SEP}{value.strip()}"
        if len(_CODES) > _CACHE_LIMIT:
            _CODES.clear()
        _CODES[key] = code
    return code


_CODES: dict[tuple[object, str], str] = {}


def parse_datetime(value: str) -> dt.datetime:
    """A FHIR date, dateTime or instant as naive UTC; partial dates mean their first day.

    Raises ``ValueError`` for anything else (``fromisoformat`` alone would accept ``20200101`` or week dates).
    """
    return schema.to_utc_naive(_parse_fhir_time(value))


def _parse_fhir_time(value: str) -> dt.datetime:
    """A FHIR date/dateTime/instant, aware when it carries an offset, naive (taken as UTC) when not."""
    if _DATETIME_RE.fullmatch(value) is None:
        raise ValueError(value)
    if len(value) == 4:
        return dt.datetime(int(value), 1, 1)
    if len(value) == 7:
        return dt.datetime(int(value[:4]), int(value[5:7]), 1)
    return dt.datetime.fromisoformat(value)


def _time(value: object, where: str) -> int:
    """``value`` (the field ``where``) as naive-UTC microseconds since 1970, the unit of the ``time`` column.

    Integers go into Arrow without the per-value datetime conversion (and the pandas import it triggers);
    the cache helps because one visit's timestamp repeats across all of its resources. The arithmetic is
    :func:`parse_datetime`'s (``schema.to_utc_naive``) without building the intermediate naive datetime.
    """
    t = _TIMES.get(value) if value.__class__ is str else None
    if t is None:
        try:
            moment = _parse_fhir_time(value)  # type: ignore[arg-type]
            t = (moment - (_EPOCH if moment.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND
        except (ValueError, TypeError, OverflowError):
            raise _Rejected(f"{where} {value!r} is not a FHIR dateTime ({DATETIME_EXPECTED})") from None
        if len(_TIMES) > _CACHE_LIMIT:
            _TIMES.clear()
        _TIMES[value] = t  # type: ignore[index]
    return t


_EPOCH, _EPOCH_UTC = dt.datetime(1970, 1, 1), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_TIMES: dict[str, int] = {}


# --- per-resource converters ---------------------------------------------------------------------------
class _Rejected(Exception):
    """A record that cannot be converted; ``reason`` names the field, the value and what was expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Context:
    """What converters share within one task: the builder, caches, and the current Bundle's lookups."""

    __slots__ = (
        "add",
        "builder",
        "converted",
        "described",
        "full_url",
        "medications",
        "patients",
        "subjects",
    )

    def __init__(self, builder: ShardBuilder) -> None:
        self.builder = builder
        self.add = builder.add_event
        self.described: set[str] = set()
        self.converted: dict[str, int] = {}
        self.subjects: dict[str, int] = {}  # reference -> subject_id, for this task
        self.patients: dict[str, str] = {}  # Bundle fullUrl -> Patient.id
        self.medications: dict[str, dict] = {}  # Bundle fullUrl / "Medication/<id>" -> Medication
        self.full_url = ""

    def describe(self, code: str, display: object) -> None:
        if code not in self.described and display.__class__ is str and display:
            self.described.add(code)
            self.builder.describe(code, display)

    def flush(self) -> ShardOutput:
        for table, n in self.converted.items():
            self.builder.converted(table, n)
        self.converted = {}
        return self.builder.flush()


def _subject(r: dict, rt: str, field: str, ctx: _Context) -> int:
    ref_obj = r.get(field)
    ref = ref_obj.get("reference") if ref_obj.__class__ is dict else None
    sid = ctx.subjects.get(ref) if ref.__class__ is str else None
    if sid is not None:
        return sid
    if ref.__class__ is not str:
        raise _Rejected(f"{rt}.{field}.reference is missing (expected a reference to the Patient)")
    if ref.startswith("urn:uuid:"):
        pid = ctx.patients.get(ref) or ref[9:]
    elif ref in ctx.patients:  # an absolute fullUrl of a Patient in this Bundle
        pid = ctx.patients[ref]
    elif "://" in ref:
        raise _Rejected(f"{rt}.{field}.reference points to another server (an absolute URL, not a Patient of this "
                        "export): it is not merged into a local patient with the same id")  # fmt: skip
    else:
        i = ref.rfind("Patient/")
        pid = ref[i + 8 :].split("/", 1)[0] if i >= 0 and (i == 0 or ref[i - 1] == "/") else ""
    if not pid:
        raise _Rejected(f"{rt}.{field}.reference {ref!r} is not a Patient reference (expected Patient/<id>)")
    sid = ctx.subjects[ref] = subject_id(pid)
    return sid


def _first_time(r: dict, rt: str, fields: tuple[str, ...]) -> int:
    """The time of the first of ``fields`` present (``"effectivePeriod.start"`` reads a Period's start)."""
    for name in fields:
        if "." in name:
            outer, inner = name.split(".", 1)
            holder = r.get(outer)
            value = holder.get(inner) if holder.__class__ is dict else None
        else:
            value = r.get(name)
        if value is not None:
            return _time(value, f"{rt}.{name}")
    raise _Rejected(f"{rt} has no {' or '.join(fields)} (expected a FHIR dateTime)")


def _concept(cc: object, where: str, index: int | None = None) -> tuple[str, object]:
    """``(code, display)`` of a CodeableConcept: the first coding in a known vocabulary, else the first one.

    ``where`` names the field in a quarantine reason (a ``{}`` in it is filled with ``index``, only then).
    """
    codings = cc.get("coding") if cc.__class__ is dict else None
    if codings.__class__ is list:
        first = codings[0] if codings else None
        if first.__class__ is dict:  # fast path: a first coding that is already cached and standard
            code = _STANDARD_CODES.get((first.get("system"), first.get("code")))
            if code is not None:
                return code, first.get("display")
        fallback = None
        for c in codings:
            value = c.get("code") if c.__class__ is dict else None
            if value.__class__ is not str or not value.strip():
                continue
            system = c.get("system")
            code = _code(system, value)
            if system in VOCABULARIES:
                if len(_STANDARD_CODES) > _CACHE_LIMIT:
                    _STANDARD_CODES.clear()
                _STANDARD_CODES[system, value] = code
                return code, c.get("display")
            if fallback is None:
                fallback = (code, c.get("display"))
        if fallback is not None:
            return fallback
    where = where if index is None else where.format(index)
    raise _Rejected(
        f"{where} has no coding with a code (expected a CodeableConcept with coding[].system and .code)"
    )


_STANDARD_CODES: dict[tuple[object, object], str] = {}


def _check_status(r: dict, rt: str) -> None:
    status = r.get("status")
    if status in _RETRACTED:
        raise _Rejected(f"{rt}.status is {status!r}: the record is retracted or the event did not happen")


def _value(
    h: dict, where: str = "Observation", index: int | None = None
) -> tuple[float | None, str | None, str | None]:
    """``(numeric_value, text_value, unit)`` of an Observation or component ``value[x]``."""
    vq = h.get("valueQuantity")
    if vq is not None:
        if vq.__class__ is not dict:
            where = where if index is None else where.format(index)
            raise _Rejected(
                f"{where}.valueQuantity {vq!r} is not a Quantity (expected an object with value, unit)"
            )
        v = vq.get("value")
        unit = vq.get("unit") or vq.get("code")
        if unit.__class__ is not str:
            unit = None
        if (v.__class__ is float or v.__class__ is int) and -_FLOAT32_MAX <= v <= _FLOAT32_MAX:
            if "comparator" in vq and vq["comparator"].__class__ is str:
                return v, f"{vq['comparator']}{v}", unit
            return v, None, unit
        return None, (None if v is None else str(v)), unit  # recorded but not a number: keep it as text
    vc = h.get("valueCodeableConcept")
    if vc is not None:
        return None, _answer(vc), None
    for key in ("valueString", "valueBoolean", "valueDateTime", "valueTime", "valueInteger"):
        v = h.get(key)
        if v is not None:
            if v.__class__ is int:
                return v, None, None
            return None, ("true" if v is True else "false" if v is False else str(v)), None
    ratio = h.get("valueRatio")
    if ratio.__class__ is dict:
        num, den = (ratio.get(k) for k in ("numerator", "denominator"))
        if num.__class__ is dict and den.__class__ is dict:
            return None, f"{num.get('value')}/{den.get('value')}", None
    return None, None, None


def _answer(cc: object) -> str | None:
    """A coded answer as text: its display, else the concept's text, else its code."""
    if cc.__class__ is not dict:
        return str(cc)
    for c in cc.get("coding") or ():
        if c.__class__ is dict:
            if c.get("display").__class__ is str:
                return c["display"]
            if c.get("code").__class__ is str:
                return _code(c.get("system"), c["code"])
    text = cc.get("text")
    return text if text.__class__ is str else None


def _attachment_text(att: object, where: str) -> str | None:
    """The decoded text of an Attachment with inline ``text/*`` data; ``None`` for other attachments."""
    if att.__class__ is not dict:
        return None
    data, ctype = att.get("data"), att.get("contentType") or "text/plain"
    if data is None or ctype.__class__ is not str or not ctype.lower().startswith("text/"):
        return None
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise _Rejected(f"{where}.data is not valid base64 (expected base64-encoded {ctype})") from None
    charset = ctype.lower().partition("charset=")[2].split(";")[0].strip() or "utf-8"
    try:
        return raw.decode(charset)
    except LookupError:
        raise _Rejected(f"{where}.contentType {ctype!r} names an unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:  # never quote the note text itself
        raise _Rejected(
            f"{where}.data is not valid {charset} text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason}; expected text in the charset of contentType {ctype!r})"
        ) from None


def _patient(r: dict, ctx: _Context) -> None:
    pid = r.get("id")
    if pid.__class__ is not str or not pid:
        pid = ctx.full_url[9:] if ctx.full_url.startswith("urn:uuid:") else ""
        if not pid:
            raise _Rejected("Patient.id is missing (expected the logical id the other resources refer to)")
    sid = subject_id(pid)
    birth_raw, death_raw = r.get("birthDate"), r.get("deceasedDateTime")
    birth = None if birth_raw is None else _time(birth_raw, "Patient.birthDate")
    death = None if death_raw is None else _time(death_raw, "Patient.deceasedDateTime")
    if birth is not None and death is not None and birth > death:
        raise _Rejected(
            f"Patient.birthDate {birth_raw!r} is after deceasedDateTime {death_raw!r} (birth after death)"
        )
    statics = [schema.gender_code(r.get("gender") if r.get("gender").__class__ is str else None)]
    for ext in r.get("extension") or ():
        url = ext.get("url") if ext.__class__ is dict else None
        prefix = "RACE" if url == _RACE_URL else "ETHNICITY" if url == _ETHNICITY_URL else None
        if prefix is not None:
            statics += [schema.make_code(prefix, v) for v in _us_core_categories(ext)]
    add = ctx.add
    for code in statics:
        add(sid, None, code, None, None, None, "Patient")
    if birth is not None:
        add(sid, birth, schema.BIRTH, None, None, None, "Patient")
    if death is not None:
        add(sid, death, schema.DEATH, None, None, None, "Patient")


def _us_core_categories(ext: dict) -> list[str]:
    """The ``ombCategory`` displays (or codes) of a US Core race/ethnicity extension, else its ``text``."""
    parts = [e for e in ext.get("extension") or () if e.__class__ is dict]
    values = []
    for e in parts:
        coding = e.get("valueCoding")
        if e.get("url") == "ombCategory" and coding.__class__ is dict:
            value = coding.get("display") or coding.get("code")
            if value.__class__ is str and value.strip():
                values.append(value)
    if not values:
        values = [
            e["valueString"]
            for e in parts
            if e.get("url") == "text" and e.get("valueString").__class__ is str
        ]
    return [v for v in values if v.strip()]


def _encounter(r: dict, ctx: _Context) -> None:
    _check_status(r, "Encounter")
    sid = _subject(r, "Encounter", "subject", ctx)
    period = r.get("period")
    start = period.get("start") if period.__class__ is dict else None
    if start is None:
        raise _Rejected("Encounter.period.start is missing (expected a FHIR dateTime)")
    t0 = _time(start, "Encounter.period.start")
    end = period.get("end")  # type: ignore[union-attr]
    t1 = None if end is None else _time(end, "Encounter.period.end")
    if t1 is not None and t1 < t0:
        raise _Rejected(
            f"Encounter.period.end {end!r} is before period.start {start!r} (expected end >= start)"
        )
    cls = r.get("class")
    if cls.__class__ is list and cls and cls[0].__class__ is dict:  # R5 shape: a list of CodeableConcepts
        cls = (cls[0].get("coding") or [None])[0]
    visit = VISIT_CLASSES.get(str(cls.get("code")), "OTHER") if cls.__class__ is dict else "OTHER"
    ctx.add(sid, t0, _VISIT_CODES[visit, "START"], None, None, None, "Encounter")
    if t1 is not None:
        ctx.add(sid, t1, _VISIT_CODES[visit, "END"], None, None, None, "Encounter")


_VISIT_CODES = {(v, b): schema.visit_code(v, b) for v in schema.VISIT_TYPES for b in ("START", "END")}


def _condition(r: dict, ctx: _Context) -> None:
    vs = r.get("verificationStatus")
    for c in vs.get("coding") or () if vs.__class__ is dict else ():
        if c.__class__ is dict and c.get("code") in ("entered-in-error", "refuted"):
            raise _Rejected(
                f"Condition.verificationStatus is {c.get('code')!r}: not a diagnosis the subject has"
            )
    _coded_event(
        r, ctx, "Condition", "subject", "code", ("onsetDateTime", "onsetPeriod.start", "recordedDate")
    )


def _coded_event(
    r: dict,
    ctx: _Context,
    rt: str,
    subject_field: str,
    code_field: str,
    time_fields: tuple[str, ...],
    prefix: str = "",
) -> None:
    """The common shape: one code at one time for one subject (``time_fields[0]`` is a plain field)."""
    try:  # fast path: subject, time and code already cached (see _observation)
        sid = ctx.subjects[r[subject_field]["reference"]]
        t = _TIMES[r[time_fields[0]]]
        coding = r[code_field]["coding"][0]
        code = _STANDARD_CODES[coding["system"], coding["code"]]
        display = coding.get("display")
        fast = r.get("status") not in _RETRACTED
    except (KeyError, TypeError, IndexError):
        fast = False
    if not fast:
        _check_status(r, rt)
        sid = _subject(r, rt, subject_field, ctx)
        code, display = _concept(r.get(code_field), f"{rt}.{code_field}")
        t = _first_time(r, rt, time_fields)
    if prefix:
        code = prefix + code
    if code not in ctx.described:
        ctx.describe(code, display)
    ctx.add(sid, t, code, None, None, None, rt)


def _procedure(r: dict, ctx: _Context) -> None:
    _coded_event(r, ctx, "Procedure", "subject", "code", ("performedDateTime", "performedPeriod.start"))


def _immunization(r: dict, ctx: _Context) -> None:
    _coded_event(r, ctx, "Immunization", "patient", "vaccineCode", ("occurrenceDateTime",))


def _allergy(r: dict, ctx: _Context) -> None:
    _coded_event(
        r,
        ctx,
        "AllergyIntolerance",
        "patient",
        "code",
        ("recordedDate", "onsetDateTime", "onsetPeriod.start"),
        prefix="ALLERGY//",
    )


def _medication(r: dict, rt: str, ctx: _Context) -> tuple[str, object]:
    cc = r.get("medicationCodeableConcept")
    if cc is not None:
        return _concept(cc, f"{rt}.medicationCodeableConcept")
    ref_obj = r.get("medicationReference")
    ref = ref_obj.get("reference") if ref_obj.__class__ is dict else None
    if ref.__class__ is not str:
        raise _Rejected(f"{rt} has no medicationCodeableConcept or medicationReference.reference")
    if ref.startswith("#"):
        med = next(
            (c for c in r.get("contained") or () if c.__class__ is dict and c.get("id") == ref[1:]), None
        )
    else:
        med = ctx.medications.get(ref)
    if med is None:
        raise _Rejected(
            f"{rt}.medicationReference {ref!r} does not resolve (expected a contained or same-Bundle Medication)"
        )
    return _concept(med.get("code"), f"{rt}.medicationReference {ref!r} Medication.code")


def _medication_event(r: dict, ctx: _Context, rt: str, time_fields: tuple[str, ...]) -> None:
    if "medicationCodeableConcept" in r:
        _coded_event(r, ctx, rt, "subject", "medicationCodeableConcept", time_fields)
        return
    _check_status(r, rt)
    sid = _subject(r, rt, "subject", ctx)
    code, display = _medication(r, rt, ctx)
    t = _first_time(r, rt, time_fields)
    ctx.describe(code, display)
    ctx.add(sid, t, code, None, None, None, rt)


def _medication_request(r: dict, ctx: _Context) -> None:
    _medication_event(r, ctx, "MedicationRequest", ("authoredOn",))


def _medication_administration(r: dict, ctx: _Context) -> None:
    _medication_event(r, ctx, "MedicationAdministration", ("effectiveDateTime", "effectivePeriod.start"))


_OBSERVATION_TIMES = ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")


def _observation(r: dict, ctx: _Context) -> None:
    # The hot path (most FHIR data are Observations): subject and time come from the caches when they can
    # (one visit's timestamp repeats across its observations), the general helpers (which also word the
    # quarantine reasons) run on a miss. Nothing raises for a record that converts.
    sid: int | None
    t: int | None
    try:
        sid = ctx.subjects[r["subject"]["reference"]]
        t = _TIMES[r["effectiveDateTime"]]
    except (KeyError, TypeError):
        sid = t = None
    if r.get("status") in _RETRACTED:
        _check_status(r, "Observation")
    if sid is None or t is None:
        sid = _subject(r, "Observation", "subject", ctx)
        t = _first_time(r, "Observation", _OBSERVATION_TIMES)
    code, display = _concept(r.get("code"), "Observation.code")
    add, described = ctx.add, ctx.described
    components = r.get("component")
    vq = r.get("valueQuantity")
    if vq.__class__ is dict and not components and "comparator" not in vq:  # a plain measurement
        v, unit = vq.get("value"), vq.get("unit")
        if (
            (v.__class__ is float or v.__class__ is int)
            and unit.__class__ is str
            and -_FLOAT32_MAX <= v <= _FLOAT32_MAX
        ):
            if code not in described:
                ctx.describe(code, display)
            add(sid, t, code, v, None, unit, "Observation")
            return
    num, text, unit = _value(r)
    rows = []  # every component is checked before any event is added: a record converts whole or not at all
    for i, comp in enumerate(components or ()):
        if comp.__class__ is not dict:
            raise _Rejected(f"Observation.component[{i}] {comp!r} is not an object")
        c_code, c_display = _concept(comp.get("code"), "Observation.component[{}].code", i)
        rows.append((c_code, c_display, *_value(comp, "Observation.component[{}]", i)))
    if not components or num is not None or text is not None:  # a panel without a value is not an event
        rows.insert(0, (code, display, num, text, unit))
    for c_code, c_display, c_num, c_text, c_unit in rows:
        if c_code not in described:
            ctx.describe(c_code, c_display)
        add(sid, t, c_code, c_num, c_text, c_unit, "Observation")


def _diagnostic_report(r: dict, ctx: _Context) -> None:
    _check_status(r, "DiagnosticReport")
    sid = _subject(r, "DiagnosticReport", "subject", ctx)
    code, display = _concept(r.get("code"), "DiagnosticReport.code")
    t = _first_time(r, "DiagnosticReport", ("effectiveDateTime", "effectivePeriod.start", "issued"))
    text = r.get("conclusion") if r.get("conclusion").__class__ is str else None
    for i, att in enumerate(r.get("presentedForm") or ()):
        if text is None:
            text = _attachment_text(att, f"DiagnosticReport.presentedForm[{i}]")
    ctx.describe(code, display)
    ctx.add(sid, t, code, None, text, None, "DiagnosticReport")


def _document_reference(r: dict, ctx: _Context) -> None:
    _check_status(r, "DocumentReference")
    sid = _subject(r, "DocumentReference", "subject", ctx)
    t = _first_time(r, "DocumentReference", ("date",)) if r.get("date") is not None else None
    if t is None:
        context = r.get("context")
        period = context.get("period") if context.__class__ is dict else None
        start = period.get("start") if period.__class__ is dict else None
        if start is None:
            raise _Rejected(
                "DocumentReference has no date or context.period.start (expected a FHIR dateTime)"
            )
        t = _time(start, "DocumentReference.context.period.start")
    kind, display = "OTHER", None
    if r.get("type") is not None:
        type_code, display = _concept(r.get("type"), "DocumentReference.type")
        vocab, _, value = type_code.partition(schema.SEP)
        kind = NOTE_KINDS.get(value, type_code) if vocab == "LOINC" else type_code
    text = None
    for i, content in enumerate(r.get("content") or ()):
        if text is None and content.__class__ is dict:
            text = _attachment_text(content.get("attachment"), f"DocumentReference.content[{i}].attachment")
    code = f"NOTE{schema.SEP}{kind}"
    ctx.describe(code, display)
    ctx.add(sid, t, code, None, text, None, "DocumentReference")


def _no_events(r: dict, ctx: _Context) -> None:
    """A type in :data:`NON_EVENT_TYPES`: accounted for, deliberately no events."""


_CONVERTERS = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "MedicationAdministration": _medication_administration,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "DiagnosticReport": _diagnostic_report,
    "DocumentReference": _document_reference,
} | {rt: _no_events for rt in NON_EVENT_TYPES}

EVENT_TYPES = frozenset(_CONVERTERS) - NON_EVENT_TYPES
"""The FHIR resource types that become timeline events."""


def _convert_resource(r: Any, ctx: _Context) -> tuple[str, str] | None:
    """Convert one resource; ``None`` when it converted, else ``(table, reason)`` for the quarantine."""
    try:
        rt = r["resourceType"]
        converter = _CONVERTERS[rt]
    except (KeyError, TypeError, IndexError):  # not an object, no or an unknown resourceType
        return _untyped(r)
    try:
        converter(r, ctx)
    except _Rejected as exc:
        return rt, exc.reason
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # a shape we did not expect
        return (
            rt,
            f"{rt} has an unexpected structure ({exc.__class__.__name__}: {exc}); expected FHIR R4 JSON",
        )
    converted = ctx.converted
    converted[rt] = converted.get(rt, 0) + 1
    return None


def _untyped(r: object) -> tuple[str, str]:
    rt = r.get("resourceType") if r.__class__ is dict else None
    if r.__class__ is not dict:
        return (
            "unparseable",
            f"a {type(r).__name__} where a FHIR resource was expected (a JSON object with resourceType)",
        )
    if rt is None:
        return "unparseable", "resourceType is missing (expected a JSON object with a FHIR resourceType)"
    if rt.__class__ is not str:
        return "unparseable", f"resourceType {rt!r} is not a string"
    if rt in UNMAPPED_CLINICAL_TYPES:
        return rt, f"resourceType {rt!r} is a FHIR R4 resource this converter does not map to events yet"
    return rt, f"resourceType {rt!r} is not a FHIR R4 resource type"


# --- files -> tasks -> batches -------------------------------------------------------------------------
def _kind(name: str) -> str | None:
    if name.endswith((".ndjson", ".ndjson.gz")):
        return "ndjson"
    if name.endswith(".json"):
        return "bundle"
    return None


def plan(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> SourcePlan:
    """One task per Bundle file or ``.ndjson.gz``; a plain ``.ndjson`` larger than ``chunk_bytes`` is split
    into byte ranges. Files are taken in sorted path order so a plan (and its dataset) is deterministic."""
    root = Path(path)
    if root.is_file():
        if _kind(root.name) is None:
            raise ValueError(f"{root} is not a FHIR file (expected *.json Bundle, *.ndjson or *.ndjson.gz)")
        files = [root]
    elif root.is_dir():
        found = (p for p in root.rglob("*") if p.is_file() and _kind(p.name) and not p.name.startswith("."))
        files = sorted(found, key=lambda p: p.relative_to(root).as_posix())
    else:
        raise FileNotFoundError(f"FHIR source {root} does not exist")
    if not files:
        raise FileNotFoundError(
            f"{root} holds no FHIR files (expected *.json Bundles, *.ndjson or *.ndjson.gz)"
        )
    tasks, total = [], 0
    for p in files:
        kind, size = _kind(p.name), p.stat().st_size
        total += size
        if kind == "ndjson" and not p.name.endswith(".gz") and size > chunk_bytes:
            tasks += [
                IngestTask(str(p), kind, s, min(s + chunk_bytes, size)) for s in range(0, size, chunk_bytes)
            ]
        else:
            tasks.append(IngestTask(str(p), kind))  # type: ignore[arg-type]
    return SourcePlan(source="fhir", source_path=str(root), tasks=tasks, convert=convert, input_bytes=total,
                      subject_table="Patient")


def convert(task: IngestTask) -> Iterator[ShardOutput]:
    """Convert one planned task into batches of about :data:`FLUSH_EVENTS` events (top-level: picklable)."""
    if task.table == "bundle":
        return _convert_bundle(task)
    if task.table == "ndjson":
        return _convert_ndjson(task)
    raise ValueError(f"FHIR task table {task.table!r} is not 'bundle' or 'ndjson'")


def convert_bundle(bundle: dict, source: str = "inline-bundle") -> list[ShardOutput]:
    """Convert one parsed Bundle in memory (an API request's inline record): the same code path as a file."""
    ctx = _Context(ShardBuilder(source))
    outputs = list(_bundle_entries(bundle, ctx, ""))
    outputs.append(ctx.flush())
    return outputs


def _not_json(data: bytes, exc: Exception, expected: str) -> str:
    """Why ``data`` did not parse: bad UTF-8 (with the byte and offset) or the JSON error."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            f"not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} "
            f"({err.reason}; expected UTF-8 encoded JSON, {expected})"
        )
    return f"invalid JSON ({exc}); expected {expected}"


def _bad_line(line: bytes) -> str:
    """Why one NDJSON line did not parse, with the position inside the line (not orjson's line 2)."""
    line = line.rstrip(b"\r\n")
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        reason = _not_json(line, exc, "one FHIR resource per line")
        return re.sub(r": line 1 column (\d+) \(char \d+\)", r" at column \1", reason)
    return "invalid JSON; expected one FHIR resource per line"  # pragma: no cover - it failed a moment ago


def _convert_ndjson(task: IngestTask) -> Iterator[ShardOutput]:
    """Lines that start inside ``[task.start, task.stop)``; locators are real 1-based line numbers."""
    builder = ShardBuilder(task.source_file)
    ctx = _Context(builder)
    path = task.source_file
    gz = path.endswith(".gz")
    stop = sys.maxsize if task.stop is None else task.stop
    loads, convert_resource, reject = orjson.loads, _convert_resource, builder.reject
    lines_before: list[int] = []  # newlines before our first line: counted only when a locator needs it

    def locator(i: int) -> str:
        if not lines_before:
            lines_before.append(_count_newlines(path, pos0) if pos0 else 0)
        return f"line {lines_before[0] + i}"

    with gzip.open(path, "rb") if gz else open(path, "rb") as f:
        pos0 = _seek_line_start(f, task.start) if task.start else 0
        pos, i = pos0, 0
        try:
            for line in f:
                if pos >= stop:
                    break
                pos += len(line)
                i += 1
                try:
                    r = loads(line)
                except orjson.JSONDecodeError:
                    if i == 1 and pos0 == 0 and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]  # a UTF-8 byte-order mark, which orjson refuses
                    try:
                        r = loads(line)
                    except orjson.JSONDecodeError:
                        if line.strip():  # a blank line is not a record
                            reject("unparseable", locator(i), _bad_line(line))
                        continue
                bad = convert_resource(r, ctx)
                if bad is not None:
                    reject(bad[0], locator(i), bad[1])
                if not i & 4095 and len(builder) >= FLUSH_EVENTS:
                    yield ctx.flush()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            reject(
                "unparseable",
                locator(i + 1),
                f"compressed stream is truncated or corrupt after line {i} ({exc}); expected a complete gzip file",
            )
    yield ctx.flush()


def _seek_line_start(f, start: int) -> int:
    """Position ``f`` at the first line that starts at or after byte ``start``; return that offset."""
    f.seek(start - 1)
    if f.read(1) != b"\n":
        f.readline()  # the rest of a line that began in the previous task's range
    return f.tell()


def _count_newlines(path: str, end: int) -> int:
    with open(path, "rb") as f:
        n, left = 0, end
        while left > 0:
            block = f.read(min(left, 16 * MiB))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n


def _convert_bundle(task: IngestTask) -> Iterator[ShardOutput]:
    """A file holding one Bundle (or one bare resource); a file that does not parse is one quarantine row."""
    builder = ShardBuilder(task.source_file)
    ctx = _Context(builder)
    raw = Path(task.source_file).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        builder.reject(
            "Bundle", "file", "Bundle file is " + _not_json(raw, exc, "one complete FHIR Bundle per file")
        )
        yield ctx.flush()
        return
    if doc.__class__ is dict and doc.get("resourceType") == "Bundle":
        yield from _bundle_entries(doc, ctx, "")
    else:
        bad = _convert_resource(doc, ctx)
        if bad is not None:
            builder.reject(bad[0], "file", bad[1])
    yield ctx.flush()


def _bundle_entries(bundle: dict, ctx: _Context, prefix: str) -> Iterator[ShardOutput]:
    entries = bundle.get("entry") or []
    if entries.__class__ is not list:
        ctx.builder.reject(
            "Bundle", prefix or "file", f"Bundle.entry is a {type(entries).__name__} (expected a list)"
        )
        return
    _index_bundle(entries, ctx)
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if entry.__class__ is dict else None
        if resource is None:
            continue  # e.g. a DELETE request in a transaction: no resource, no record
        ctx.full_url = entry.get("fullUrl") if entry.get("fullUrl").__class__ is str else ""
        if resource.__class__ is dict and resource.get("resourceType") == "Bundle":
            yield from _bundle_entries(resource, ctx, f"{prefix}entry[{i}].")
            continue
        bad = _convert_resource(resource, ctx)
        if bad is not None:
            ctx.builder.reject(bad[0], f"{prefix}entry[{i}]", bad[1])
        if not i & 1023 and len(ctx.builder) >= FLUSH_EVENTS:
            yield ctx.flush()
    ctx.converted["Bundle"] = ctx.converted.get("Bundle", 0) + 1


def _index_bundle(entries: list, ctx: _Context) -> None:
    """Patients by fullUrl (``urn:uuid:`` references) and Medications a MedicationRequest may point to."""
    for entry in entries:
        resource = entry.get("resource") if entry.__class__ is dict else None
        rt = resource.get("resourceType") if resource.__class__ is dict else None
        if rt != "Patient" and rt != "Medication":
            continue
        full_url, rid = entry.get("fullUrl"), resource.get("id")  # type: ignore[union-attr]
        if rt == "Patient" and full_url.__class__ is str and rid.__class__ is str and rid:
            ctx.patients[full_url] = rid
        elif rt == "Medication":
            if full_url.__class__ is str:
                ctx.medications[full_url] = resource  # type: ignore[assignment]
            if rid.__class__ is str:
                ctx.medications[f"Medication/{rid}"] = resource  # type: ignore[assignment]
