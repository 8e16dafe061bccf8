"""MIMIC-IV (``hosp/`` and ``icu/`` CSV modules, v2.x) to MEDS events.

One task per table file; a task streams its gzip CSV in ``chunk_rows`` slices and yields one
:class:`ShardOutput` per slice, so memory is bounded by the chunk whatever the table's size.

Tables and codes
----------------
=========================  ===========================================================================
``hosp/patients``          ``GENDER//F|M|UNKNOWN`` (static); ``MEDS_BIRTH``; ``MEDS_DEATH`` at ``dod``
``hosp/admissions``        ``VISIT//IP//START`` at admittime (text: admission_type), ``VISIT//IP//END`` at
                           dischtime (text: discharge_location); ``OBS`` instead of ``IP`` for observation
                           admission types; ``VISIT//ER//START|END`` at edregtime/edouttime;
                           ``MEDS_DEATH`` at deathtime; ``RACE//<race>`` (static); ``INSURANCE//``,
                           ``LANGUAGE//`` (``?`` skipped) and ``MARITAL_STATUS//`` at admittime
``hosp/transfers``         ``TRANSFER//<careunit>`` at intime (text: eventtype); ``TRANSFER//DISCHARGE``
                           for discharge rows, which have no care unit
``hosp/diagnoses_icd``     ``ICD9CM//250.00`` / ``ICD10CM//E11.9`` at the admission's dischtime
``hosp/procedures_icd``    ``ICD9Proc//45.13`` / ``ICD10PCS//0DTJ4ZZ`` at chartdate
``hosp/drgcodes``          ``DRG//<code>`` (HCFA = MS-DRG), ``APR_DRG//<code>``, else
                           ``MIMIC_DRG//<type>//<code>``, at the admission's dischtime
``hosp/hcpcsevents``       ``CPT4//<code>`` (starts with a digit) or ``HCPCS//<code>`` at chartdate
``hosp/services``          ``MIMIC_SERVICE//<curr_service>`` at transfertime
``hosp/labevents``         ``MIMIC_LAB//<itemid>``: valuenum + valueuom, value as text when not numeric
``hosp/prescriptions``     ``NDC//<ndc>`` when ndc is 10-11 digits and not all zeros, else
                           ``MIMIC_DRUG//<drug>``, at starttime; dose_val_rx + dose_unit_rx
``hosp/emar``              ``MIMIC_EMAR//<medication>`` at charttime, event_txt as text
``hosp/omr``               ``MIMIC_OMR//<result_name>`` at chartdate; ``a/b`` values (blood pressure) become
                           ``MIMIC_OMR//<result_name>//SYSTOLIC`` and ``...//DIASTOLIC`` in mmHg
``hosp/microbiologyevents``  ``MIMIC_MICRO//<test_name or spec_type_desc>`` at charttime (else chartdate),
                           org_name as text; a susceptibility row adds ``MIMIC_MICRO_AB//<ab_name>`` with
                           interpretation as text and dilution_value as number
``icu/icustays``           ``VISIT//ICU//START|END`` at intime/outtime (text: first/last careunit)
``icu/inputevents``        ``MIMIC_ITEM//<itemid>`` at starttime: amount + amountuom
``icu/outputevents``       ``MIMIC_ITEM//<itemid>`` at charttime: value + valueuom
``icu/procedureevents``    ``MIMIC_ITEM//<itemid>`` at starttime: value + valueuom
``icu/chartevents``        ``MIMIC_ITEM//<itemid>`` at charttime: valuenum + valueuom, value as text
=========================  ===========================================================================

Descriptions come from ``d_icd_diagnoses``/``d_icd_procedures`` (long_title), ``d_labitems`` ("label
(fluid, category)"), ``d_items`` (label), the drug name (NDC) and the row's own description (HCPCS, DRG).

Choices worth knowing
---------------------
* Birth is approximated as 1 January of ``anchor_year - anchor_age`` (MIMIC publishes no birth date; the
  true date is up to a year earlier, and ages over 89 are capped at 91).
* ``MEDS_DEATH`` comes from ``admissions.deathtime`` when the subject died in hospital (that is where the
  time of day is); ``patients.dod`` (a date, taken at midnight) is used only for subjects without one.
* Race is recorded per admission; it is emitted as a static ``RACE//`` row, de-duplicated within a chunk.
* Diagnoses and DRG codes have no time in MIMIC: they take their admission's dischtime (admissions are
  loaded once per worker process); a row whose hadm_id has no usable admission is quarantined.
* Every time is naive (MIMIC times are date-shifted local times) and a date is taken at midnight.

Not converted (the plan names these files in its log and in :func:`find_tables`): the ``d_*`` dictionaries
(used for descriptions), ``hosp/pharmacy``, ``hosp/poe``, ``hosp/poe_detail``, ``hosp/emar_detail``,
``hosp/provider``, ``icu/caregiver``, ``icu/datetimeevents`` (values are dates) and
``icu/ingredientevents`` (a breakdown of inputevents). Free-text ``comments`` columns are never read.

Bad records are quarantined, never fatal: a missing required column (the whole file, counted as its rows),
a malformed CSV row, an empty or non-integer subject_id, an unparsable time, an unusable code, and a file
that breaks off (truncated gzip): every row Python's decompressor recovers is converted, the last one is
held back as possibly cut short, and one quarantine record (counted as one read) stands for the unread rest.
Reasons name the file, the 1-based data row, the column, the value and what was expected.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from clinfm import schema
from clinfm.data.ingest.base import IngestTask, RecordCounts, ShardOutput, SourcePlan, estimated_bytes

log = logging.getLogger(__name__)

SOURCE = "mimic"
DEFAULT_CHUNK_ROWS = 500_000
MODULES = ("hosp", "icu")
SUFFIXES = (".csv.gz", ".csv")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_EXPECTED_TIME = "expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD"
_BLOCK_BYTES = 1 << 20
_SEP = schema.SEP
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeError, csv.Error, pa.ArrowException)
"""What reading a damaged file can raise; each becomes a quarantine row, never a crash."""


# --- expression helpers --------------------------------------------------------------------------------
def _s(col: str) -> pl.Expr:
    """A source column as stripped text, blank as null."""
    text = pl.col(col).str.strip_chars()
    return pl.when(text != "").then(text)


def _num(col: str) -> pl.Expr:
    return _s(col).cast(pl.Float64, strict=False)


def _int(col: str) -> pl.Expr:
    return _s(col).cast(pl.Int64, strict=False)


def _t(col: str) -> pl.Expr:
    """The parsed time of a column listed in a table's ``times``."""
    return pl.col(f"_t_{col}")


