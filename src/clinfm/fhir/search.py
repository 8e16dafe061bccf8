"""FHIR search over the MEDS store: ``patient``, ``code``, ``date`` (``eq``/``ge``/``le``/``gt``/``lt``),
``category``, ``_id``, ``_sort=date|-date``, ``_count`` and ``_offset`` paging, answered as ``searchset`` Bundles.

Searches other than Patient are per patient (``patient`` or ``subject`` is required): the store is indexed by
subject, and a search across every patient's events is a bulk export, not an interactive query.
Patient searches run over a small index of every subject's birth date and gender built once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from clinfm import schema
from clinfm.fhir.resources import (
    RESOURCE_TYPES,
    SYSTEMS,
    VOCABULARY_OF_SYSTEM,
    CodeCatalog,
    Kind,
    Row,
    event_resource,
    instant,
    patient_resource,
    token_value,
)

DEFAULT_COUNT = 50
MAX_COUNT = 1000
COMMON = frozenset({"_count", "_offset", "_sort", "_format"})
PARAMS = {
    "Patient": frozenset({"_id", "identifier", "birthdate", "gender", "name", "family", "given", "address",
                          "address-city", "address-postalcode", "address-state", "telecom", "death-date"}),
    **{r: frozenset({"_id", "patient", "subject", "code", "date", "category"}) for r in RESOURCE_TYPES if r != "Patient"},
}  # fmt: skip
"""Search parameters each resource type supports (besides ``_count``, ``_offset``, ``_sort``)."""
ABSENT_IN_STORE = frozenset({"name", "family", "given", "address", "address-city", "address-postalcode",
                             "address-state", "telecom"})  # fmt: skip
"""Patient fields a MEDS store does not hold: a search on them matches no patient."""


class SearchError(ValueError):
    """A search parameter or value this server does not support; the message names it and what is expected."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open time range ``[start, end)`` (naive UTC), the precision of a FHIR date value."""

    start: dt.datetime
    end: dt.datetime


_DATE = re.compile(r"^(eq|ne|ge|le|gt|lt|sa|eb)?(\d{4}(-\d{2}(-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?)$")


def parse_date(value: str) -> tuple[str, Interval]:
    """``"ge2023-01"`` -> ``("ge", [2023-01-01, 2023-02-01))``; the interval is the value's precision."""
    m = _DATE.match(value.strip())
    if not m:
        raise SearchError(f"date {value!r} is not [eq|ge|le|gt|lt]YYYY[-MM[-DD[Thh:mm[:ss][Z|+hh:mm]]]]")
    prefix, text = m.group(1) or "eq", m.group(2)
    if prefix not in ("eq", "ge", "le", "gt", "lt"):
        raise SearchError(f"date prefix {prefix!r} in {value!r} is not supported (use eq, ge, le, gt or lt)")
    try:
        if len(text) == 4:
            start = dt.datetime(int(text), 1, 1)
            end = dt.datetime(start.year + 1, 1, 1)
        elif len(text) == 7:
            start = dt.datetime(int(text[:4]), int(text[5:7]), 1)
            end = dt.datetime(start.year + (start.month == 12), start.month % 12 + 1, 1)
        elif len(text) == 10:
            start = dt.datetime.fromisoformat(text)
            end = start + dt.timedelta(days=1)
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            start = schema.to_utc_naive(parsed)
            time_part = text.split("T", 1)[1]
            end = start + (dt.timedelta(minutes=1) if time_part.count(":") == 1 or len(time_part) == 5 else dt.timedelta(seconds=1))
    except ValueError:
        raise SearchError(f"date {value!r} is not a valid calendar date or time") from None
    return prefix, Interval(start, end)


def date_matches(t: dt.datetime | None, prefix: str, iv: Interval) -> bool:
    if t is None:
        return False
    if prefix == "eq":
        return iv.start <= t < iv.end
    if prefix == "ge":
        return t >= iv.start
    if prefix == "gt":
        return t >= iv.end
    if prefix == "le":
        return t < iv.end
    return t < iv.start  # lt


