"""The prediction store: every prediction a model version made (replayed or served), its input summary, the
outcome once known, the input profile of each monitoring window and the training-data reference profile.

It is its own SQLite file, ``$CLINFM_HOME/monitoring.db`` (or ``$CLINFM_MONITORING_URL``, any SQLAlchemy URL),
not the governance database: these rows are patient-level (pseudonymous subject, prediction time, outcome),
need their own retention, and the governance schema is owned by its Alembic migrations. Times are naive UTC,
as in MEDS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from clinfm.govern.db import clinfm_home, make_engine
from clinfm.monitor.assistant import AssistantCall

URL_ENV = "CLINFM_MONITORING_URL"
metadata = MetaData()

predictions_table = Table(
    "monitor_predictions", metadata,
    Column("id", String(64), primary_key=True),
    Column("model_version", String(100), index=True, nullable=False),
    Column("source", String(16), nullable=False),          # replay | serve
    Column("org", String(64)),
    Column("subject_id", BigInteger, nullable=False),      # pseudonymous
    Column("prediction_time", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Column("score", Float),
    Column("outputs", JSON, nullable=False),
    Column("n_events", Integer),
    Column("n_unknown_codes", Integer),
    Column("withheld", Boolean, nullable=False, default=False),
    Column("outcome", Boolean),
    Column("outcome_known_at", DateTime),
    Column("outcome_attached_at", DateTime),
)  # fmt: skip

input_windows_table = Table(
    "monitor_input_windows", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", String(100), index=True, nullable=False),
    Column("source", String(16), nullable=False),
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    Column("counts", JSON, nullable=False),                # see clinfm.monitor.drift.window_counts
)  # fmt: skip

references_table = Table(
    "monitor_references", metadata,
    Column("model_version", String(100), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("profile", JSON, nullable=False),               # see clinfm.monitor.drift.build_reference
)  # fmt: skip

assistant_calls_table = Table(
    "monitor_assistant_calls", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("assistant_version", String(100), index=True, nullable=False),
    Column("time", DateTime, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("statements", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("abstained", Boolean, nullable=False),
    Column("rating", Integer),
)  # fmt: skip
"""One row per audited assistant call (see clinfm.monitor.assistant.AssistantCall): counts and times, no text."""

PREDICTION_COLUMNS = {
    "id": pl.String, "model_version": pl.String, "source": pl.String, "org": pl.String, "subject_id": pl.Int64,
    "prediction_time": pl.Datetime("us"), "recorded_at": pl.Datetime("us"), "score": pl.Float64,
    "n_events": pl.Int64, "n_unknown_codes": pl.Int64, "withheld": pl.Boolean, "outcome": pl.Boolean,
    "outcome_known_at": pl.Datetime("us"), "outcome_attached_at": pl.Datetime("us"),
}  # fmt: skip
"""Columns of :meth:`PredictionStore.predictions` (``outputs`` stays in the database)."""


def default_url() -> str:
    return os.environ.get(URL_ENV) or f"sqlite:///{clinfm_home() / 'monitoring.db'}"


def utcnow_naive() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def prediction_id(model_version: str, subject_id: int, prediction_time: dt.datetime) -> str:
    """A replayed prediction's id: stable for (version, subject, time), so a re-run replaces rather than adds."""
    key = f"{model_version}|{subject_id}|{prediction_time.isoformat()}"
    return "rp_" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(slots=True)
class PredictionRecord:
    """One prediction as stored. ``outputs`` holds what the model returned (risks, for served predictions)."""

    model_version: str
    subject_id: int
    prediction_time: dt.datetime
    score: float | None
    source: str = "replay"
    id: str | None = None
    org: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    n_events: int | None = None
    n_unknown_codes: int | None = None
    withheld: bool = False
    recorded_at: dt.datetime | None = None

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["id"] = self.id or prediction_id(self.model_version, self.subject_id, self.prediction_time)
        out["recorded_at"] = self.recorded_at or utcnow_naive()
        return out


@dataclass(slots=True)
class InputWindow:
    """What the data feed held in ``(start, end]``: code counts, unknown codes, lab value histograms."""

    model_version: str
    start: dt.datetime
    end: dt.datetime
    counts: dict[str, Any]
    source: str = "replay"


