"""Structured de-identification of a MEDS dataset: keyed pseudonyms, per-subject date shifts, Safe Harbor.

Policies:

* ``shift`` (default, for model building): every time of a subject moves by the same secret-derived number
  of days (±1..365, never 0), so intervals and ages stay true; birth dates of subjects over 89 at their last
  event collapse to one "90 or older" birth year (January 1 of the year they turned 90 by that event).
* ``safe-harbor`` (HIPAA 45 CFR 164.514(b)(2)): all date elements but the year removed (times truncated to
  January 1 of their year, so intervals within a year are lost), ages over 89 aggregated as above, ZIP codes
  cut to 3 digits and to ``000`` for the restricted 3-digit areas.

In both, subject ids become HMAC-SHA256 pseudonyms (int63) that are stable for one secret and irreversible
without it, ZIP codes (``ZIP//`` codes) are reduced to ZIP3, and every ``text_value`` goes through the note
de-identifier with the subject's own date shift, so notes and structured events stay consistent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.dataset import make_temp, replace_atomically, validate_dataset
from clinfm.engine import LOCAL, Engine, ProgressFn

log = logging.getLogger(__name__)

Policy = Literal["shift", "safe-harbor"]
POLICIES: tuple[str, ...] = ("shift", "safe-harbor")
MIN_SECRET_BYTES = 32
MAX_SHIFT_DAYS = 365
AGE_CAP_YEARS = 90

RESTRICTED_ZIP3 = frozenset(
    "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893".split()
)
"""3-digit ZIP areas with 20,000 or fewer people (2000 Census), which Safe Harbor requires to become 000.
Source: HHS OCR, "Guidance Regarding Methods for De-identification of Protected Health Information in
Accordance with the HIPAA Privacy Rule" (2012), section 2.4.1. Update this list when HHS updates it."""

ZIP_PREFIX = "ZIP//"


class SecretError(ValueError):
    """The de-identification secret is missing or unusable."""


def read_secret(path: str | Path | None) -> bytes:
    """Read the secret key; refuse to run without a usable one (never fall back to a default)."""
    if path is None:
        raise SecretError("de-identification needs --secret-file: a file of at least 32 random bytes "
                          "(create one with `clinfm deid-secret FILE`)")  # fmt: skip
    p = Path(path)
    if not p.is_file():
        raise SecretError(f"secret file {str(p)!r} does not exist (create one with `clinfm deid-secret {p}`)")
    secret = p.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"secret file {str(p)!r} holds {len(secret)} bytes; expected at least {MIN_SECRET_BYTES}")
    if p.stat().st_mode & 0o077:
        log.warning("secret file %s is readable by group or others (mode %o); chmod 600 it", p, p.stat().st_mode & 0o777)
    return secret


def create_secret(path: str | Path) -> Path:
    """Write a new random secret with file mode 0600 (refuses to overwrite an existing one)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return p


def secret_fingerprint(secret: bytes) -> str:
    """A short public identifier of the key (which key was used), from which the key cannot be recovered."""
    return hmac.new(secret, b"clinfm-fingerprint", hashlib.sha256).hexdigest()[:16]


def pseudonym(subject_id: int, secret: bytes) -> int:
    """Keyed pseudonym of a subject id: HMAC-SHA256, first 8 bytes, as a non-negative int64."""
    digest = hmac.new(secret, f"subject:{subject_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def date_shift_days(subject_id: int, secret: bytes) -> int:
    """The subject's date shift in days, in [-365, -1] or [1, 365]: never 0, so no date stays real."""
    digest = hmac.new(secret, f"shift:{subject_id}".encode(), hashlib.sha256).digest()
    v = int.from_bytes(digest[:8], "big") % (2 * MAX_SHIFT_DAYS)
    return v - MAX_SHIFT_DAYS if v < MAX_SHIFT_DAYS else v - MAX_SHIFT_DAYS + 1


def zip3(code_value: str) -> str:
    """``02139`` -> ``021``; restricted areas -> ``000``; anything else unrecognisable -> ``000``."""
    digits = "".join(ch for ch in code_value if ch.isdigit())
    if len(digits) < 3:
        return "000"
    return "000" if digits[:3] in RESTRICTED_ZIP3 else digits[:3]


# --- notes -------------------------------------------------------------------------------------------------
NoteScrubber = Callable[[list[str], list[str], list[int]], tuple[list[str], Counter]]
"""(texts, subject keys, date shifts) -> (de-identified texts, spans found per label)."""


