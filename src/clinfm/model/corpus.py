"""Tokenize a dataset into the fixed-length windows pretraining reads: one task per (split, shard).

Tasks run on this process, a pool of processes or Ray (:class:`clinfm.engine.Engine`). Windows are
packed inside a shard and shards are concatenated in order, so every engine writes the same bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clinfm import schema
from clinfm.engine import LOCAL, Engine, ProgressFn
from clinfm.model.config import FMConfig
from clinfm.model.tokenizer import ClinicalTokenizer

SPLITS = (schema.TRAIN, schema.TUNING)


@dataclass(slots=True)
class ShardWindows:
    """What one task wrote: its packed rows and, per subject, the tokenizer's counts."""

    path: str
    rows: int
    counts: list[tuple[int, int, int, int]]


def split_ids(db, split: str) -> list[int]:
    """Sorted ids of the subjects in ``split`` (train / tuning / held_out)."""
    return sorted(s for s, sp in db.splits().items() if sp == split and s in db)


def pack_windows(windows: list[list[int]], length: int, pad_id: int) -> np.ndarray:
    """Pack windows into rows of ``length`` tokens (int32, PAD-filled), best-fit decreasing: short records
    share a row instead of padding it; a window is never split."""
    rows: list[list[list[int]]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for w in sorted(windows, key=len, reverse=True):
        i = bisect.bisect_left(free, (len(w), -1))
        if i == len(free):
            rows.append([w])
            room, row = length - len(w), len(rows) - 1
        else:
            room, row = free.pop(i)
            rows[row].append(w)
            room -= len(w)
        if room >= 4:  # room for at least a prefix and one token
            bisect.insort(free, (room, row))
    out = np.full((len(rows), length), pad_id, dtype=np.int32)
    for i, parts in enumerate(rows):
        flat = [t for w in parts for t in w]
        out[i, : len(flat)] = flat
    return out


def build_windows(db, tokenizer: ClinicalTokenizer, subject_ids: list[int], length: int) -> np.ndarray:
    """Tokenize subjects and pack their windows into rows of ``length`` tokens. Records longer than a row
    are split into windows, each with its own prefix."""
    windows = []
    for sid in subject_ids:
        windows.extend(tokenizer.windows(tokenizer.encode(db.table(sid)), length))
    return pack_windows(windows, length, tokenizer.pad_id)


def tokenize_shard(
    dataset_dir: str, tokenizer_file: str, subject_ids: list[int], length: int, out_file: str
) -> ShardWindows:
    """Encode ``subject_ids`` (one shard's share of a split), pack their windows and save them to ``out_file``."""
    from clinfm.data.store import SubjectDatabase

    db, tok = SubjectDatabase(dataset_dir), ClinicalTokenizer.load(tokenizer_file)
    windows, counts = [], []
    for sid in subject_ids:
        table = db.table(sid)
        windows.extend(tok.windows(tok.encode(table), length))
        counts.append(tok.count(table))
    rows = pack_windows(windows, length, tok.pad_id)
    np.save(out_file, rows)
    return ShardWindows(out_file, len(rows), counts)


def _concatenate(parts: list[ShardWindows], out_file: Path, length: int) -> None:
    """Stream the shards' rows into one memory-mappable .npy (every rank maps it and reads its own rows)."""
    total = sum(p.rows for p in parts)
    out = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.int32, shape=(total, length))
    at = 0
    for p in parts:
        rows = np.load(p.path, mmap_mode="r")
        out[at : at + len(rows)] = rows
        at += len(rows)
    out.flush()
    del out


def _fingerprint(dataset_dir: Path, cfg: FMConfig, tokenizer_from: Path | None = None) -> dict:
    """What the windows depend on: the shards, the split assignment, the tokenizer settings and the row length."""
    shards = sorted((dataset_dir / schema.DATA_DIR).glob("*.parquet"))
    splits = dataset_dir / schema.SPLITS_FILE
    return {
        "shards": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in shards],
        "splits_sha256": hashlib.sha256(splits.read_bytes()).hexdigest() if splits.exists() else None,
        "tokenizer": cfg.tokenizer.model_dump(),
        **({"tokenizer_from": str(Path(tokenizer_from).resolve())} if tokenizer_from else {}),
        "row_length": cfg.model.block_size + 1,
    }


def is_prepared(dataset_dir: str | Path, cfg: FMConfig, run_dir: str | Path, tokenizer_from: Path | None = None) -> bool:
    """True when ``run_dir`` already holds the tokenizer and windows of this dataset under this config."""
    marker = Path(run_dir) / "windows" / "prepared.json"
    return marker.exists() and json.loads(marker.read_text()) == _fingerprint(Path(dataset_dir), cfg, tokenizer_from)


def prepare_corpus(
    dataset_dir: str | Path,
    cfg: FMConfig,
    run_dir: str | Path,
    *,
    engine: Engine = LOCAL,
    progress: ProgressFn | None = None,
    tokenizer_from: str | Path | None = None,
) -> dict:
    """Fit the tokenizer on the train split and write ``RUN/windows/{train,tuning}.npy``; returns the
    tokenizer statistics per split (also in ``RUN/tokenizer_stats.json``). With ``tokenizer_from`` (a run
    folder) that run's tokenizer is reused instead of fitting one: continued pretraining keeps the vocabulary
    its embeddings were trained on (codes new to it roll up to a parent or UNK)."""
    from clinfm.data.store import SubjectDatabase

    dataset_dir, run_dir = Path(dataset_dir), Path(run_dir)
    db = SubjectDatabase(dataset_dir)  # builds the shared subject cache once, before any task opens it
    splits = db.splits()
    by_split = {s: [[sid for sid in shard if splits.get(sid) == s] for _, shard in db.shards()] for s in SPLITS}
    if not any(by_split[schema.TRAIN]):
        raise ValueError(f"{dataset_dir} has no subjects in the train split ({schema.SPLITS_FILE})")
    train_ids = sorted(sid for ids in by_split[schema.TRAIN] for sid in ids)
    tc = cfg.tokenizer
    if tokenizer_from:
        tok = ClinicalTokenizer.load(Path(tokenizer_from) / "tokenizer.json")
    else:
        tok = ClinicalTokenizer(tc.min_count, tc.n_value_bins, tc.age_band_years, tc.fused_values).fit(db, train_ids)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok.save(run_dir / "tokenizer.json")

    windows = run_dir / "windows"
    parts_dir = windows / ".parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    length = cfg.model.block_size + 1
    jobs = [(s, i) for s in SPLITS for i, ids in enumerate(by_split[s]) if ids]
    args = [(str(dataset_dir), str(run_dir / "tokenizer.json"), by_split[s][i], length, str(parts_dir / f"{s}-{i:05d}.npy"))
            for s, i in jobs]  # fmt: skip
    with engine.session():
        results = engine.map(tokenize_shard, args, progress)

    stats: dict[str, dict] = {}
    for s in SPLITS:
        parts = [r for (split, _), r in zip(jobs, results) if split == s]
        _concatenate(parts, windows / f"{s}.npy", length)
        if parts:
            stats[s] = asdict(tok.summarize([c for p in parts for c in p.counts]))
    shutil.rmtree(parts_dir)
    (run_dir / "tokenizer_stats.json").write_text(json.dumps(stats, indent=2))
    fingerprint = _fingerprint(dataset_dir, cfg, Path(tokenizer_from) if tokenizer_from else None)
    (windows / "prepared.json").write_text(json.dumps(fingerprint, indent=2))
    return stats