class PredictionStore:
    """The monitoring tables in one database. ``url``: an SQLAlchemy URL, a path to a SQLite file, or None for
    :func:`default_url`. Tables are created on first use."""

    def __init__(self, url: str | Path | Engine | None = None) -> None:
        if isinstance(url, Engine):
            self.engine = url
        else:
            text = str(url) if url is not None else default_url()
            if "://" not in text:
                text = f"sqlite:///{Path(text).expanduser().resolve()}"
            if text.startswith("sqlite:///"):
                Path(text.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = make_engine(text)
        metadata.create_all(self.engine)

    def __repr__(self) -> str:
        return f"PredictionStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # --- predictions ---------------------------------------------------------------------------------------
    def add_predictions(self, records: Iterable[PredictionRecord]) -> int:
        """Insert predictions; one with an id already stored replaces it (a re-run replay, a re-imported log)."""
        rows = [r.row() for r in records]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(delete(predictions_table).where(predictions_table.c.id.in_([r["id"] for r in rows])))
            conn.execute(insert(predictions_table), rows)
        return len(rows)

    def attach_outcomes(
        self, outcomes: Sequence[tuple[str, bool, dt.datetime | None]], attached_at: dt.datetime | None = None
    ) -> int:
        """Attach ``(prediction id, outcome, known at)`` to stored predictions (``attached_at``: now, or the
        replay clock); returns how many rows changed."""
        if not outcomes:
            return 0
        now = attached_at or utcnow_naive()
        stmt = (
            update(predictions_table)
            .where(predictions_table.c.id == bindparam("pid"))
            .values(outcome=bindparam("y"), outcome_known_at=bindparam("known"), outcome_attached_at=now)
        )
        with self.engine.begin() as conn:
            result = conn.execute(stmt, [{"pid": i, "y": bool(y), "known": k} for i, y, k in outcomes])
        return result.rowcount

    def predictions(self, model_version: str, source: str | None = None) -> pl.DataFrame:
        """Every stored prediction of ``model_version`` (sorted by prediction time), without ``outputs``."""
        t = predictions_table
        cols = [t.c[name] for name in PREDICTION_COLUMNS]
        query = select(*cols).where(t.c.model_version == model_version)
        if source is not None:
            query = query.where(t.c.source == source)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.prediction_time, t.c.id)).all()
        return pl.DataFrame([tuple(r) for r in rows], schema=PREDICTION_COLUMNS, orient="row")

    def outputs(self, prediction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(predictions_table.c.outputs).where(predictions_table.c.id == prediction_id)
            ).scalar_one_or_none()

    def model_versions(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(predictions_table.c.model_version).distinct()).scalars())

    def clear(self, model_version: str, source: str) -> None:
        """Forget ``source``'s predictions and input windows of ``model_version`` (a replay starting over)."""
        with self.engine.begin() as conn:
            for t in (predictions_table, input_windows_table):
                conn.execute(delete(t).where(and_(t.c.model_version == model_version, t.c.source == source)))

    # --- input windows and the reference ------------------------------------------------------------------
    def add_input_window(self, window: InputWindow) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(input_windows_table),
                [{"model_version": window.model_version, "source": window.source, "window_start": window.start,
                  "window_end": window.end, "counts": window.counts}],
            )  # fmt: skip

    def input_windows(self, model_version: str) -> list[InputWindow]:
        t = input_windows_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.model_version, t.c.window_start, t.c.window_end, t.c.counts, t.c.source)
                .where(t.c.model_version == model_version)
                .order_by(t.c.window_start)
            ).all()
        return [InputWindow(*r) for r in rows]

    def set_reference(self, model_version: str, profile: dict[str, Any]) -> None:
        """The training-data profile drift is measured against (one per model version; replaced if set again)."""
        json.dumps(profile)  # refuse what the JSON column could not hold, here rather than at commit
        with self.engine.begin() as conn:
            conn.execute(delete(references_table).where(references_table.c.model_version == model_version))
            conn.execute(
                insert(references_table),
                [{"model_version": model_version, "created_at": utcnow_naive(), "profile": profile}],
            )

    def reference(self, model_version: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(references_table.c.profile).where(references_table.c.model_version == model_version)
            ).scalar_one_or_none()


def add_assistant_calls(store: PredictionStore, calls: Iterable[AssistantCall]) -> int:
    """Store assistant call records; one with an id already stored replaces it."""
    rows = [{**c.as_dict(), "time": c.time} for c in calls]
    if not rows:
        return 0
    t = assistant_calls_table
    with store.engine.begin() as conn:
        conn.execute(delete(t).where(t.c.call_id.in_([r["call_id"] for r in rows])))
        conn.execute(insert(t), rows)
    return len(rows)


def assistant_calls(store: PredictionStore, assistant_version: str | None = None) -> list[AssistantCall]:
    """The stored assistant calls (of one version, or all), oldest first."""
    t = assistant_calls_table
    query = select(*[t.c[f] for f in AssistantCall.__slots__]).order_by(t.c.time, t.c.call_id)
    if assistant_version is not None:
        query = query.where(t.c.assistant_version == assistant_version)
    with store.engine.connect() as conn:
        return [AssistantCall(**r._asdict()) for r in conn.execute(query)]


def import_serve_predictions(
    store: PredictionStore, predictions_file: str | Path, outcome_code: str | None = None
) -> int:
    """Copy ``clinfm serve``'s ``predictions.jsonl`` into the store (idempotent: ids are serve's).

    The score is the probability of ``outcome_code`` among the stored risks (the first risk when None); a
    silent model's predictions are stored there although the caller saw none, and arrive here as ``withheld``.
    """
    path = Path(predictions_file)
    if not path.exists():
        return 0
    records = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                risks = r.get("risks") or []
                chosen = next(
                    (x for x in risks if outcome_code is None or x.get("code") == outcome_code), None
                )
                records.append(
                    PredictionRecord(
                        id=str(r["prediction_id"]), model_version=str(r["model_version"]), source="serve",
                        org=r.get("org"), subject_id=int(r["subject_id"]),
                        prediction_time=_naive(dt.datetime.fromisoformat(r["prediction_time"])),
                        recorded_at=_naive(dt.datetime.fromisoformat(r["recorded_at"])),
                        score=float(chosen["probability"]) if chosen else None,
                        outputs={"risks": risks, "next_diagnoses": r.get("next_diagnoses") or [],
                                 "channel": r.get("channel"), "lifecycle_state": r.get("lifecycle_state")},
                        n_events=(r.get("input") or {}).get("n_events"), withheld=bool(r.get("withheld")),
                    )
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {line_no}: not a serve prediction record ({exc})") from None
    return store.add_predictions(records)


def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


__all__ = [
    "InputWindow", "PredictionRecord", "PredictionStore", "add_assistant_calls", "assistant_calls",
    "default_url", "import_serve_predictions", "prediction_id",
]  # fmt: skip