def _code(vocabulary: str, *parts: pl.Expr | str) -> pl.Expr:
    """``VOCABULARY//part//part``; null when any part is null."""
    pieces: list[pl.Expr] = [pl.lit(vocabulary)]
    for part in parts:
        pieces += [pl.lit(_SEP), pl.lit(part) if isinstance(part, str) else part]
    return pl.concat_str(pieces)


def _msg(*parts: pl.Expr | str) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def _quoted(col: str) -> pl.Expr:
    return _msg("'", pl.col(col), "'")


def _text_unless_number(col: str) -> pl.Expr:
    """The recorded value as text when it is not a number (numbers go to numeric_value)."""
    return pl.when(_num(col).is_null()).then(_s(col))


def _parse_time(col: str) -> pl.Expr:
    text = pl.col(col).str.strip_chars()
    return pl.coalesce([text.str.to_datetime(f, strict=False, time_unit="us") for f in TIME_FORMATS])


@dataclass(frozen=True, slots=True)
class Emit:
    """One event a row may produce: skipped for rows where ``when`` is false or ``code`` is null."""

    code: pl.Expr
    time: pl.Expr | None = None  # None: a static event (null time)
    numeric: pl.Expr | None = None
    text: pl.Expr | None = None
    unit: pl.Expr | None = None
    when: pl.Expr | None = None
    description: pl.Expr | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """A row is quarantined with ``reason`` where ``bad`` holds (the first failing check wins)."""

    bad: pl.Expr
    reason: pl.Expr


@dataclass(frozen=True, slots=True)
class Context:
    """What a conversion needs besides the rows: the file's label and the source root for lookups."""

    label: str  # "hosp/labevents.csv.gz", used in reasons
    root: Path


@dataclass(frozen=True)
class TableSpec:
    """How one MIMIC table becomes events."""

    required: tuple[str, ...]
    emits: tuple[Emit, ...]
    times: dict[str, bool] = field(default_factory=dict)  # column -> required
    optional: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    prepare: Callable[[pl.DataFrame, Context], pl.DataFrame] | None = None


def _required_text(col: str, what: str) -> Check:
    return Check(_s(col).is_null(), pl.lit(f"{col} is empty; expected {what}"))


def _integer(col: str, what: str) -> Check:
    return Check(
        _s(col).is_not_null() & _int(col).is_null(),
        _msg(f"{col} ", _quoted(col), f" is not an integer {what}"),
    )


def _number(col: str) -> Check:
    return Check(
        _s(col).is_not_null() & _num(col).is_null(), _msg(f"{col} ", _quoted(col), " is not a number")
    )


# --- lookups (loaded once per worker process) ----------------------------------------------------------
def _table_path(root: Path, table: str) -> Path | None:
    for suffix in SUFFIXES:
        path = root / f"{table}{suffix}"
        if path.is_file():
            return path
    return None


def _stamp(root: Path, table: str) -> tuple[str, int, int] | None:
    """Identifies one version of a lookup file, so a per-process cache never serves a file that changed."""
    path = _table_path(root, table)
    if path is None:
        return None
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def _read_whole(path: Path | None, columns: tuple[str, ...]) -> pl.DataFrame:
    """A small table as text columns, tolerant of bad rows (they are the owning task's business)."""
    empty = pl.DataFrame({c: [] for c in columns}, schema={c: pl.String for c in columns})
    if path is None:
        return empty
    try:
        stream = CsvStream(path)
        if any(c not in stream.header for c in columns):
            return empty
        tables = [t for t, _ in stream.chunks(10**9)]
    except _READ_ERRORS:
        return empty
    if not tables:
        return empty
    return schema.frame(pa.concat_tables(tables).select(list(columns)))


def _admissions(root: Path) -> pl.DataFrame:
    """hadm_id -> subject, dischtime, deathtime; for diagnoses and DRG times and for deaths."""
    return _load_admissions(_stamp(root, "hosp/admissions"))


@functools.lru_cache(maxsize=4)
def _load_admissions(stamp: tuple[str, int, int] | None) -> pl.DataFrame:
    path = Path(stamp[0]) if stamp else None
    raw = _read_whole(path, ("subject_id", "hadm_id", "dischtime", "deathtime"))
    return (
        raw.select(
            _int("hadm_id").alias("_hadm"),
            _int("subject_id").alias("_adm_subject"),
            _parse_time("dischtime").alias("_adm_disch"),
            _parse_time("deathtime").alias("_adm_death"),
        )
        .filter(pl.col("_hadm").is_not_null())
        .unique("_hadm", keep="first", maintain_order=True)
    )


def _icd_dictionary(root: Path, table: str) -> pl.DataFrame:
    return _load_icd_dictionary(_stamp(root, table))


@functools.lru_cache(maxsize=8)
def _load_icd_dictionary(stamp: tuple[str, int, int] | None) -> pl.DataFrame:
    raw = _read_whole(Path(stamp[0]) if stamp else None, ("icd_code", "icd_version", "long_title"))
    return (
        raw.select(
            _s("icd_code").str.to_uppercase().str.replace_all(".", "", literal=True).alias("_icd"),
            _s("icd_version").alias("_icd_version"),
            _s("long_title").alias("_title"),
        )
        .drop_nulls(["_icd", "_icd_version"])
        .unique(["_icd", "_icd_version"], keep="first", maintain_order=True)
    )


def _item_dictionary(root: Path, table: str) -> pl.DataFrame:
    """itemid -> label; d_labitems labels read ``label (fluid, category)``."""
    return _load_item_dictionary(_stamp(root, table), with_fluid=table == "hosp/d_labitems")


@functools.lru_cache(maxsize=8)
def _load_item_dictionary(stamp: tuple[str, int, int] | None, with_fluid: bool) -> pl.DataFrame:
    path = Path(stamp[0]) if stamp else None
    if with_fluid:
        raw = _read_whole(path, ("itemid", "label", "fluid", "category"))
        detail = pl.concat_str([_s("fluid"), _s("category")], separator=", ", ignore_nulls=True)
        label = (
            pl.when(detail.is_not_null() & (detail != ""))
            .then(pl.concat_str([_s("label"), pl.lit(" ("), detail, pl.lit(")")]))
            .otherwise(_s("label"))
        )
    else:
        raw = _read_whole(path, ("itemid", "label"))
        label = _s("label")
    return (
        raw.select(_int("itemid").alias("_item"), label.alias("_label"))
        .drop_nulls("_item")
        .unique("_item", keep="first", maintain_order=True)
    )