def default_note_scrubber(policy: Policy) -> NoteScrubber:
    """Surrogates with the subject's date shift under ``shift``; redaction under ``safe-harbor``."""
    from clinfm.deid.text import NoteDeidentifier

    engine = NoteDeidentifier()
    mode = "surrogate" if policy == "shift" else "redact"

    def scrub(texts: list[str], keys: list[str], shifts: list[int]) -> tuple[list[str], Counter]:
        labels: Counter = Counter()
        detected = engine.detect_many(texts)
        out = []
        for text, key, shift, spans in zip(texts, keys, shifts, detected):
            if not spans:
                out.append(text)
                continue
            new_text, spans = engine.deidentify(text, mode=mode, subject_key=key, date_shift_days=shift)
            labels.update(s.label for s in spans)
            out.append(new_text)
        return out, labels

    return scrub


# --- the dataset -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class DeidCounts:
    """What was changed, per identifier type (counts only: the report never holds PHI)."""

    subjects_pseudonymized: int = 0
    events_dates_shifted: int = 0
    events_dates_truncated_to_year: int = 0
    events_dropped_date_out_of_range: int = 0
    births_collapsed_over_89: int = 0
    zip_codes_truncated: int = 0
    zip_codes_zeroed_restricted: int = 0
    text_values_scanned: int = 0
    text_values_changed: int = 0
    note_spans_by_label: Counter = field(default_factory=Counter)

    def add(self, other: DeidCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def deidentify_shard(
    df: pl.DataFrame, secret: bytes, policy: Policy, scrubber: NoteScrubber | None
) -> tuple[pl.DataFrame, DeidCounts]:
    """De-identify one shard's events (all of each subject's events are in the shard)."""
    counts = DeidCounts()
    ids = df[schema.SUBJECT_ID].unique().sort().to_list()
    mapping = pl.DataFrame(
        {
            schema.SUBJECT_ID: ids,
            "_pid": [pseudonym(s, secret) for s in ids],
            "_shift": [date_shift_days(s, secret) for s in ids],
        },
        schema={schema.SUBJECT_ID: pl.Int64, "_pid": pl.Int64, "_shift": pl.Int64},
    )
    counts.subjects_pseudonymized = len(ids)
    df = df.join(mapping, on=schema.SUBJECT_ID, how="left", maintain_order="left")
    if policy == "safe-harbor":  # true years are allowed; finer date elements are removed below
        df = df.with_columns(pl.lit(0, dtype=pl.Int64).alias("_shift"))
    timed = pl.col(schema.TIME).is_not_null()
    counts.events_dates_shifted = int(df.select(timed.sum()).item())
    df = df.with_columns((pl.col(schema.TIME) + pl.duration(days=pl.col("_shift"))).alias(schema.TIME))
    df, counts.events_dropped_date_out_of_range = _drop_unrepresentable(df)
    counts.events_dates_shifted -= counts.events_dropped_date_out_of_range

    df, counts.births_collapsed_over_89 = _collapse_old_births(df)
    if policy == "safe-harbor":
        counts.events_dates_truncated_to_year = counts.events_dates_shifted
        counts.events_dates_shifted = 0
        df = df.with_columns(pl.col(schema.TIME).dt.truncate("1y").alias(schema.TIME))
    df, counts.zip_codes_truncated, counts.zip_codes_zeroed_restricted = _truncate_zips(df)
    if scrubber is not None:
        df = _scrub_text(df, scrubber, counts, policy)
    df = df.with_columns(pl.col("_pid").alias(schema.SUBJECT_ID)).drop("_pid", "_shift")
    return df.sort(list(schema.EVENT_COLUMNS), nulls_last=False, maintain_order=True), counts


def _drop_unrepresentable(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Events whose shifted time leaves years 1..9999 (a placeholder like 9999-12-31 shifted forward): no reader can
    hold them, and no real event is there. Dropped and counted (the source's values stay in the source)."""
    year = pl.col(schema.TIME).dt.year()
    bad = pl.col(schema.TIME).is_not_null() & ((year < 1) | (year > 9999))
    n = int(df.select(bad.sum()).item())
    if n:
        log.warning("dropped %d events whose shifted date falls outside years 1..9999", n)
    return (df.filter(~bad), n) if n else (df, 0)


def _collapse_old_births(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Subjects aged 90+ at their last event get birth = January 1 of (last event's year - 90)."""
    per_subject = df.group_by(schema.SUBJECT_ID).agg(
        pl.col(schema.TIME).filter(pl.col(schema.CODE) == schema.BIRTH).min().alias("_birth"),
        pl.col(schema.TIME).max().alias("_last"),
    )
    old = per_subject.filter(
        pl.col("_birth").is_not_null()
        & (pl.col("_last").dt.offset_by(f"-{AGE_CAP_YEARS}y") >= pl.col("_birth"))
    ).select(
        schema.SUBJECT_ID,
        pl.datetime(pl.col("_last").dt.year() - AGE_CAP_YEARS, 1, 1, time_unit="us").alias("_capped_birth"),
    )
    if old.is_empty():
        return df, 0
    df = df.join(old, on=schema.SUBJECT_ID, how="left", maintain_order="left").with_columns(
        pl.when((pl.col(schema.CODE) == schema.BIRTH) & pl.col("_capped_birth").is_not_null())
        .then(pl.col("_capped_birth"))
        .otherwise(pl.col(schema.TIME))
        .alias(schema.TIME)
    )
    return df.drop("_capped_birth"), old.height


def _truncate_zips(df: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    is_zip = pl.col(schema.CODE).str.starts_with(ZIP_PREFIX)
    zips = df.filter(is_zip)
    if zips.is_empty():
        return df, 0, 0
    mapped = {c: ZIP_PREFIX + zip3(c.removeprefix(ZIP_PREFIX)) for c in zips[schema.CODE].unique().to_list()}
    zeroed = sum(1 for c in zips[schema.CODE].to_list() if mapped[c] == ZIP_PREFIX + "000")
    df = df.with_columns(
        pl.when(is_zip).then(pl.col(schema.CODE).replace(mapped)).otherwise(pl.col(schema.CODE)).alias(schema.CODE),
        pl.when(is_zip).then(None).otherwise(pl.col(schema.TEXT_VALUE)).alias(schema.TEXT_VALUE),
    )
    return df, zips.height - zeroed, zeroed


def _scrub_text(df: pl.DataFrame, scrubber: NoteScrubber, counts: DeidCounts, policy: Policy) -> pl.DataFrame:
    has_text = pl.col(schema.TEXT_VALUE).is_not_null() & (pl.col(schema.TEXT_VALUE) != "")
    rows = df.with_row_index("_row").filter(has_text)
    if rows.is_empty():
        return df
    shifts = [0 if policy == "safe-harbor" else s for s in rows["_shift"].to_list()]
    keys = [str(p) for p in rows["_pid"].to_list()]
    texts = rows[schema.TEXT_VALUE].to_list()
    new_texts, labels = scrubber(texts, keys, shifts)
    counts.text_values_scanned = len(texts)
    counts.text_values_changed = sum(a != b for a, b in zip(texts, new_texts))
    counts.note_spans_by_label = labels
    replacement = pl.DataFrame({"_row": rows["_row"], "_new_text": new_texts}, schema={"_row": pl.UInt32, "_new_text": pl.String})
    return (
        df.with_row_index("_row")
        .join(replacement, on="_row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_new_text", schema.TEXT_VALUE).alias(schema.TEXT_VALUE))
        .drop("_row", "_new_text")
    )


@dataclass(slots=True)
class DeidResult:
    path: Path
    counts: DeidCounts
    report: dict


_SCRUBBERS: dict[str, NoteScrubber] = {}


def _scrubber_for(policy: Policy) -> NoteScrubber:
    """One note engine per process and policy (spaCy and Presidio take seconds to load)."""
    if policy not in _SCRUBBERS:
        _SCRUBBERS[policy] = default_note_scrubber(policy)
    return _SCRUBBERS[policy]


def deidentify_shard_file(
    shard: str, out_path: str, secret: bytes, policy: Policy, notes: bool | NoteScrubber
) -> tuple[DeidCounts, pl.DataFrame]:
    """De-identify one shard file into ``out_path``: the unit of work for every engine (local or Ray).

    ``notes`` is True for this process's default note engine, False for none, or a scrubber to use."""
    scrubber = _scrubber_for(policy) if notes is True else (notes or None)
    df = pl.read_parquet(shard)
    out, counts = deidentify_shard(df, secret, policy, scrubber)
    table = out.select(schema.EVENT_COLUMNS).to_arrow().cast(schema.EVENT_SCHEMA)
    schema.validate_events(table)
    pq.write_table(table, out_path, compression="zstd", row_group_size=100_000)
    log.info("de-identified shard %s: %d subjects, %d events", Path(shard).name, counts.subjects_pseudonymized, len(out))
    return counts, _quasi_identifiers(out)


def deidentify_dataset(
    source: str | Path,
    out_dir: str | Path,
    secret: bytes,
    policy: Policy = "shift",
    scrubber: NoteScrubber | None | Literal["default"] = "default",
    progress: ProgressFn | None = None,
    engine: Engine = LOCAL,
) -> DeidResult:
    """Read one MEDS dataset and write its de-identified twin to ``out_dir`` (atomically), with a report.

    Shards are independent (a subject lives in one shard), so ``engine`` (local processes or Ray) runs
    :func:`deidentify_shard_file` on them; the output is the same for every engine.
    The source's ``quarantine.parquet`` is not copied: it holds raw source values.
    """
    from clinfm.deid.report import build_report, write_report

    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    source, out_dir = Path(source), Path(out_dir).resolve()
    if source.resolve() == out_dir:
        raise ValueError(f"--out {str(out_dir)!r} is the source dataset; write the de-identified copy elsewhere")
    validate_dataset(source)
    shards = sorted((source / schema.DATA_DIR).glob("*.parquet"), key=lambda p: p.name)
    notes: bool | NoteScrubber = _has_text(shards) if scrubber == "default" else (scrubber or False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp(out_dir)
    try:
        (tmp / schema.DATA_DIR).mkdir()
        args = [(str(p), str(tmp / schema.DATA_DIR / p.name), secret, policy, notes) for p in shards]
        if callable(notes):  # a caller's scrubber object cannot travel to other processes
            engine = LOCAL
        with engine.session():
            results = engine.map(deidentify_shard_file, args, progress)
        total = DeidCounts()
        for counts, _ in results:
            total.add(counts)
        _write_metadata(source, tmp, secret, policy)
        qi = pl.concat([q for _, q in results])
        report = build_report(policy, total, qi, secret_fingerprint(secret), source_name=source.name)
        write_report(report, tmp)
        validate_dataset(tmp)
        replace_atomically(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DeidResult(out_dir, total, report)


def _has_text(shards: list[Path]) -> bool:
    lazy = pl.scan_parquet(shards).select(pl.col(schema.TEXT_VALUE).is_not_null().any())
    return bool(lazy.collect().item())


def _quasi_identifiers(df: pl.DataFrame) -> pl.DataFrame:
    """Per subject: birth year, sex and ZIP3 (where present), for the k-anonymity table."""
    return df.group_by(schema.SUBJECT_ID).agg(
        pl.col(schema.TIME).filter(pl.col(schema.CODE) == schema.BIRTH).min().dt.year().alias("birth_year"),
        pl.col(schema.CODE).filter(pl.col(schema.CODE).str.starts_with("GENDER//")).first().alias("sex"),
        pl.col(schema.CODE).filter(pl.col(schema.CODE).str.starts_with(ZIP_PREFIX)).first().alias("zip3"),
    )


def _write_metadata(source: Path, tmp: Path, secret: bytes, policy: Policy) -> None:
    (tmp / "metadata").mkdir()
    splits = pl.read_parquet(source / schema.SPLITS_FILE)
    ids = splits[schema.SUBJECT_ID].to_list()
    splits = splits.with_columns(pl.Series(schema.SUBJECT_ID, [pseudonym(s, secret) for s in ids], pl.Int64))
    pq.write_table(splits.sort(schema.SUBJECT_ID).to_arrow().cast(schema.SPLITS_SCHEMA), tmp / schema.SPLITS_FILE)

    kept = set(pl.scan_parquet(sorted((tmp / schema.DATA_DIR).glob("*.parquet"))).select(schema.CODE).unique().collect()[schema.CODE].to_list())
    codes = pl.read_parquet(source / schema.CODES_FILE).filter(pl.col("code").is_in(list(kept)))
    missing = sorted(kept - set(codes["code"].to_list()))
    if missing:  # e.g. ZIP3 codes made by truncation
        codes = pl.concat([codes, pl.DataFrame({"code": missing, "description": [None] * len(missing),
                                                 "parent_codes": [[] for _ in missing]}, schema=codes.schema)])  # fmt: skip
    pq.write_table(codes.sort("code").to_arrow().cast(schema.CODES_SCHEMA), tmp / schema.CODES_FILE)

    meta = json.loads((source / schema.DATASET_FILE).read_text()) if (source / schema.DATASET_FILE).exists() else {}
    meta["dataset_name"] = f"{meta.get('dataset_name', source.name)}-deid"
    clin = meta.setdefault("clinfm", {})
    clin.pop("source_path", None)
    clin["deid"] = {
        "policy": policy,
        "secret_fingerprint": secret_fingerprint(secret),
        "report": "deid_report.json",
        "intervals_preserved": policy == "shift",
    }
    (tmp / schema.DATASET_FILE).write_text(json.dumps(meta, indent=2) + "\n")
