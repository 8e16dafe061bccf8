"""The subject database: a MEDS dataset read like a read-only ``Mapping[int, Subject]``.

Shards are converted once to uncompressed Arrow IPC files that are memory-mapped, plus an index of each
subject's rows, so loading one subject is a zero-copy slice (milliseconds) whatever the dataset's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.schema import Event, Subject

CACHE_VERSION = "store-v1"


class SubjectDatabase(Mapping[int, Subject]):
    """Read-only access to a MEDS dataset by subject id.

    >>> db = SubjectDatabase("out/eunomia")      # doctest: +SKIP
    >>> db[1].events[:3]                         # static events first, then by time
    """

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        from clinfm.data.dataset import refuse_in_progress

        refuse_in_progress(self.path)
        self._shards = sorted((self.path / schema.DATA_DIR).glob("*.parquet"), key=lambda p: p.name)
        if not self._shards:
            raise FileNotFoundError(f"{self.path / schema.DATA_DIR} holds no *.parquet shard: not a MEDS dataset")
        self._cache = Path(cache_dir) if cache_dir else _default_cache_dir(self.path)
        if not _cache_is_fresh(self._cache, self._shards):
            _build_cache(self._cache, self._shards)
        self._tables = [
            ipc.open_file(pa.memory_map(str(self._cache / f"{i}.arrow"))).read_all() for i in range(len(self._shards))
        ]
        index = np.load(self._cache / "index.npz")
        self._ids, self._shard, self._offset, self._length = (
            index["subject_id"], index["shard"], index["offset"], index["length"]
        )  # fmt: skip

    # Mapping protocol ---------------------------------------------------------------------------------
    def __getitem__(self, subject_id: int) -> Subject:
        table = self.table(subject_id)
        cols = [table.column(c).to_pylist() for c in schema.EVENT_COLUMNS[1:]]
        return Subject(int(subject_id), [Event(*row) for row in zip(*cols)])

    def __iter__(self) -> Iterator[int]:
        return (int(s) for s in self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, subject_id: object) -> bool:
        return self._position(subject_id) is not None

    # Beyond the mapping -------------------------------------------------------------------------------
    def table(self, subject_id: int) -> pa.Table:
        """The subject's events as an Arrow table in :data:`schema.EVENT_SCHEMA` (zero-copy)."""
        pos = self._position(subject_id)
        if pos is None:
            raise KeyError(f"subject {subject_id!r} is not in {self.path}")
        return self._tables[self._shard[pos]].slice(int(self._offset[pos]), int(self._length[pos]))

    def shards(self) -> list[tuple[Path, list[int]]]:
        """(parquet file, subject ids) per shard, in shard order: the unit of work of jobs over a dataset."""
        return [(path, self._ids[self._shard == i].tolist()) for i, path in enumerate(self._shards)]

    def splits(self) -> dict[int, str]:
        """subject_id -> split (train / tuning / held_out)."""
        path = self.path / schema.SPLITS_FILE
        if not path.exists():
            return {}
        t = pq.read_table(path)
        return dict(zip(t.column(schema.SUBJECT_ID).to_pylist(), t.column("split").to_pylist()))

    def descriptions(self) -> dict[str, str]:
        """code -> description from ``metadata/codes.parquet``."""
        path = self.path / schema.CODES_FILE
        if not path.exists():
            return {}
        t = pq.read_table(path, columns=["code", "description"])
        return {c: d for c, d in zip(t.column(0).to_pylist(), t.column(1).to_pylist()) if d}

    def _position(self, subject_id: object) -> int | None:
        if not isinstance(subject_id, int | float | str | np.integer):
            return None
        try:
            sid = int(subject_id)
        except (TypeError, ValueError, OverflowError):
            return None
        pos = int(np.searchsorted(self._ids, sid))
        return pos if pos < len(self._ids) and self._ids[pos] == sid else None


def _default_cache_dir(dataset: Path) -> Path:
    """Inside the dataset when writable; otherwise in the user's cache, keyed by the dataset's path."""
    inside = dataset / ".clinfm-cache" / CACHE_VERSION
    if os.access(dataset, os.W_OK):
        return inside
    key = hashlib.sha256(str(dataset.resolve()).encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clinfm" / key / CACHE_VERSION


def _stamp(shards: list[Path]) -> list[list]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in shards]


def _cache_is_fresh(cache: Path, shards: list[Path]) -> bool:
    stamp_file = cache / "stamp.json"
    return stamp_file.exists() and json.loads(stamp_file.read_text()) == _stamp(shards)


def _build_cache(cache: Path, shards: list[Path]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache.parent))
    frames = []
    for i, shard in enumerate(shards):
        table = pq.read_table(shard).cast(schema.EVENT_SCHEMA)
        with ipc.new_file(str(tmp / f"{i}.arrow"), table.schema) as writer:
            writer.write_table(table)
        runs = (
            schema.frame(table.select([schema.SUBJECT_ID]))
            .with_row_index("offset")
            .group_by(schema.SUBJECT_ID, maintain_order=True)
            .agg(pl.col("offset").first(), pl.len().alias("length"))
            .with_columns(pl.lit(i).alias("shard"))
        )
        frames.append(runs)
    index = pl.concat(frames).sort(schema.SUBJECT_ID)
    np.savez(
        tmp / "index.npz",
        subject_id=index[schema.SUBJECT_ID].to_numpy(),
        shard=index["shard"].to_numpy().astype(np.int32),
        offset=index["offset"].to_numpy().astype(np.int64),
        length=index["length"].to_numpy().astype(np.int64),
    )
    (tmp / "stamp.json").write_text(json.dumps(_stamp(shards)))
    if cache.exists():
        shutil.rmtree(cache)
    tmp.rename(cache)