def parse_token(value: str) -> tuple[str | None, str]:
    """``"http://loinc.org|2160-0"`` -> (vocabulary, code); ``"2160-0"`` -> (None, "2160-0");
    a ClinFM code ``"LOINC//2160-0"`` -> ("LOINC", "2160-0")."""
    if "|" in value:
        system, code = value.split("|", 1)
        if not system:
            return None, code
        vocab = VOCABULARY_OF_SYSTEM.get(system)
        if vocab is None:
            vocab = system.rsplit("/", 1)[-1] if system.startswith("https://clinfm.dev/fhir/CodeSystem/") else system
        return vocab, code
    if schema.SEP in value:
        vocab, _, code = value.partition(schema.SEP)
        return vocab, code
    return None, value


def _code_matches(code: str, wanted: list[tuple[str | None, str]]) -> bool:
    bare = code.removeprefix("ALLERGY//")
    vocab, _, value = bare.partition(schema.SEP)
    value = token_value(value)
    for want_vocab, want_code in wanted:
        want_code = token_value(want_code)
        if want_code == value and (want_vocab is None or want_vocab == vocab or SYSTEMS.get(vocab) == want_vocab):
            return True
    return False


def _subject_ref(value: str) -> int:
    ref = value.rsplit("/", 1)[-1] if value.startswith(("Patient/", "http")) else value
    if not ref.isdigit():
        raise SearchError(f"patient {value!r} is not a Patient id or reference (expected Patient/<numeric id>)")
    return int(ref)


def _resource_id(value: str, subject_id: int | None = None) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)-(\d+)", value)
    if not m:
        raise SearchError(f"id {value!r} is not a ClinFM resource id (expected <subject_id>-<row>)")
    return int(m.group(1)), int(m.group(2))


