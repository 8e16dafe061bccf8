"""The MEDS contract: column names, dtypes, code conventions and the on-disk layout.

Every other module imports its column names, dtypes and fixed codes from here; codes that other modules match
(a task's outcome codes, a lab's LOINC code) are spelled in the conventions below.

Code conventions (the one place they are written down)
------------------------------------------------------
A code is ``VOCABULARY//value``. Vocabularies keep their OMOP ``vocabulary_id`` spelling:

============================  =========================================================
``ICD10CM//E11.9``            diagnosis, ICD-10-CM (dotted)
``ICD9CM//250.00``            diagnosis, ICD-9-CM (dotted)
``ICD10PCS//0DTJ4ZZ``         procedure, ICD-10-PCS; ``ICD9Proc//45.13`` for ICD-9
``SNOMED//44054006``          SNOMED CT concept
``LOINC//2160-0``             lab or vital sign (``numeric_value`` + ``unit``)
``RxNorm//860975``            medication (clinical drug or ingredient)
``CVX//140``                  immunization
``CPT4//99213``, ``HCPCS//J1100``  procedure / service
``MIMIC_LAB//50912``          a local code when no standard code exists (``SOURCE_TABLE//id``)
============================  =========================================================

Special codes:

* ``MEDS_BIRTH`` at the birth date-time, ``MEDS_DEATH`` at death (terminal event).
* Static codes have a null ``time``: ``GENDER//F``, ``GENDER//M``, ``GENDER//UNKNOWN``,
  ``RACE//<value>``, ``ETHNICITY//<value>``.
* Visits are events: ``VISIT//<type>//START`` and ``VISIT//<type>//END``, with ``<type>`` one of
  :data:`VISIT_TYPES` (IP inpatient, ER emergency, OP outpatient, ICU intensive care, OBS observation,
  HH home health, OTHER).
* Notes carry their text in ``text_value`` under ``NOTE//<kind>`` (``NOTE//DISCHARGE``).
* A categorical answer without a code of its own goes to ``text_value``; the test is in ``code``.
* A value that was recorded but is not a number keeps ``numeric_value`` null and its text in ``text_value``.

Dataset layout (MEDS 0.4)::

    DIR/data/*.parquet                  events, sorted by (subject_id, time); a subject in one shard only
    DIR/metadata/codes.parquet          code, description, parent_codes
    DIR/metadata/subject_splits.parquet subject_id, split (train / tuning / held_out)
    DIR/metadata/dataset.json           source, ClinFM version, ETL time, row counts, reconciliation
    DIR/quarantine.parquet              every source record that could not be converted, with the reason
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import meds
import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl

# --- columns -------------------------------------------------------------------------------------------
SUBJECT_ID = meds.DataSchema.subject_id_name
TIME = meds.DataSchema.time_name
CODE = meds.DataSchema.code_name
NUMERIC_VALUE = meds.DataSchema.numeric_value_name
TEXT_VALUE = meds.DataSchema.text_value_name
UNIT = "unit"

EVENT_COLUMNS = (SUBJECT_ID, TIME, CODE, NUMERIC_VALUE, TEXT_VALUE, UNIT)

EVENT_SCHEMA = pa.schema(
    [
        pa.field(SUBJECT_ID, pa.int64(), nullable=False),
        pa.field(TIME, pa.timestamp("us")),
        pa.field(CODE, pa.string(), nullable=False),
        pa.field(NUMERIC_VALUE, pa.float32()),
        pa.field(TEXT_VALUE, pa.large_string()),
        pa.field(UNIT, pa.string()),
    ]
)
"""The Arrow schema of ``data/*.parquet``: MEDS ``DataSchema`` plus the ``unit`` column."""

CODES_SCHEMA = pa.schema(
    [
        pa.field("code", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("parent_codes", pa.list_(pa.string())),
    ]
)

SPLITS_SCHEMA = pa.schema(
    [pa.field(SUBJECT_ID, pa.int64(), nullable=False), pa.field("split", pa.string(), nullable=False)]
)
TRAIN, TUNING, HELD_OUT = meds.train_split, meds.tuning_split, meds.held_out_split
SPLITS = (TRAIN, TUNING, HELD_OUT)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
    ]
)
"""One row per rejection: where it was, which table, why, and how many source records it stands for: 1 for one
record; the table's (or file's) row count when a whole table or file is refused. ``sum(records)`` is the
reconciliation's quarantined count, for every source."""


def quarantine_table(
    source_file: str, table: str | list[str], locators: list[str], reasons: list[str], records: list[int] | None = None
) -> pa.Table:
    """Quarantine rows (``records`` defaults to one source record per row)."""
    n = len(locators)
    return pa.Table.from_pydict(
        {"source_file": [source_file] * n, "table": [table] * n if isinstance(table, str) else table,
         "locator": locators, "reason": reasons, "records": records if records is not None else [1] * n},
        schema=QUARANTINE_SCHEMA,
    )  # fmt: skip

# --- layout --------------------------------------------------------------------------------------------
DATA_DIR = meds.data_subdirectory  # "data"
CODES_FILE = meds.code_metadata_filepath  # "metadata/codes.parquet"
SPLITS_FILE = meds.subject_splits_filepath  # "metadata/subject_splits.parquet"
DATASET_FILE = meds.dataset_metadata_filepath  # "metadata/dataset.json"
QUARANTINE_FILE = "quarantine.parquet"

# --- codes ---------------------------------------------------------------------------------------------
SEP = "//"
BIRTH = meds.birth_code  # "MEDS_BIRTH"
DEATH = meds.death_code  # "MEDS_DEATH"
VISIT_TYPES = ("IP", "ER", "OP", "ICU", "OBS", "HH", "OTHER")
STATIC_PREFIXES = ("GENDER//", "RACE//", "ETHNICITY//")


def make_code(vocabulary: str, value: object) -> str:
    """``make_code("ICD10CM", "E11.9") == "ICD10CM//E11.9"``; refuses empty parts."""
    text = str(value).strip() if value is not None else ""
    if not vocabulary or not text:
        raise ValueError(f"code needs a vocabulary and a value, got vocabulary={vocabulary!r} value={value!r}")
    return f"{vocabulary}{SEP}{text}"


def visit_code(visit_type: str, boundary: str) -> str:
    """``visit_code("IP", "START") == "VISIT//IP//START"``."""
    if visit_type not in VISIT_TYPES:
        raise ValueError(f"visit type {visit_type!r} is not one of {VISIT_TYPES}")
    if boundary not in ("START", "END"):
        raise ValueError(f"visit boundary {boundary!r} is not START or END")
    return f"VISIT{SEP}{visit_type}{SEP}{boundary}"


def gender_code(value: str | None) -> str:
    """Map a source sex/gender value to ``GENDER//F``, ``GENDER//M`` or ``GENDER//UNKNOWN``."""
    v = (value or "").strip().upper()
    if v in ("F", "FEMALE", "8532"):
        return "GENDER//F"
    if v in ("M", "MALE", "8507"):
        return "GENDER//M"
    return "GENDER//UNKNOWN"


def vocabulary_of(code: str) -> str:
    """The vocabulary part of a code (``"MEDS_BIRTH"`` for codes without one)."""
    return code.split(SEP, 1)[0]


def is_static(code: str) -> bool:
    return code.startswith(STATIC_PREFIXES)


def parent_code(code: str) -> str | None:
    """The parent of a hierarchical code where the rule is known: ICD-9/10-CM drop one character after
    the dot (``ICD10CM//E11.65`` -> ``ICD10CM//E11.6`` -> ``ICD10CM//E11``); others have none."""
    vocab, _, value = code.partition(SEP)
    if vocab in ("ICD10CM", "ICD9CM") and "." in value:
        head, tail = value.split(".", 1)
        return f"{vocab}{SEP}{head}.{tail[:-1]}" if len(tail) > 1 else f"{vocab}{SEP}{head}"
    return None


def to_utc_naive(value: dt.datetime) -> dt.datetime:
    """Store every time as naive UTC microseconds; naive inputs are taken as already UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


# --- in-memory types -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """One row of a subject's timeline."""

    time: dt.datetime | None
    code: str
    numeric_value: float | None = None
    text_value: str | None = None
    unit: str | None = None


@dataclass(slots=True)
class Subject:
    """A subject's longitudinal record: static events first (null time), then events by time."""

    subject_id: int
    events: list[Event] = field(default_factory=list)

    @property
    def static_codes(self) -> list[str]:
        return [e.code for e in self.events if e.time is None]

    @property
    def birth(self) -> dt.datetime | None:
        return next((e.time for e in self.events if e.code == BIRTH), None)

    @property
    def death(self) -> dt.datetime | None:
        return next((e.time for e in self.events if e.code == DEATH), None)


def frame(table: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    """``pl.from_arrow`` of a table or batch, which is always a DataFrame (polars types it as one or a Series)."""
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame):  # pragma: no cover - a table never converts to a Series
        raise TypeError(f"expected a DataFrame from an Arrow {type(table).__name__}, got {type(df).__name__}")
    return df


def empty_events() -> pa.Table:
    return EVENT_SCHEMA.empty_table()


def events_table(columns: dict[str, list]) -> pa.Table:
    """Build an events table in :data:`EVENT_SCHEMA` from plain Python column lists."""
    n = len(columns[SUBJECT_ID])
    arrays = [pa.array(columns.get(name, [None] * n), type=f.type) for name, f in zip(EVENT_COLUMNS, EVENT_SCHEMA)]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def validate_events(table: pa.Table) -> None:
    """Raise ``ValueError`` naming the problem when ``table`` breaks the MEDS data contract."""
    if table.schema != EVENT_SCHEMA:
        raise ValueError(f"events table schema is\n{table.schema}\nexpected\n{EVENT_SCHEMA}")
    try:
        meds.DataSchema.validate(table)
    except Exception as exc:  # flexible_schema raises its own exception types
        raise ValueError(f"events table fails MEDS validation: {exc}") from exc
