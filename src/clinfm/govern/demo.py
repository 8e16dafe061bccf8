"""The governance part of the demo: a demo organization, people, an API key, the registered model and its card.

Everything goes through the same public functions the CLI and the API use, so the demo exercises the real gates.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from clinfm.govern.access import create_api_key, create_organization, create_user, list_users
from clinfm.govern.card import set_card_facts, write_card
from clinfm.govern.db import DB, clinfm_home, utcnow
from clinfm.govern.lifecycle import GateError, promote
from clinfm.govern.registry import attach_report, register_model

DEMO_ORG = "demo"
DEMO_MODEL = "clinfm-demo"
OWNER, SCIENTIST, SERVICE = "demo-clinical-owner", "demo-data-scientist", "demo-api"
DEMO_SCOPES = (  # everything the demo web page and API examples use
    "system/RiskAssessment.rs", "system/Model.r", "system/Patient.r", "system/ClinicalImpression.cru",
    "system/DetectedIssue.rs",
)
DEMO_FACTS = {
    "summary": "A demonstration clinical foundation model trained by `clinfm demo` on a small synthetic dataset.",
    "developer": "The ClinFM open-source project (a demonstration build, not a clinical product).",
    "funding_source": "None: an open-source demonstration.",
    "intended_use": "Demonstrating the ClinFM pipeline end to end. Not for clinical use.",
    "intended_population": "None: the training data is synthetic.",
    "intended_users": "Engineers and data scientists evaluating ClinFM.",
    "decision_role": "None: a demonstration that informs no clinical decision.",
    "cautioned_use": "Any real patient, any clinical decision, any setting outside a demonstration.",
}


def bootstrap_demo(
    run_dir: str | Path,
    dataset_dir: str | Path,
    report_json: dict[str, Any] | str | Path | None = None,
    *,
    primary_model: str | None = None,
    card_dir: str | Path | None = None,
    key_days: int = 30,
    db: DB = None,
) -> dict[str, Any]:
    """Register the demo model (with its validation report, if given) in a demo organization, add a clinical
    owner, a data scientist and a service account with an API key, try the ``validated`` gate, and write the card.
    ``primary_model`` says which model of a multi-model report (``clinfm.validate``'s) is the registered one.

    Returns ``api_key`` (shown once: print it, store it nowhere), ``key_id``, ``org``, ``model_version_id``,
    ``state``, ``gate_failures`` and ``card_paths`` (by format; default folder ``<clinfm_home>/cards/<id>``).
    """
    actor = "clinfm-demo"
    create_organization(DEMO_ORG, "ClinFM demo organization", actor=actor, exist_ok=True, db=db)
    existing = {u.username for u in list_users(DEMO_ORG, db=db)}
    for username, roles, kind in (
        (OWNER, ["clinical_owner"], "user"),
        (SCIENTIST, ["data_scientist"], "user"),
        (SERVICE, ["api_client"], "service"),
    ):
        if username not in existing:
            create_user(DEMO_ORG, username, roles, actor=actor, kind=kind, db=db)
    version = register_model(DEMO_MODEL, run_dir, dataset_dir, SCIENTIST, org=DEMO_ORG, db=db)
    set_card_facts(version.id, DEMO_FACTS, actor=SCIENTIST, db=db)
    failures: list[str] = []
    if report_json is not None:
        attach_report(
            version.id, report_json, "validation", actor=SCIENTIST, primary_model=primary_model, db=db
        )
        try:
            version = promote(
                version.id, "validated", SCIENTIST, "validation report attached by the demo", db=db
            )
        except GateError as exc:
            failures = exc.failures
    key = create_api_key(
        DEMO_ORG,
        SERVICE,
        list(DEMO_SCOPES),
        actor=actor,
        rate_per_minute=120,
        expires_at=utcnow() + dt.timedelta(days=key_days),
        db=db,
    )
    out = Path(card_dir) if card_dir else clinfm_home() / "cards" / version.id
    paths = write_card(version.id, out, db=db)
    return {
        "org": DEMO_ORG,
        "model_version_id": version.id,
        "model": f"{DEMO_MODEL} v{version.version}",
        "state": version.state,
        "gate_failures": failures,
        "api_key": key.key,
        "key_id": key.key_id,
        "key_expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "clinical_owner": OWNER,
        "card_paths": {k: str(v) for k, v in paths.items()},
    }
