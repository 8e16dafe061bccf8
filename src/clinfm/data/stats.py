"""Summary statistics of a MEDS dataset: what ``clinfm stats`` prints (and ``--json`` returns)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from clinfm import schema


def dataset_stats(path: str | Path, top: int = 15) -> dict:
    """Subjects, events, codes by vocabulary, time span, top codes, splits and the quarantine count.

    Reads only the columns it needs, lazily, so it works on datasets larger than memory.
    """
    path = Path(path)
    shards = sorted((path / schema.DATA_DIR).glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{path / schema.DATA_DIR} holds no *.parquet shard: not a MEDS dataset")
    events = pl.scan_parquet(shards).select(schema.SUBJECT_ID, schema.TIME, schema.CODE)
    vocab = pl.col(schema.CODE).str.split(schema.SEP).list.first().alias("vocabulary")
    totals = events.select(
        pl.col(schema.SUBJECT_ID).n_unique().alias("subjects"),
        pl.len().alias("events"),
        pl.col(schema.CODE).n_unique().alias("codes"),
        pl.col(schema.TIME).min().alias("first"),
        pl.col(schema.TIME).max().alias("last"),
        pl.col(schema.TIME).is_null().sum().alias("static_events"),
    ).collect().row(0, named=True)
    by_vocab = (
        events.group_by(vocab)
        .agg(pl.len().alias("events"), pl.col(schema.CODE).n_unique().alias("codes"))
        .sort(["events", "vocabulary"], descending=[True, False])
        .collect()
    )
    top_codes = (
        events.group_by(schema.CODE).len().sort(["len", schema.CODE], descending=[True, False]).head(top).collect()
    )
    descriptions = _descriptions(path)
    per_subject = events.group_by(schema.SUBJECT_ID).len().select(pl.col("len").median()).collect().item()
    result = {
        "path": str(path),
        "subjects": int(totals["subjects"]),
        "events": int(totals["events"]),
        "codes": int(totals["codes"]),
        "static_events": int(totals["static_events"]),
        "events_per_subject_median": float(per_subject or 0),
        "time_span": {
            "first": totals["first"].isoformat() if totals["first"] else None,
            "last": totals["last"].isoformat() if totals["last"] else None,
        },
        "shards": len(shards),
        "vocabularies": [
            {"vocabulary": r["vocabulary"], "events": int(r["events"]), "codes": int(r["codes"])}
            for r in by_vocab.iter_rows(named=True)
        ],
        "top_codes": [
            {"code": r[schema.CODE], "events": int(r["len"]), "description": descriptions.get(r[schema.CODE])}
            for r in top_codes.iter_rows(named=True)
        ],
        "splits": _splits(path),
        "quarantined": _quarantined(path),
    }
    meta = path / schema.DATASET_FILE
    if meta.exists():
        result["source"] = json.loads(meta.read_text()).get("clinfm", {}).get("source")
    return result


def _descriptions(path: Path) -> dict[str, str]:
    codes = path / schema.CODES_FILE
    if not codes.exists():
        return {}
    df = pl.read_parquet(codes, columns=["code", "description"]).drop_nulls()
    return dict(zip(df["code"].to_list(), df["description"].to_list()))


def _splits(path: Path) -> dict[str, int]:
    splits = path / schema.SPLITS_FILE
    if not splits.exists():
        return {}
    counts = pl.read_parquet(splits).group_by("split").len().sort("split")
    return {r["split"]: int(r["len"]) for r in counts.iter_rows(named=True)}


def _quarantined(path: Path) -> int:
    from clinfm.data.dataset import quarantined_records

    return quarantined_records(path)