class FhirStore:
    """FHIR reads and searches over a :class:`clinfm.data.store.SubjectDatabase`."""

    def __init__(self, db: Any, catalog: CodeCatalog) -> None:
        self.db, self.catalog = db, catalog
        self._patients: list[tuple[int, dt.datetime | None, str | None, dt.datetime | None]] | None = None

    # --- one subject ------------------------------------------------------------------------------------
    def rows(self, subject_id: int) -> list[Row]:
        table = self.db.table(subject_id)
        cols = [table.column(c).to_pylist() for c in schema.EVENT_COLUMNS[1:]]
        return [Row(i, *vals) for i, vals in enumerate(zip(*cols))]

    def patient(self, subject_id: int, rows: list[Row] | None = None) -> dict[str, Any]:
        rows = rows if rows is not None else self.rows(subject_id)
        birth = next((r.time for r in rows if r.code == schema.BIRTH), None)
        death = next((r.time for r in rows if r.code == schema.DEATH), None)
        gender = next((r.code.split(schema.SEP, 1)[1] for r in rows if r.code.startswith("GENDER//")), None)
        return patient_resource(subject_id, birth, gender, death)

    def resources(self, subject_id: int, resource_type: str | None = None,
                  rows: list[Row] | None = None) -> list[tuple[dt.datetime | None, Row, Kind]]:  # fmt: skip
        """(time, row, kind) of the subject's events that become ``resource_type`` (all types when None)."""
        rows = rows if rows is not None else self.rows(subject_id)
        out = []
        for r in rows:
            k = self.catalog.kind(r.code)
            if k is not None and (resource_type is None or k.resource == resource_type):
                out.append((r.time, r, k))
        return out

    def build(self, subject_id: int, row: Row, kind: Kind, rows: list[Row]) -> dict[str, Any]:
        end = _encounter_end(rows, row) if kind.resource == "Encounter" else None
        return event_resource(subject_id, row, kind, self.catalog, end)

    def read(self, resource_type: str, resource_id: str) -> tuple[int, dict[str, Any] | None]:
        """(subject id, the resource or None when no event of that type has that id)."""
        if resource_type == "Patient":
            sid = _subject_ref(resource_id)
            return sid, (self.patient(sid) if sid in self.db else None)
        sid, row = _resource_id(resource_id)
        if sid not in self.db:
            return sid, None
        rows = self.rows(sid)
        if row >= len(rows):
            return sid, None
        kind = self.catalog.kind(rows[row].code)
        if kind is None or kind.resource != resource_type:
            return sid, None
        return sid, self.build(sid, rows[row], kind, rows)

    def everything(self, subject_id: int) -> list[dict[str, Any]]:
        rows = self.rows(subject_id)
        return [self.patient(subject_id, rows)] + [self.build(subject_id, r, k, rows) for _, r, k in self.resources(subject_id, None, rows)]

    # --- search -----------------------------------------------------------------------------------------
    def search(self, resource_type: str, params: Mapping[str, Sequence[str]]) -> tuple[list[dict[str, Any]], int]:
        """(the page of resources, the total number of matches) for a search; raises :class:`SearchError`."""
        if resource_type not in PARAMS:
            raise SearchError(f"resource type {resource_type!r} is not one of {sorted(PARAMS)}")
        unknown = sorted(set(params) - PARAMS[resource_type] - COMMON)
        if unknown:
            raise SearchError(f"search parameter(s) {unknown} not supported on {resource_type}; supported: "
                              f"{sorted(PARAMS[resource_type] | COMMON)}")  # fmt: skip
        count, offset = page_of(params)
        sort = _one(params, "_sort")
        if sort not in (None, "date", "-date"):
            raise SearchError(f"_sort {sort!r} is not supported (use date or -date)")
        if resource_type == "Patient":
            return self._search_patients(params, count, offset, sort)
        sid = self.subject_of(params)
        if sid is None:
            raise SearchError(f"{resource_type} search needs patient=<id> (or subject=Patient/<id>)")
        rows = self.rows(sid) if resource_type == "Encounter" else self._candidate_rows(sid, resource_type, params)
        hits = self.resources(sid, resource_type, rows)
        hits = [h for h in hits if _matches(h, params, self.catalog, sid)]
        if sort is not None:
            far = dt.datetime.max if sort == "date" else dt.datetime.min
            hits.sort(key=lambda h: (h[0] or far, h[1].row), reverse=sort == "-date")
        page = hits[offset : offset + count]
        return [self.build(sid, r, k, rows) for _, r, k in page], len(hits)

    def _candidate_rows(self, sid: int, resource_type: str, params: Mapping[str, Sequence[str]]) -> list[Row]:
        """Only the subject's rows whose code can match (type, ``code``, ``category``), chosen in Arrow before
        any row becomes a Python object: a long record costs what its matching events cost."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self.db.table(sid)
        codes = table.column(schema.CODE)
        wanted_codes = [[parse_token(v) for v in value.split(",")] for value in params.get("code", [])]
        wanted_cats = [{parse_token(v)[1] for v in value.split(",")} for value in params.get("category", [])]
        keep = []
        for code in pc.unique(codes).to_pylist():
            k = self.catalog.kind(code)
            if k is None or k.resource != resource_type:
                continue
            if all(_code_matches(code, w) for w in wanted_codes) and all(k.category in c for c in wanted_cats):
                keep.append(code)
        if not keep:
            return []
        idx = pc.indices_nonzero(pc.is_in(codes, value_set=pa.array(keep, pa.string()))).to_pylist()
        sub = table.take(idx)
        cols = [sub.column(c).to_pylist() for c in schema.EVENT_COLUMNS[1:]]
        return [Row(i, *vals) for i, vals in zip(idx, zip(*cols))]

    @staticmethod
    def subject_of(params: Mapping[str, Sequence[str]]) -> int | None:
        value = _one(params, "patient") or _one(params, "subject")
        return _subject_ref(value) if value else None

    def _search_patients(self, params: Mapping[str, Sequence[str]], count: int, offset: int,
                         sort: str | None) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        if any(params.get(p) for p in ABSENT_IN_STORE):
            return [], 0
        index = self._patient_index()
        wanted_ids = [v.rsplit("|", 1)[-1] for name in ("_id", "identifier") for x in params.get(name, [])
                      for v in x.split(",")]  # fmt: skip
        ids = {int(v) for v in wanted_ids if v.isdigit()}
        genders = {g for x in params.get("gender", []) for g in x.split(",")}
        births = [parse_date(v) for v in params.get("birthdate", [])]
        deaths = [parse_date(v) for v in params.get("death-date", [])]
        hits = []
        for sid, birth, gender, death in index:
            if wanted_ids and sid not in ids:
                continue
            if genders and {"F": "female", "M": "male"}.get(gender or "", "unknown") not in genders:
                continue
            if births and not all(date_matches(birth, p, iv) for p, iv in births):
                continue
            if deaths and not all(date_matches(death, p, iv) for p, iv in deaths):
                continue
            hits.append((sid, birth, gender, death))
        if sort is not None:
            hits.sort(key=lambda h: (h[1] or dt.datetime.min, h[0]), reverse=sort == "-date")
        return [patient_resource(*h) for h in hits[offset : offset + count]], len(hits)

    def _patient_index(self) -> list[tuple[int, dt.datetime | None, str | None, dt.datetime | None]]:
        if self._patients is None:
            import pyarrow.compute as pc

            out = []
            for sid in self.db:
                t = self.db.table(sid)
                codes = t.column(schema.CODE)
                keep = pc.or_(pc.is_in(codes, value_set=_PATIENT_CODES), pc.starts_with(codes, "GENDER//"))
                sub = t.filter(keep)
                birth = death = gender = None
                for code, time in zip(sub.column(schema.CODE).to_pylist(), sub.column(schema.TIME).to_pylist()):
                    if code == schema.BIRTH:
                        birth = birth or time
                    elif code == schema.DEATH:
                        death = death or time
                    else:
                        gender = gender or code.split(schema.SEP, 1)[1]
                out.append((sid, birth, gender, death))
            self._patients = out
        return self._patients


def _pa_codes():
    import pyarrow as pa

    return pa.array([schema.BIRTH, schema.DEATH])


_PATIENT_CODES = _pa_codes()


def page_of(params: Mapping[str, Sequence[str]]) -> tuple[int, int]:
    count, offset = _one(params, "_count"), _one(params, "_offset")
    try:
        n = DEFAULT_COUNT if count is None else int(count)
        o = 0 if offset is None else int(offset)
    except ValueError:
        raise SearchError(f"_count {count!r} / _offset {offset!r} must be whole numbers") from None
    if not 0 <= n <= MAX_COUNT or o < 0:
        raise SearchError(f"_count must be 0..{MAX_COUNT} and _offset >= 0 (got _count={n}, _offset={o})")
    return n, o


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise SearchError(f"{name} may be given once (got {len(values)} values)")
    return values[0] if values else None


def _matches(hit: tuple[dt.datetime | None, Row, Kind], params: Mapping[str, Sequence[str]], catalog: CodeCatalog,
             sid: int) -> bool:  # fmt: skip
    t, row, kind = hit
    for value in params.get("_id", []):
        if f"{sid}-{row.row}" not in value.split(","):
            return False
    for value in params.get("code", []):
        if not _code_matches(row.code, [parse_token(v) for v in value.split(",")]):
            return False
    for value in params.get("category", []):
        cats = {parse_token(v)[1] for v in value.split(",")}
        if kind.category is None or kind.category not in cats:
            return False
    for value in params.get("date", []):
        prefix, iv = parse_date(value)
        if not date_matches(t, prefix, iv):
            return False
    return True


def _encounter_end(rows: list[Row], start: Row) -> dt.datetime | None:
    """The END of the visit that ``start`` opens: the first END of the same type after it."""
    end_code = start.code[: -len("START")] + "END"
    return next((r.time for r in rows[start.row + 1 :] if r.code == end_code), None)


def searchset(resources: list[dict[str, Any]], total: int, base: str, resource_type: str,
              params: Mapping[str, Sequence[str]]) -> dict[str, Any]:  # fmt: skip
    """A ``searchset`` Bundle with ``self`` / ``next`` / ``previous`` links (paging by ``_offset``)."""
    count, offset = page_of(params)
    kept = [(k, v) for k, vs in params.items() if k not in ("_offset",) for v in vs]

    def link(relation: str, at: int) -> dict[str, str]:
        return {"relation": relation, "url": f"{base}/{resource_type}?" + urlencode(kept + [("_offset", str(at))])}

    links = [link("self", offset)]
    if count and offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    return {
        "resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
        "timestamp": instant(dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                  for r in resources],
    }  # fmt: skip
