"""The server's composition root: builds :class:`~clinfm.serve.state.ServeState` from settings, with the adapters
over governance, the store, the model and reasoning; a piece whose configuration is missing (no dataset, no
secret, an unreadable knowledge base) is an :class:`~clinfm.serve.backends.Unavailable` (503 with the reason).
"""

from __future__ import annotations

from clinfm.data.store import SubjectDatabase
from clinfm.deid.structured import read_secret
from clinfm.serve import model_adapter, reasoning_adapters
from clinfm.serve.backends import Unavailable
from clinfm.serve.govern_adapters import GovernAccess, GovernRegistry, GroupCommitAudit
from clinfm.serve.limits import SharedQuota
from clinfm.serve.predictions import JsonlLog
from clinfm.serve.service import PredictionService
from clinfm.serve.settings import ServeSettings
from clinfm.serve.state import ServeState


def build_state(settings: ServeSettings) -> ServeState:
    """Every backend wired for ``settings``; the one place that chooses implementations."""
    db = settings.resolved_database_url
    store, descriptions = _store(settings)
    state = ServeState(
        settings=settings, access=GovernAccess(db), registry=GovernRegistry(db), audit=GroupCommitAudit(db),
        ddx=reasoning_adapters.ddx(), treatment=reasoning_adapters.TreatmentChecks(), store=store,
        descriptions=descriptions, feedback=JsonlLog(settings.feedback_file),
        cards_log=JsonlLog(settings.data_dir / "cds-cards.jsonl"),
    )  # fmt: skip
    state.quotas = SharedQuota(state.access.reserve_quota)  # the budget is the database's, shared by every process
    state.service = PredictionService(state, model_adapter.loader(settings, descriptions), _secret(settings))
    return state


def _store(settings: ServeSettings) -> tuple[SubjectDatabase | Unavailable, dict[str, str]]:
    if settings.dataset_path is None:
        return Unavailable("the subject store", "CLINFM_DATASET_PATH is not set"), {}
    try:
        db = SubjectDatabase(settings.dataset_path)
    except FileNotFoundError:
        return Unavailable("the subject store", "CLINFM_DATASET_PATH holds no MEDS dataset"), {}
    return db, db.descriptions()


def _secret(settings: ServeSettings) -> bytes | None:
    if settings.tenant_secret_file is None:
        return None
    return read_secret(settings.tenant_secret_file)