# --- table specifications ------------------------------------------------------------------------------
def _prepare_patients(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    died_in_hospital = _admissions(ctx.root).filter(pl.col("_adm_death").is_not_null())["_adm_subject"]
    genders = {v: schema.gender_code(v) for v in df["gender"].unique().to_list() if v is not None}
    birth_year = _int("anchor_year") - _int("anchor_age")
    return df.with_columns(
        pl.col("gender")
        .replace_strict(genders, default=schema.gender_code(None), return_dtype=pl.String)
        .alias("_gender"),
        pl.when(birth_year.is_between(1, 9999))
        .then(pl.datetime(birth_year, 1, 1, time_unit="us"))
        .alias("_birth"),
        pl.col("_sid").is_in(died_in_hospital.implode()).alias("_died_in_hospital"),
    )


_PATIENTS = TableSpec(
    required=("subject_id", "gender", "anchor_age", "anchor_year"),
    optional=("dod",),
    times={"dod": False},
    prepare=_prepare_patients,
    checks=(
        _required_text("anchor_age", "the age in anchor_year"),
        _integer("anchor_age", "(age in years)"),
        _required_text("anchor_year", "a year"),
        _integer("anchor_year", "(year)"),
        Check(
            pl.col("_birth").is_null(),
            _msg(
                "anchor_year - anchor_age = ",
                _int("anchor_year") - _int("anchor_age"),
                " is not a valid birth year",
            ),
        ),
        Check(
            _t("dod") < pl.col("_birth"),
            _msg(
                "dod ",
                _quoted("dod"),
                " is before the birth date derived from anchor_year - anchor_age (",
                pl.col("_birth").dt.strftime("%Y-%m-%d"),
                ")",
            ),
        ),
    ),
    emits=(
        Emit(pl.col("_gender")),
        Emit(pl.lit(schema.BIRTH), time=pl.col("_birth")),
        Emit(
            pl.lit(schema.DEATH), time=_t("dod"), when=_t("dod").is_not_null() & ~pl.col("_died_in_hospital")
        ),
    ),
)


def _prepare_admissions(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    observation = _s("admission_type").str.to_uppercase().str.contains("OBSERVATION")
    return df.with_columns(pl.when(observation).then(pl.lit("OBS")).otherwise(pl.lit("IP")).alias("_visit"))


def _visit(boundary: str, time: pl.Expr, text: pl.Expr, visit: pl.Expr | str) -> Emit:
    return Emit(_code("VISIT", visit, boundary), time=time, text=text)


_ADMISSIONS = TableSpec(
    required=("subject_id", "hadm_id", "admittime", "dischtime"),
    optional=(
        "deathtime",
        "admission_type",
        "discharge_location",
        "insurance",
        "language",
        "marital_status",
        "race",
        "edregtime",
        "edouttime",
    ),
    times={"admittime": True, "dischtime": True, "deathtime": False, "edregtime": False, "edouttime": False},
    prepare=_prepare_admissions,
    checks=(_required_text("hadm_id", "an admission id"), _integer("hadm_id", "admission id")),
    emits=(
        _visit("START", _t("admittime"), _s("admission_type"), pl.col("_visit")),
        _visit("END", _t("dischtime"), _s("discharge_location"), pl.col("_visit")),
        Emit(
            pl.lit(schema.visit_code("ER", "START")), time=_t("edregtime"), when=_t("edregtime").is_not_null()
        ),
        Emit(
            pl.lit(schema.visit_code("ER", "END")), time=_t("edouttime"), when=_t("edouttime").is_not_null()
        ),
        Emit(pl.lit(schema.DEATH), time=_t("deathtime"), when=_t("deathtime").is_not_null()),
        Emit(_code("RACE", _s("race"))),
        Emit(_code("INSURANCE", _s("insurance")), time=_t("admittime")),
        Emit(_code("LANGUAGE", _s("language")), time=_t("admittime"), when=_s("language") != "?"),
        Emit(_code("MARITAL_STATUS", _s("marital_status")), time=_t("admittime")),
    ),
)

_TRANSFERS = TableSpec(
    required=("subject_id", "eventtype", "intime"),
    optional=("careunit",),
    times={"intime": True},
    checks=(_required_text("eventtype", "admit, transfer, ED or discharge"),),
    emits=(
        Emit(
            _code("TRANSFER", pl.coalesce(_s("careunit"), _s("eventtype").str.to_uppercase())),
            time=_t("intime"),
            text=_s("eventtype"),
        ),
    ),
)


def _join_admission(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    keyed = df.with_columns(_int("hadm_id").alias("_hadm"))
    return keyed.join(_admissions(ctx.root), on="_hadm", how="left", maintain_order="left")


def _admission_checks(table: str) -> tuple[Check, ...]:
    """Rows timed by their admission's dischtime, since ``table`` has no time of its own."""
    source = f"hosp/admissions, whose dischtime is the time of {table}"
    return (
        _required_text("hadm_id", f"an admission id ({table} take the admission's dischtime)"),
        _integer("hadm_id", "admission id"),
        Check(pl.col("_adm_subject").is_null(), _msg("hadm_id ", _quoted("hadm_id"), f" is not in {source}")),
        Check(
            pl.col("_adm_subject") != pl.col("_sid"),
            _msg(
                "subject_id ",
                pl.col("_sid"),
                " differs from the subject ",
                pl.col("_adm_subject"),
                " of admission ",
                pl.col("_hadm"),
                " in hosp/admissions",
            ),
        ),
        Check(
            pl.col("_adm_disch").is_null(),
            _msg("admission ", pl.col("_hadm"), f" has no valid dischtime in {source}"),
        ),
    )


def _icd_head(value: pl.Expr, head: pl.Expr | int) -> pl.Expr:
    """Insert the dot after ``head`` characters when the code is longer than that."""
    length = value.str.len_chars()
    dotted = pl.concat_str([value.str.slice(0, head), pl.lit("."), value.str.slice(head)])
    return pl.when(length > head).then(dotted).otherwise(value)


def _dotted_diagnosis(code: pl.Expr, version: pl.Expr) -> pl.Expr:
    """ICD-9-CM: 3 digits then the dot, E codes 4 characters, V codes 3; ICD-10-CM: after 3 characters."""
    icd9 = _icd_head(code, pl.when(code.str.starts_with("E")).then(4).otherwise(3))
    return (
        pl.when(version == "9")
        .then(_code("ICD9CM", icd9))
        .when(version == "10")
        .then(_code("ICD10CM", _icd_head(code, 3)))
    )


def _dotted_procedure(code: pl.Expr, version: pl.Expr) -> pl.Expr:
    """ICD-9 procedures: dot after 2 digits; ICD-10-PCS: no dot."""
    return (
        pl.when(version == "9")
        .then(_code("ICD9Proc", _icd_head(code, 2)))
        .when(version == "10")
        .then(_code("ICD10PCS", code))
    )


def _prepare_icd(dictionary: str, with_admission: bool) -> Callable[[pl.DataFrame, Context], pl.DataFrame]:
    def prepare(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        if with_admission:
            df = _join_admission(df, ctx)
        df = df.with_columns(
            _s("icd_code").str.to_uppercase().str.replace_all(".", "", literal=True).alias("_icd"),
            _s("icd_version").alias("_icd_version"),
        )
        titles = _icd_dictionary(ctx.root, dictionary)
        return df.join(titles, on=["_icd", "_icd_version"], how="left", maintain_order="left")

    return prepare


_ICD_CHECKS = (
    _required_text("icd_code", "an ICD code"),
    Check(
        ~pl.col("_icd").str.contains(r"^[A-Z0-9]{2,7}$"),
        _msg("icd_code ", _quoted("icd_code"), " is not an ICD code (expected 2-7 letters and digits)"),
    ),
    Check(
        ~pl.col("_icd_version").is_in(["9", "10"]).fill_null(False),
        _msg("icd_version ", pl.coalesce(_quoted("icd_version"), pl.lit("(empty)")), " is not 9 or 10"),
    ),
)

_DIAGNOSES = TableSpec(
    required=("subject_id", "hadm_id", "icd_code", "icd_version"),
    prepare=_prepare_icd("hosp/d_icd_diagnoses", with_admission=True),
    checks=_admission_checks("diagnoses") + _ICD_CHECKS,
    emits=(
        Emit(
            _dotted_diagnosis(pl.col("_icd"), pl.col("_icd_version")),
            time=pl.col("_adm_disch"),
            description=pl.col("_title"),
        ),
    ),
)

_PROCEDURES = TableSpec(
    required=("subject_id", "chartdate", "icd_code", "icd_version"),
    times={"chartdate": True},
    prepare=_prepare_icd("hosp/d_icd_procedures", with_admission=False),
    checks=_ICD_CHECKS,
    emits=(
        Emit(
            _dotted_procedure(pl.col("_icd"), pl.col("_icd_version")),
            time=_t("chartdate"),
            description=pl.col("_title"),
        ),
    ),
)

_DRG_VOCABULARIES = {"HCFA": "DRG", "APR": "APR_DRG"}
_drg_type = _s("drg_type").str.to_uppercase()
_DRGCODES = TableSpec(
    required=("subject_id", "hadm_id", "drg_type", "drg_code"),
    optional=("description",),
    prepare=_join_admission,
    checks=_admission_checks("DRG codes") + (_required_text("drg_code", "a DRG code"),),
    emits=(
        Emit(
            pl.when(_drg_type == "HCFA")
            .then(_code("DRG", _s("drg_code")))
            .when(_drg_type == "APR")
            .then(_code("APR_DRG", _s("drg_code")))
            .otherwise(_code("MIMIC_DRG", pl.coalesce(_drg_type, pl.lit("UNKNOWN")), _s("drg_code"))),
            time=pl.col("_adm_disch"),
            description=_s("description"),
        ),
    ),
)


def _hcpcs_dictionary(root: Path) -> pl.DataFrame:
    return _load_hcpcs_dictionary(_stamp(root, "hosp/d_hcpcs"))


@functools.lru_cache(maxsize=4)
def _load_hcpcs_dictionary(stamp: tuple[str, int, int] | None) -> pl.DataFrame:
    raw = _read_whole(Path(stamp[0]) if stamp else None, ("code", "long_description"))
    return (
        raw.select(_s("code").str.to_uppercase().alias("_hcpcs"), _s("long_description").alias("_title"))
        .drop_nulls("_hcpcs")
        .unique("_hcpcs", keep="first", maintain_order=True)
    )


def _prepare_hcpcs(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    keyed = df.with_columns(_s("hcpcs_cd").str.to_uppercase().alias("_hcpcs"))
    return keyed.join(_hcpcs_dictionary(ctx.root), on="_hcpcs", how="left", maintain_order="left")


_HCPCS = TableSpec(
    required=("subject_id", "chartdate", "hcpcs_cd"),
    optional=("short_description",),
    times={"chartdate": True},
    prepare=_prepare_hcpcs,
    checks=(_required_text("hcpcs_cd", "a CPT or HCPCS code"),),
    emits=(
        Emit(
            pl.when(pl.col("_hcpcs").str.contains(r"^\d"))
            .then(_code("CPT4", pl.col("_hcpcs")))
            .otherwise(_code("HCPCS", pl.col("_hcpcs"))),
            time=_t("chartdate"),
            description=pl.coalesce(pl.col("_title"), _s("short_description")),
        ),
    ),
)

_SERVICES = TableSpec(
    required=("subject_id", "transfertime", "curr_service"),
    times={"transfertime": True},
    checks=(_required_text("curr_service", "a service name"),),
    emits=(Emit(_code("MIMIC_SERVICE", _s("curr_service")), time=_t("transfertime")),),
)


def _prepare_items(dictionary: str) -> Callable[[pl.DataFrame, Context], pl.DataFrame]:
    def prepare(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        keyed = df.with_columns(_int("itemid").alias("_item"))
        return keyed.join(
            _item_dictionary(ctx.root, dictionary), on="_item", how="left", maintain_order="left"
        )

    return prepare


def _item_table(
    vocabulary: str, dictionary: str, time: str, value: str, unit: str, text: str | None = None
) -> TableSpec:
    """Tables keyed by a numeric itemid with one measured value (labs and the ICU event tables)."""
    optional = tuple(dict.fromkeys(c for c in (value, unit, text) if c))
    return TableSpec(
        required=("subject_id", "itemid", time),
        optional=optional,
        times={time: True},
        prepare=_prepare_items(dictionary),
        checks=(_required_text("itemid", "an item id"), _integer("itemid", "item id"), _number(value)),
        emits=(
            Emit(
                _code(vocabulary, pl.col("_item").cast(pl.String)),
                time=_t(time),
                numeric=_num(value),
                unit=_s(unit),
                text=pl.when(_num(value).is_null()).then(_s(text)) if text else None,
                description=pl.col("_label"),
            ),
        ),
    )


_LABEVENTS = _item_table("MIMIC_LAB", "hosp/d_labitems", "charttime", "valuenum", "valueuom", text="value")
_CHARTEVENTS = _item_table("MIMIC_ITEM", "icu/d_items", "charttime", "valuenum", "valueuom", text="value")
_INPUTEVENTS = _item_table("MIMIC_ITEM", "icu/d_items", "starttime", "amount", "amountuom")
_OUTPUTEVENTS = _item_table("MIMIC_ITEM", "icu/d_items", "charttime", "value", "valueuom")
_PROCEDUREEVENTS = _item_table("MIMIC_ITEM", "icu/d_items", "starttime", "value", "valueuom")
_INGREDIENTEVENTS = _item_table("MIMIC_ITEM", "icu/d_items", "starttime", "amount", "amountuom")
_DATETIMEEVENTS = TableSpec(  # the value is itself a date (e.g. "date of last dialysis"): kept as text
    required=("subject_id", "itemid", "charttime"),
    optional=("value",),
    times={"charttime": True},
    prepare=_prepare_items("icu/d_items"),
    checks=(_required_text("itemid", "an item id"), _integer("itemid", "item id")),
    emits=(Emit(_code("MIMIC_ITEM", pl.col("_item").cast(pl.String)), time=_t("charttime"), text=_s("value"),
                description=pl.col("_label")),),
)  # fmt: skip

_ndc = _s("ndc")
_valid_ndc = _ndc.str.contains(r"^\d{10,11}$") & ~_ndc.str.contains(r"^0+$")
_PRESCRIPTIONS = TableSpec(
    required=("subject_id", "starttime", "drug"),
    optional=("ndc", "dose_val_rx", "dose_unit_rx"),
    times={"starttime": True},
    checks=(
        Check(
            _s("drug").is_null() & ~_valid_ndc.fill_null(False),
            _msg(
                "drug is empty and ndc ",
                pl.coalesce(_quoted("ndc"), pl.lit("(empty)")),
                " is not an NDC (expected 10-11 digits, not all zeros); nothing to code",
            ),
        ),
    ),
    emits=(
        Emit(
            pl.when(_valid_ndc).then(_code("NDC", _ndc)).otherwise(_code("MIMIC_DRUG", _s("drug"))),
            time=_t("starttime"),
            numeric=_num("dose_val_rx"),
            text=_text_unless_number("dose_val_rx"),
            unit=_s("dose_unit_rx"),
            description=pl.when(_valid_ndc).then(_s("drug")),
        ),
    ),
)

_EMAR = TableSpec(
    required=("subject_id", "charttime", "medication"),
    optional=("event_txt",),
    times={"charttime": True},
    checks=(_required_text("medication", "the administered medication's name"),),
    emits=(Emit(_code("MIMIC_EMAR", _s("medication")), time=_t("charttime"), text=_s("event_txt")),),
)

_PRESSURE = r"^(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$"
_is_pressure = _s("result_value").str.contains(_PRESSURE).fill_null(False)


def _pressure(part: str, group: int) -> Emit:
    return Emit(
        _code("MIMIC_OMR", _s("result_name"), part),
        time=_t("chartdate"),
        numeric=_s("result_value").str.extract(_PRESSURE, group).cast(pl.Float64, strict=False),
        unit=pl.lit("mmHg"),
        when=_is_pressure,
    )


_OMR = TableSpec(
    required=("subject_id", "chartdate", "result_name", "result_value"),
    times={"chartdate": True},
    checks=(_required_text("result_name", "a measurement name"),),
    emits=(
        Emit(
            _code("MIMIC_OMR", _s("result_name")),
            time=_t("chartdate"),
            numeric=_num("result_value"),
            text=_text_unless_number("result_value"),
            when=~_is_pressure,
        ),
        _pressure("SYSTOLIC", 1),
        _pressure("DIASTOLIC", 2),
    ),
)

_MICROBIOLOGY = TableSpec(
    required=("subject_id", "chartdate", "spec_type_desc"),
    optional=("charttime", "test_name", "org_name", "ab_name", "interpretation", "dilution_value"),
    times={"chartdate": True, "charttime": False},
    checks=(
        Check(
            _s("test_name").is_null() & _s("spec_type_desc").is_null(),
            pl.lit("test_name and spec_type_desc are both empty; expected a test or specimen name"),
        ),
        _number("dilution_value"),
    ),
    emits=(
        Emit(
            _code("MIMIC_MICRO", pl.coalesce(_s("test_name"), _s("spec_type_desc"))),
            time=pl.coalesce(_t("charttime"), _t("chartdate")),
            text=_s("org_name"),
        ),
        Emit(
            _code("MIMIC_MICRO_AB", _s("ab_name")),
            time=pl.coalesce(_t("charttime"), _t("chartdate")),
            numeric=_num("dilution_value"),
            text=_s("interpretation"),
        ),
    ),
)

_ICUSTAYS = TableSpec(
    required=("subject_id", "intime"),
    optional=("outtime", "first_careunit", "last_careunit"),
    times={"intime": True, "outtime": False},
    emits=(
        _visit("START", _t("intime"), _s("first_careunit"), "ICU"),
        Emit(
            pl.lit(schema.visit_code("ICU", "END")),
            time=_t("outtime"),
            text=_s("last_careunit"),
            when=_t("outtime").is_not_null(),
        ),
    ),
)

TABLES: dict[str, TableSpec] = {
    "hosp/patients": _PATIENTS,
    "hosp/admissions": _ADMISSIONS,
    "hosp/transfers": _TRANSFERS,
    "hosp/diagnoses_icd": _DIAGNOSES,
    "hosp/procedures_icd": _PROCEDURES,
    "hosp/drgcodes": _DRGCODES,
    "hosp/hcpcsevents": _HCPCS,
    "hosp/services": _SERVICES,
    "hosp/labevents": _LABEVENTS,
    "hosp/prescriptions": _PRESCRIPTIONS,
    "hosp/emar": _EMAR,
    "hosp/omr": _OMR,
    "hosp/microbiologyevents": _MICROBIOLOGY,
    "icu/icustays": _ICUSTAYS,
    "icu/inputevents": _INPUTEVENTS,
    "icu/outputevents": _OUTPUTEVENTS,
    "icu/procedureevents": _PROCEDUREEVENTS,
    "icu/chartevents": _CHARTEVENTS,
    "icu/ingredientevents": _INGREDIENTEVENTS,
    "icu/datetimeevents": _DATETIMEEVENTS,
}
"""Every table this source converts, by ``module/name``."""


# --- reading -------------------------------------------------------------------------------------------
def _safe_error(exc: BaseException) -> str:
    """An exception as text without the row content Arrow appends to parse errors (it may be PHI)."""
    text = ": ".join(str(exc).split(": ")[:2]).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _TolerantGzip(io.RawIOBase):
    """A gzip file that ends quietly where its compressed data breaks, remembering why in :attr:`error`.

    Python's decompressor hands over every byte it can before a truncation, unlike Arrow's, which drops
    its whole read-ahead buffer; so everything readable in a damaged file is converted.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._gz = gzip.open(path, "rb")  # noqa: SIM115 (closed in close())
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.error is not None:
            return 0
        try:
            data = self._gz.read1(len(buffer))
        except (EOFError, OSError, zlib.error) as exc:
            self.error = exc
            return 0
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._gz.close()
        super().close()


def _open_source(path: Path) -> _TolerantGzip | io.BufferedReader:
    return _TolerantGzip(path) if path.name.endswith(".gz") else open(path, "rb")


def _read_header(path: Path) -> list[str]:
    with _open_source(path) as source:
        head = source.read(1 << 16)
        error = getattr(source, "error", None)  # _TolerantGzip keeps what stopped it
        if not head and error is not None:
            raise error
    text = head.decode("utf-8-sig", errors="replace")
    first = next(csv.reader(io.StringIO(text)), [])
    return [name.strip() for name in first]


class CsvStream:
    """A (gzip) CSV read as text columns in exact row chunks, with 1-based data row numbers.

    Malformed rows (wrong number of fields) are skipped by Arrow and collected in :attr:`invalid`. A file
    that breaks off (truncated gzip, bad CRC) ends the stream with the cause in :attr:`error`; its last row
    may be cut short, so it is held back as :attr:`cut_row` instead of being converted.
    """

    def __init__(self, path: Path, block_bytes: int = _BLOCK_BYTES) -> None:
        self.path = path
        self.block_bytes = block_bytes
        self.header = _read_header(path)
        self.invalid: list[tuple[int | None, int, int]] = []  # (data row, fields expected, fields found)
        self.error: BaseException | None = None
        self.cut_row: int | None = None
        self.rows_seen = 0  # data rows accounted for, valid or not

    def _on_invalid(self, row: pacsv.InvalidRow) -> str:
        number = row.number - 1 if row.number is not None else None  # Arrow counts the header as row 1
        self.invalid.append((number, row.expected_columns, row.actual_columns))
        return "skip"

    def _batches(self, source) -> Iterator[pa.RecordBatch]:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=self.block_bytes, skip_rows=1, column_names=self.header
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=self._on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in self.header}, strings_can_be_null=True
            ),
        )
        yield from reader

    def chunks(self, chunk_rows: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Yield (rows as text columns, their 1-based data row numbers), ``chunk_rows`` at a time.

        One row is always held back until the file has ended, so a row cut off by a truncation is never
        handed out.
        """
        buffered: list[pa.RecordBatch] = []
        numbers: list[np.ndarray] = []
        size, next_row = 0, 1
        with _open_source(self.path) as source:
            try:
                for batch in self._batches(source):
                    if batch.num_rows == 0:
                        continue
                    rows, next_row = self._number_rows(next_row, batch.num_rows)
                    buffered.append(batch)
                    numbers.append(rows)
                    size += batch.num_rows
                    while size > chunk_rows:
                        table = pa.Table.from_batches(buffered)
                        all_rows = np.concatenate(numbers)
                        yield table.slice(0, chunk_rows), all_rows[:chunk_rows]
                        rest = table.slice(chunk_rows)
                        buffered, numbers, size = rest.to_batches(), [all_rows[chunk_rows:]], rest.num_rows
            except _READ_ERRORS as exc:
                self.error = exc
            self.error = self.error or getattr(source, "error", None)
        last_invalid = max((r for r, _, _ in self.invalid if r is not None), default=0)
        self.rows_seen = max(next_row - 1, last_invalid)
        if not size:
            return
        table, all_rows = pa.Table.from_batches(buffered), np.concatenate(numbers)
        if self.error is not None and all_rows[-1] > last_invalid:
            self.cut_row = int(all_rows[-1])
            table, all_rows = table.slice(0, table.num_rows - 1), all_rows[:-1]
        if table.num_rows:
            yield table, all_rows

    def _number_rows(self, start: int, n: int) -> tuple[np.ndarray, int]:
        """Row numbers of the next ``n`` valid rows: the first ``n`` numbers from ``start`` not skipped."""
        skipped = sorted(r for r, _, _ in self.invalid if r is not None and r >= start)
        end = start + n
        used = []
        for r in skipped:
            if r >= end:
                break
            used.append(r)
            end += 1
        numbers = np.arange(start, end, dtype=np.int64)
        if used:
            numbers = np.setdiff1d(numbers, np.asarray(used, dtype=np.int64), assume_unique=True)
        return numbers, end

    def count_rows(self) -> int:
        """Data rows in the file (valid or not), as far as it can be read."""
        total = sum(t.num_rows for t, _ in self.chunks(1 << 30))
        return total + len(self.invalid) + (self.cut_row is not None)


# --- conversion ----------------------------------------------------------------------------------------
def _file_label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _common_checks(spec: TableSpec) -> list[Check]:
    checks = [
        Check(_s("subject_id").is_null(), pl.lit("subject_id is empty; expected an integer subject id")),
        _integer("subject_id", "subject id"),
    ]
    for col, required in spec.times.items():
        if required:
            checks.append(Check(_s(col).is_null(), pl.lit(f"{col} is empty; {_EXPECTED_TIME}")))
        checks.append(
            Check(
                _s(col).is_not_null() & _t(col).is_null(),
                _msg(f"{col} ", _quoted(col), f" is not a date-time ({_EXPECTED_TIME})"),
            )
        )
    return checks


def _typed_null(dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    return pl.lit(None, dtype=dtype)


def _or_null(expr: pl.Expr | None, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    return (expr if expr is not None else _typed_null(dtype)).cast(dtype)


def _events(good: pl.DataFrame, emits: tuple[Emit, ...]) -> pl.DataFrame:
    frames = []
    for k, e in enumerate(emits):
        keep = e.code.is_not_null() if e.when is None else (e.when.fill_null(False) & e.code.is_not_null())
        frames.append(
            good.filter(keep).select(
                pl.col("_row"),
                pl.lit(k, dtype=pl.Int32).alias("_emit"),
                pl.col("_sid").alias(schema.SUBJECT_ID),
                _or_null(e.time, pl.Datetime("us")).alias(schema.TIME),
                e.code.cast(pl.String).alias(schema.CODE),
                _or_null(e.numeric, pl.Float32).alias(schema.NUMERIC_VALUE),
                _or_null(e.text, pl.String).alias(schema.TEXT_VALUE),
                _or_null(e.unit, pl.String).alias(schema.UNIT),
                _or_null(e.description, pl.String).alias("_description"),
            )
        )
    events = pl.concat(frames).sort(["_row", "_emit"], maintain_order=True)
    # Per-admission static rows (race) repeat: keep the first of each identical static row.
    static_dup = (
        pl.col(schema.TIME).is_null() & ~pl.struct(schema.SUBJECT_ID, schema.CODE).is_first_distinct()
    )
    return events.filter(~static_dup)


def convert_chunk(task: IngestTask, table: pa.Table, rows: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Convert one chunk of a table into (events, rejected rows).

    Events carry ``_row`` and ``_description`` beside the MEDS columns; rejected rows carry ``_reason``.
    """
    spec = TABLES[task.table]
    path = Path(task.source_file)
    ctx = Context(label=_file_label(path), root=Path(str(task.option("root", path.parent.parent))))
    df = schema.frame(table)
    missing_optional = [c for c in spec.optional if c not in df.columns]
    df = df.with_columns(
        pl.Series("_row", rows, dtype=pl.Int64),
        *[_typed_null(pl.String).alias(c) for c in missing_optional],
    )
    df = df.with_columns(
        _int("subject_id").alias("_sid"), *[_parse_time(c).alias(f"_t_{c}") for c in spec.times]
    )
    if spec.prepare is not None:
        df = spec.prepare(df, ctx)
    checks = _common_checks(spec) + list(spec.checks)
    # A reason that comes out null (a value it quotes is missing) must still reject its row.
    fallback = pl.lit("fails a validity check")
    reason = pl.coalesce(
        [pl.when(c.bad.fill_null(False)).then(pl.coalesce(c.reason, fallback)) for c in checks]
    )
    df = df.with_columns(reason.alias("_reason"))
    good = df.filter(pl.col("_reason").is_null())
    events = _events(good, spec.emits)
    eventless = good.filter(~pl.col("_row").is_in(events["_row"].implode())).with_columns(
        pl.lit("produced no event: every coded field is empty").alias("_reason")
    )
    rejected = pl.concat([df.filter(pl.col("_reason").is_not_null()), eventless]).select("_row", "_reason")
    prefix = _msg(f"{ctx.label} row ", pl.col("_row"), ": ")
    rejected = rejected.select("_row", pl.concat_str([prefix, pl.col("_reason")]).alias("_reason"))
    return events, rejected


def _quarantine(task: IngestTask, rejected: list[tuple[str, str]], records: list[int] | None = None) -> pa.Table:
    """Quarantine rows from (locator, reason) pairs, each one record unless ``records`` says otherwise."""
    return schema.quarantine_table(task.source_file, task.table, [locator for locator, _ in rejected],
                                   [reason for _, reason in rejected], records)  # fmt: skip


def _output(
    task: IngestTask, events: pl.DataFrame | None, rejected: list[tuple[int | None, str]], read: int
) -> ShardOutput:
    """Pack a chunk: each rejected (row, reason) is one quarantined record, all other records converted."""
    rejected = sorted(rejected, key=lambda r: (r[0] is None, r[0] or 0))
    quarantine = _quarantine(task, [(f"row {r if r is not None else '?'}", reason) for r, reason in rejected])
    counts = {task.table: RecordCounts(read=read, converted=read - len(rejected), quarantined=len(rejected))}
    if events is None or events.is_empty():
        return ShardOutput(schema.empty_events(), quarantine, counts)
    described = events.filter(pl.col("_description").is_not_null()).unique(
        schema.CODE, keep="first", maintain_order=True
    )
    descriptions = dict(zip(described[schema.CODE].to_list(), described["_description"].to_list()))
    table = events.select(schema.EVENT_COLUMNS).to_arrow().cast(schema.EVENT_SCHEMA)
    return ShardOutput(table, quarantine, counts, descriptions)


def _whole_file_rejected(task: IngestTask, locator: str, reason: str, records: int) -> ShardOutput:
    """One quarantine row standing for ``records`` records (a file that cannot be converted row by row)."""
    counts = {task.table: RecordCounts(read=records, converted=0, quarantined=records)}
    return ShardOutput(schema.empty_events(), _quarantine(task, [(locator, reason)], [records]), counts)


def _malformed(label: str, invalid: list[tuple[int | None, int, int]]) -> list[tuple[int | None, str]]:
    return [
        (
            row,
            (
                f"{label} row {row if row is not None else '?'}: malformed CSV row with {found} fields,"
                f" expected {expected} (one per header column)"
            ),
        )
        for row, expected, found in invalid
    ]


def _header_problem(header: list[str], spec: TableSpec) -> str | None:
    missing = [c for c in spec.required if c not in header]
    if missing:
        return (
            f"missing required column(s) {', '.join(missing)}; found {', '.join(header) or '(none)'};"
            f" expected {', '.join(spec.required)}"
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        return f"column(s) {', '.join(repeated)} appear more than once in the header"
    return None


def convert(task: IngestTask) -> Iterator[ShardOutput]:
    """Convert one MIMIC table file, one :class:`ShardOutput` per ``chunk_rows`` rows; bad data never raises.

    Every output carries its own counts, so what was converted before a file breaks off stays converted
    and ``read == converted + quarantined`` holds at every step.
    """
    spec = TABLES[task.table]
    path = Path(task.source_file)
    label = _file_label(path)
    chunk_rows = int(task.option("chunk_rows", DEFAULT_CHUNK_ROWS))
    try:
        stream = CsvStream(path, int(task.option("block_bytes", _BLOCK_BYTES)))
    except _READ_ERRORS as exc:
        yield _whole_file_rejected(task, "file", f"{label}: cannot read the header: {_safe_error(exc)}", 1)
        return
    problem = _header_problem(stream.header, spec)
    if problem is not None:
        n_rows = stream.count_rows() if stream.header else 0
        yield _whole_file_rejected(task, "header", f"{label}: {problem}; all {n_rows} rows quarantined", n_rows)
        return
    reported = 0
    produced = False
    for table, rows in stream.chunks(chunk_rows):
        events, rejected = convert_chunk(task, table, rows)
        malformed = stream.invalid[reported:]
        reported = len(stream.invalid)
        bad = list(zip(rejected["_row"].to_list(), rejected["_reason"].to_list())) + _malformed(
            label, malformed
        )
        yield _output(task, events, bad, read=table.num_rows + len(malformed))
        produced = True
    leftover = stream.invalid[reported:]
    if leftover or not produced:  # malformed rows after the last good one, or a header-only file
        yield _output(task, None, _malformed(label, leftover), read=len(leftover))
    if stream.error is not None:
        yield _broken_off(task, label, stream)


def _broken_off(task: IngestTask, label: str, stream: CsvStream) -> ShardOutput:
    """The quarantine for a file that ends early: its possibly cut-off last row and the unread rest."""
    cause = _safe_error(stream.error) if stream.error is not None else "unknown error"
    rejected: list[tuple[str, str]] = []
    last = stream.rows_seen
    if stream.cut_row is not None:
        rejected.append(
            (
                f"row {stream.cut_row}",
                (
                    f"{label} row {stream.cut_row}: last row before the file broke"
                    f" off ({cause}); it may be cut short, so it is not converted"
                ),
            )
        )
        last = stream.cut_row - 1
    rejected.append(
        (
            f"after row {stream.rows_seen}",
            (
                f"{label}: the file breaks off after data row"
                f" {stream.rows_seen} ({cause}); rows 1-{last} were converted or quarantined row by row,"
                " whatever followed could not be read"
            ),
        )
    )
    counts = {task.table: RecordCounts(read=len(rejected), converted=0, quarantined=len(rejected))}
    return ShardOutput(schema.empty_events(), _quarantine(task, rejected), counts)


# --- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TableFiles:
    """The files of a MIMIC-IV folder this source converts, by table, and the ones it leaves out."""

    tables: dict[str, Path]
    ignored: list[Path]


NOT_CONVERTED = {
    "hosp/d_icd_diagnoses": "dictionary: read for the descriptions of ICD diagnosis codes, no events",
    "hosp/d_icd_procedures": "dictionary: read for the descriptions of ICD procedure codes, no events",
    "hosp/d_labitems": "dictionary: read for the labels of lab item ids, no events",
    "icu/d_items": "dictionary: read for the labels of ICU item ids, no events",
    "hosp/d_hcpcs": "dictionary: hcpcsevents rows carry their own description, no events",
    "hosp/pharmacy": "pharmacy dispensing of the orders in prescriptions (converted); administrations are in emar "
                     "(converted): no further clinical event",
    "hosp/poe": "provider order entry: order bookkeeping (type, status, transactions); the orders' clinical content "
                "is in prescriptions, labevents and the procedure tables (converted)",
    "hosp/poe_detail": "field/value detail of poe orders (see hosp/poe), no clinical code",
    "hosp/emar_detail": "per-dose detail (product, dose due and given) of the emar administrations (converted)",
    "hosp/provider": "provider ids only, no patient events",
    "icu/caregiver": "caregiver ids only, no patient events",
}
"""Why each MIMIC-IV file outside :data:`TABLES` is not turned into events."""


def _why_not(table: str, path: Path) -> str:
    if not path.is_file() or not any(path.name.endswith(s) for s in SUFFIXES):
        return "not a CSV(.gz) table file"
    return NOT_CONVERTED.get(table, "not a MIMIC-IV table this converter knows")


def find_tables(root: str | Path) -> TableFiles:
    root = Path(root)
    tables: dict[str, Path] = {}
    ignored: list[Path] = []
    for module in MODULES:
        folder = root / module
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
            if suffix is None or not path.is_file():
                ignored.append(path)
                continue
            table = _table_name(path, root)
            if table in TABLES and table not in tables:
                tables[table] = path
            else:
                ignored.append(path)
    return TableFiles(tables, ignored)


def _table_name(path: Path, root: Path) -> str:
    """``hosp/labevents`` for ``ROOT/hosp/labevents.csv.gz``."""
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), "")
    return f"{path.parent.relative_to(root)}/{path.name[: len(path.name) - len(suffix)]}"


def plan(path: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SourcePlan:
    """One task per table file (largest first, so parallel workers finish together); each task streams its
    file in ``chunk_rows`` slices. The files left out are logged and listed by :func:`find_tables`."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    root = Path(path).resolve()
    files = find_tables(root)
    if not files.tables:
        raise ValueError(
            f"{root} holds no MIMIC-IV table: expected hosp/ and icu/ folders of CSV files such as "
            f"hosp/patients.csv.gz (tables known: {', '.join(sorted(TABLES))})"
        )
    if files.ignored:
        log.info(
            "mimic: not converting %d files: %s",
            len(files.ignored),
            ", ".join(str(p.relative_to(root)) for p in files.ignored),
        )
    options = (("root", str(root)), ("chunk_rows", chunk_rows))
    by_size = sorted(files.tables.items(), key=lambda kv: (-kv[1].stat().st_size, kv[0]))
    tasks = [IngestTask(source_file=str(p), table=t, options=options) for t, p in by_size]
    return SourcePlan(
        source=SOURCE,
        source_path=str(root),
        tasks=tasks,
        convert=convert,
        input_bytes=sum(estimated_bytes(p) for p in files.tables.values()),
        not_converted={str(p.relative_to(root)): _why_not(_table_name(p, root), p) for p in files.ignored},
    )
