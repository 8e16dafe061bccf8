"""Builds the server's state from settings: adapters over governance, the store, the model and reasoning,
each replaced by an :class:`~clinfm.serve.backends.Unavailable` (503 with the reason) when it is missing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import queue
import threading
from typing import Any

from clinfm.serve.backends import AuditBackend, Unavailable
from clinfm.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def optional_module(name: str) -> Any | None:
    """The module when that part of ClinFM is installed; None when it is not (yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


# --- audit -----------------------------------------------------------------------------------------------
class GroupCommitAudit(AuditBackend):
    """Prediction-access entries appended to the governance audit chain by one writer thread, many entries per
    transaction. A request waits until its entry is committed: a prediction is never shown unaudited."""

    MAX_BATCH = 256

    def __init__(self, db: Any, audit_module: Any, session_scope: Any) -> None:
        self.db, self._audit, self._session_scope = db, audit_module, session_scope
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        self.commits = 0

    async def record_prediction(self, *, actor: str, org: str, model_version: str, subject: str, purpose: str,
                                detail: dict[str, Any]) -> None:  # fmt: skip
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((dict(actor=actor, org=org, model_version_id=model_version, subject_id=subject,
                              purpose=purpose, details=detail), future))  # fmt: skip
        await asyncio.wrap_future(future)

    def record_event(self, action: str, *, actor: str, org: str | None, detail: dict[str, Any]) -> None:
        """Queue a security event (failed login, refusal, throttling) without waiting for its commit."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.add_done_callback(lambda f: f.exception())  # a failed write is logged by the writer, never raised here
        self._queue.put((dict(action=action, actor=actor, org=org, details=detail), future))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self._session_scope(self.db, write=True) as session:
                    for entry, _ in batch:
                        entry = dict(entry)
                        self._audit.append(session, entry.pop("action", "prediction.access"), **entry)
                self.commits += 1
            except Exception as exc:  # noqa: BLE001 - every waiting request fails closed
                log.error("audit write failed for %d entries: %s", len(batch), type(exc).__name__)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for _, future in batch:
                future.set_result(None)


def build_state(settings: ServeSettings):  # -> ServeState
    from clinfm.serve import govern_adapters, model_adapter, reasoning_adapters
    from clinfm.serve.app import ServeState
    from clinfm.serve.predictions import JsonlLog
    from clinfm.serve.service import PredictionService

    db = settings.resolved_database_url
    access, registry, audit = govern_adapters.build(settings, db)
    store, descriptions = _store(settings)
    state = ServeState(
        settings=settings, access=access, registry=registry, audit=audit,
        ddx=reasoning_adapters.ddx(), treatment=reasoning_adapters.treatment(), store=store,
        descriptions=descriptions, feedback=JsonlLog(settings.feedback_file),
        cards_log=JsonlLog(settings.data_dir / "cds-cards.jsonl"),
    )  # fmt: skip
    if hasattr(access, "reserve_quota"):  # the quota budget is the database's, shared by every server process
        from clinfm.serve.limits import SharedQuota

        state.quotas = SharedQuota(access.reserve_quota)
    state.predictions = PredictionService(state, model_adapter.loader(settings, descriptions), _secret(settings))
    return state


def _store(settings: ServeSettings) -> tuple[Any, dict[str, str]]:
    if settings.dataset_path is None:
        return Unavailable("the subject store", "CLINFM_DATASET_PATH is not set"), {}
    from clinfm.data.store import SubjectDatabase

    try:
        db = SubjectDatabase(settings.dataset_path)
    except FileNotFoundError:
        return Unavailable("the subject store", "CLINFM_DATASET_PATH holds no MEDS dataset"), {}
    return db, db.descriptions()


def _secret(settings: ServeSettings) -> bytes | None:
    if settings.tenant_secret_file is None:
        return None
    from clinfm.deid.structured import read_secret

    return read_secret(settings.tenant_secret_file)
