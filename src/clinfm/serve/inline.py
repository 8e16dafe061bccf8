"""An inline FHIR R4 Bundle to a de-identified subject, in memory: nothing is written unless asked.

The FHIR ingest's own converter turns the Bundle into MEDS events; the patient's id then becomes the
tenant's keyed pseudonym and every time moves by the tenant's date shift for that patient, so what the model
and the logs see is the same kind of record as the de-identified store holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.ingest import fhir
from clinfm.deid.structured import AGE_CAP_YEARS, ZIP_PREFIX, date_shift_days, pseudonym, zip3
from clinfm.schema import Event, Subject
from clinfm.serve.inputs import MIN_DATE, date_range_text, max_date


class BundleError(ValueError):
    """The Bundle cannot be used; the message names what is wrong, never a value from it."""


@dataclass(frozen=True, slots=True)
class InlineSubject:
    subject: Subject  # pseudonymous id, shifted times
    shift_days: int
    descriptions: dict[str, str]
    quarantined: int

    def shift(self, t: dt.datetime) -> dt.datetime:
        return t + dt.timedelta(days=self.shift_days)


def bundle_events(bundle: dict) -> tuple[pa.Table, dict[str, str], int]:
    """Events of one Bundle (the FHIR ingest's converter, in memory), code descriptions, quarantined count."""
    if bundle.get("resourceType") != "Bundle":
        raise BundleError("bundle.resourceType must be 'Bundle'")
    outputs = fhir.convert_bundle(bundle)
    events = pa.concat_tables([o.events for o in outputs])
    descriptions: dict[str, str] = {}
    quarantined = 0
    for o in outputs:
        descriptions.update(o.code_descriptions)
        quarantined += o.quarantine.num_rows
    return events, descriptions, quarantined


def deidentified_subject(bundle: dict, secret: bytes) -> InlineSubject:
    """The Bundle's one patient as a pseudonymous, date-shifted :class:`Subject`."""
    events, descriptions, quarantined = bundle_events(bundle)
    ids = set(events.column(schema.SUBJECT_ID).to_pylist())
    if len(ids) != 1:
        raise BundleError(f"the Bundle holds events of {len(ids)} patients; expected exactly one")
    source_id = ids.pop()
    times = [t for t in events.column(schema.TIME).to_pylist() if t is not None]
    outside = sum(not MIN_DATE <= t <= max_date() for t in times)
    if outside:
        raise BundleError(f"{outside} date(s) in the Bundle (birthDate, onset, effective, period...) lie outside "
                          f"{date_range_text()}: not a date a clinical record can hold")  # fmt: skip
    shift = date_shift_days(source_id, secret)
    delta = dt.timedelta(days=shift)
    cols = [events.column(c).to_pylist() for c in schema.EVENT_COLUMNS[1:]]
    rows = [_safe_event(t + delta if t is not None else None, *rest) for t, *rest in zip(*cols)]
    rows = _cap_age(rows)
    rows.sort(key=lambda e: (e.time is not None, e.time or dt.datetime.min))
    subject = Subject(pseudonym(source_id, secret), rows)
    return InlineSubject(subject, shift, descriptions, quarantined)


MAX_TEXT_CHARS = 40
"""Short categorical answers ("Never smoker") are kept; longer free text (notes, report conclusions) is
dropped rather than scrubbed: the note de-identifier is too slow for a request, and the model reads codes."""


def _safe_event(time: dt.datetime | None, code: str, value, text, unit) -> Event:
    if code.startswith(ZIP_PREFIX):
        return Event(time, ZIP_PREFIX + zip3(code.removeprefix(ZIP_PREFIX)), value, None, unit)
    if text is not None and (code.startswith("NOTE//") or len(text) > MAX_TEXT_CHARS):
        text = None
    return Event(time, code, value, text, unit)


def _cap_age(rows: list[Event]) -> list[Event]:
    """Safe Harbor's age rule: a patient 90 or older at the last event is born January 1, 90 years before."""
    birth = next((e.time for e in rows if e.code == schema.BIRTH and e.time is not None), None)
    last = max((e.time for e in rows if e.time is not None), default=None)
    if birth is None or last is None or (last.year - birth.year) - ((last.month, last.day) < (birth.month, birth.day)) < AGE_CAP_YEARS:
        return rows
    capped = dt.datetime(last.year - AGE_CAP_YEARS, 1, 1)
    return [Event(capped, e.code) if e.code == schema.BIRTH else e for e in rows]


def save_subject(subject: Subject, folder: Path) -> Path:
    """Keep a de-identified inline subject as a MEDS-shaped parquet file (only when the caller asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {c: [] for c in schema.EVENT_COLUMNS}
    for e in subject.events:
        cols[schema.SUBJECT_ID].append(subject.subject_id)
        cols[schema.TIME].append(e.time)
        cols[schema.CODE].append(e.code)
        cols[schema.NUMERIC_VALUE].append(e.numeric_value)
        cols[schema.TEXT_VALUE].append(e.text_value)
        cols[schema.UNIT].append(e.unit)
    path = folder / f"{subject.subject_id}.parquet"
    pq.write_table(schema.events_table(cols), path)
    return path
