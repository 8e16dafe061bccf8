"""Governance: model registry, generated model cards, lifecycle gates with human approval, tamper-evident audit,
tenants, API keys and consent. The functions below are what the CLI and the API call.

The registry is a SQLite file (``$CLINFM_HOME/registry.db``, default ``~/.clinfm``) unless
``$CLINFM_DATABASE_URL`` names another database (any PostgreSQL URL); every function also takes ``db=``.
"""

from __future__ import annotations

from clinfm.govern.access import (
    ROLES,
    AccessError,
    AuthenticationError,
    Forbidden,
    IssuedKey,
    Principal,
    RateDecision,
    authenticate,
    authorize,
    check_rate,
    create_api_key,
    create_organization,
    create_service_account,
    create_user,
    filter_opted_out,
    is_opted_out,
    list_users,
    record_opt_out,
    revoke_api_key,
    scope_allows,
    set_roles,
    withdraw_opt_out,
)
from clinfm.govern.audit import (
    AuditRecord,
    PHIError,
    VerifyResult,
    list_entries,
    record_prediction_access,
    verify_chain,
)
from clinfm.govern.card import render_card, set_card_facts, write_card
from clinfm.govern.db import LOCAL_ORG, NotFound, TenantError, clinfm_home, default_url, session_scope
from clinfm.govern.demo import bootstrap_demo
from clinfm.govern.lifecycle import (
    STATES,
    GateError,
    LifecyclePolicy,
    load_policy,
    promote,
    retire,
    serving_allowed,
)
from clinfm.govern.migrations import downgrade, upgrade
from clinfm.govern.registry import (
    ModelVersion,
    ReportInfo,
    attach_report,
    get_model,
    list_models,
    register_model,
)

__all__ = [
    "LOCAL_ORG",
    "ROLES",
    "STATES",
    "AccessError",
    "AuditRecord",
    "AuthenticationError",
    "Forbidden",
    "GateError",
    "IssuedKey",
    "LifecyclePolicy",
    "ModelVersion",
    "NotFound",
    "PHIError",
    "Principal",
    "RateDecision",
    "ReportInfo",
    "TenantError",
    "VerifyResult",
    "attach_report",
    "authenticate",
    "authorize",
    "bootstrap_demo",
    "check_rate",
    "clinfm_home",
    "create_api_key",
    "create_organization",
    "create_service_account",
    "create_user",
    "default_url",
    "downgrade",
    "filter_opted_out",
    "get_model",
    "is_opted_out",
    "list_entries",
    "list_models",
    "list_users",
    "load_policy",
    "promote",
    "record_opt_out",
    "record_prediction_access",
    "register_model",
    "render_card",
    "retire",
    "revoke_api_key",
    "scope_allows",
    "serving_allowed",
    "session_scope",
    "set_card_facts",
    "set_roles",
    "upgrade",
    "verify_chain",
    "withdraw_opt_out",
    "write_card",
]
