"""The server's state: every backend a request may need, typed by the Protocols of ``backends`` so the type
checker holds each adapter (and each :class:`~clinfm.serve.backends.Unavailable`) to what the routes call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clinfm.serve.backends import AccessBackend, AuditBackend, DdxBackend, RegistryBackend, TreatmentBackend, Unavailable
from clinfm.serve.deps import AuthCache
from clinfm.serve.limits import AuthThrottle, RefusalAudit, SharedQuota, TenantSessions
from clinfm.serve.predictions import JsonlLog
from clinfm.serve.security import QuotaLimiter
from clinfm.serve.settings import ServeSettings

if TYPE_CHECKING:
    from clinfm.data.store import SubjectDatabase
    from clinfm.serve.service import PredictionService


@dataclass
class ServeState:
    """Everything a request may need, built once per app."""

    settings: ServeSettings
    access: AccessBackend
    registry: RegistryBackend
    audit: AuditBackend
    ddx: DdxBackend
    treatment: TreatmentBackend
    store: SubjectDatabase | Unavailable
    feedback: JsonlLog
    cards_log: JsonlLog
    descriptions: dict[str, str] = field(default_factory=dict)
    auth_cache: AuthCache = field(default_factory=AuthCache)
    quotas: QuotaLimiter | SharedQuota = field(default_factory=QuotaLimiter)
    service: PredictionService | None = None  # set by the composition root (it needs this state)
    ddx_sessions: TenantSessions = field(default_factory=TenantSessions)  # per organization: id -> SessionState
    auth_throttle: AuthThrottle = field(default_factory=AuthThrottle)
    refusal_audit: RefusalAudit = field(default_factory=RefusalAudit)
    issued_cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # card uuid -> what produced it
    assistant: Any = None  # clinfm.assist.service.Assistant: built on the first /v1/assist request

    @property
    def predictions(self) -> PredictionService:
        if self.service is None:
            raise RuntimeError("the prediction service is not wired; build the state with clinfm.serve.wiring.build_state")
        return self.service

    async def close(self) -> None:
        if self.service is not None:
            await self.service.close()

    def readiness(self) -> dict[str, str]:
        """What is ready and what is missing (names and reasons only)."""
        out = {}
        for name in ("access", "registry", "audit", "ddx", "treatment", "store"):
            part = getattr(self, name)
            out[name] = f"unavailable: {part.reason}" if isinstance(part, Unavailable) else "ok"
        org = self.settings.dataset_org
        deployed = [d for d in self.registry.deployments(org) if d.serves] if not isinstance(self.registry, Unavailable) else []
        out["model"] = "ok" if deployed else f"unavailable: {org!r} has no model in silent, pilot or general state"
        return out
