"""The contract every ingest source follows, and the bookkeeping that proves nothing was lost.

A source plans a list of :class:`IngestTask` (one file or row range each) and converts one task at a time
into :class:`ShardOutput` batches; :func:`clinfm.data.dataset.build_dataset` runs the tasks on an
:class:`clinfm.engine.Engine` (this process, local processes or Ray), merges them into a MEDS dataset and
checks the reconciliation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from clinfm import schema


@dataclass(frozen=True, slots=True)
class IngestTask:
    """One unit of work, small enough for one worker and picklable for processes or Ray.

    ``source_file`` is shown to the user and stored in the quarantine (a path, never PHI). ``start`` and
    ``stop`` are a row or byte range when a large file is split; ``options`` carries source settings.
    """

    source_file: str
    table: str
    start: int = 0
    stop: int | None = None
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        """A source-specific setting of this task (options are plain values: paths, sizes, flags)."""
        return dict(self.options).get(name, default)


@dataclass(slots=True)
class RecordCounts:
    """Reconciliation for one table or resource type: ``read == converted + quarantined``."""

    read: int = 0
    converted: int = 0
    quarantined: int = 0

    def add(self, other: RecordCounts) -> None:
        self.read += other.read
        self.converted += other.converted
        self.quarantined += other.quarantined

    @property
    def balanced(self) -> bool:
        return self.read == self.converted + self.quarantined

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "converted": self.converted, "quarantined": self.quarantined}


@dataclass(slots=True)
class ShardOutput:
    """What converting (part of) one task produced: FHIR fills it record by record through :class:`ShardBuilder`;
    the table sources (OMOP, MIMIC, MEDS) build it from whole Arrow batches."""

    events: pa.Table
    quarantine: pa.Table
    counts: dict[str, RecordCounts]
    code_descriptions: dict[str, str] = field(default_factory=dict)
    event_tables: list[str] | None = None
    """The source table of each event (same length as ``events``); ``None`` when a batch holds one table.
    The builder needs it to move an event back to its table's quarantine count (birth-after-death)."""


class ShardBuilder:
    """Accumulates events and quarantine rows column-wise, keeping the per-table counts honest.

    Every source record is counted once: :meth:`converted` when it produced events, :meth:`reject` (with where
    and why) when it did not; either counts it as read, so read = converted + quarantined by construction.
    """

    def __init__(self, source_file: str) -> None:
        self.source_file = source_file
        self._start_columns()
        self._quarantine: dict[str, list] = {name: [] for name in schema.QUARANTINE_SCHEMA.names}
        self.counts: dict[str, RecordCounts] = {}
        self.code_descriptions: dict[str, str] = {}

    def _start_columns(self) -> None:
        # One list per column, bound to attributes: add_event runs once per event (the ingest's hot path).
        self._sid: list[int] = []
        self._time: list[object] = []
        self._code: list[str] = []
        self._num: list[float | None] = []
        self._text: list[str | None] = []
        self._unit: list[str | None] = []
        self._tables: list[str] = []

    def __len__(self) -> int:
        return len(self._sid)

    def add_event(
        self,
        subject_id: int,
        time: object,
        code: str,
        numeric_value: float | None = None,
        text_value: str | None = None,
        unit: str | None = None,
        table: str = "",
    ) -> None:
        """Add one event; ``table`` names the source table or resource type it came from."""
        self._tables.append(table)
        self._sid.append(subject_id)
        self._time.append(time)
        self._code.append(code)
        self._num.append(numeric_value)
        self._text.append(text_value)
        self._unit.append(unit)

    def describe(self, code: str, description: str | None) -> None:
        if description and code not in self.code_descriptions:
            self.code_descriptions[code] = description

    def converted(self, table: str, n: int = 1) -> None:
        counts = self.counts.setdefault(table, RecordCounts())
        counts.read += n
        counts.converted += n

    def reject(self, table: str, locator: str, reason: str, n: int = 1) -> None:
        """Quarantine ``n`` records of ``table`` at ``locator`` (a line, row id or byte range)."""
        counts = self.counts.setdefault(table, RecordCounts())
        counts.read += n
        counts.quarantined += n
        q = self._quarantine
        q["source_file"].append(self.source_file)
        q["table"].append(table)
        q["locator"].append(locator)
        q["reason"].append(reason)
        q["records"].append(n)

    def flush(self) -> ShardOutput:
        """Hand over what was built so far and start empty (keeps memory bounded by the batch)."""
        columns: dict[str, list[Any]] = {
            schema.SUBJECT_ID: self._sid, schema.TIME: self._time, schema.CODE: self._code,
            schema.NUMERIC_VALUE: self._num, schema.TEXT_VALUE: self._text, schema.UNIT: self._unit,
        }  # fmt: skip
        out = ShardOutput(
            events=schema.events_table(columns),
            quarantine=pa.Table.from_pydict(self._quarantine, schema=schema.QUARANTINE_SCHEMA),
            counts=self.counts,
            code_descriptions=self.code_descriptions,
            event_tables=self._tables if any(self._tables) else None,
        )
        self._start_columns()
        self._quarantine = {name: [] for name in schema.QUARANTINE_SCHEMA.names}
        self.counts, self.code_descriptions = {}, {}
        return out


ConvertFn = Callable[[IngestTask], Iterator[ShardOutput]]
"""A source's converter: a top-level (picklable) function from one task to its output batches."""


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What a source hands to the dataset builder."""

    source: str  # "omop", "fhir", "mimic", "meds"
    source_path: str
    tasks: list[IngestTask]
    convert: ConvertFn
    input_bytes: int = 0
    code_descriptions: dict[str, str] = field(default_factory=dict)
    subject_splits: dict[int, str] = field(default_factory=dict)
    """Splits the source already defines (MEDS input); other subjects get a seeded hash split."""
    not_converted: dict[str, str] = field(default_factory=dict)
    """Tables, files or resource types the source found and does not convert to events, each with why (shown
    after the reconciliation and kept in ``metadata/dataset.json``)."""
    subject_table: str | None = None
    """The table whose records define subjects (FHIR: ``Patient``): a subject with events but no record there was
    only referred to, never exported, and its events are quarantined. None: no such check."""


GZIP_EXPANSION = 6
"""Rough uncompressed/compressed ratio of clinical CSV/NDJSON, to size shards from ``.gz`` inputs."""


def estimated_bytes(path) -> int:
    """Input size for shard planning: gzip files count as their estimated uncompressed size."""
    size = path.stat().st_size
    return size * GZIP_EXPANSION if str(path).endswith(".gz") else size
