"""The model lifecycle: draft → validated → silent → pilot → general, and retired from anywhere, behind gates.

The gates come from the lifecycle policy (packaged ``clinfm/defaults/policies/lifecycle-policy.yaml``) (pydantic-validated): ``validated`` needs a validation report
meeting the thresholds; ``silent``, ``pilot`` and ``general`` need a clinical owner's approval with a written
reason; ``pilot`` also needs a silent-mode monitoring summary in bounds. A refusal names every failed condition.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from clinfm.defaults import resolve
from clinfm.govern import audit
from clinfm.govern.access import ROLES
from clinfm.govern.db import DB, NotFound, Transition, User, session_scope, utcnow
from clinfm.govern.registry import ModelVersion, find_version, version_view
from clinfm.govern.reports import read_monitoring, read_validation

STATES = ("draft", "validated", "silent", "pilot", "general", "retired")
NEXT = {"draft": "validated", "validated": "silent", "silent": "pilot", "pilot": "general"}
PREVIOUS = {after: before for before, after in NEXT.items()}


# --- policy ------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidatedGate(_Strict):
    report_kind: str = "validation"
    min_auroc_lower_ci: float = Field(0.70, ge=0, le=1)
    max_calibration_error: float = Field(0.10, ge=0, le=1)
    require_no_four_fifths_flag: bool = True


class ApprovalGate(_Strict):
    role: str = "clinical_owner"
    states: tuple[str, ...] = ("silent", "pilot", "general")
    min_reason_chars: int = Field(20, ge=1)


class PilotGate(_Strict):
    monitoring_kind: str = "monitoring"
    min_silent_days: int = Field(30, ge=0)
    max_alerts: int = Field(0, ge=0)


class RetiredGate(_Strict):
    min_reason_chars: int = Field(10, ge=1)


class LifecyclePolicy(_Strict):
    """The gates between lifecycle states; the defaults equal the packaged ``lifecycle-policy.yaml``."""

    validated: ValidatedGate = ValidatedGate()
    approval: ApprovalGate = ApprovalGate()
    pilot: PilotGate = PilotGate()
    retired: RetiredGate = RetiredGate()

    def model_post_init(self, _) -> None:
        if self.approval.role not in ROLES:
            raise ValueError(f"approval.role {self.approval.role!r} is not one of {list(ROLES)}")
        bad = [s for s in self.approval.states if s not in STATES[1:-1]]
        if bad:
            raise ValueError(f"approval.states {bad} are not promotable states {list(STATES[1:-1])}")


class PolicyError(ValueError):
    """The policy file is missing or invalid."""


def load_policy(path: str | Path | None = None) -> LifecyclePolicy:
    """The policy at ``path``, else ``$CLINFM_LIFECYCLE_POLICY``, else the packaged ``lifecycle-policy.yaml``
    (whose values equal the model's defaults)."""
    path = resolve("lifecycle_policy", path)
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return LifecyclePolicy.model_validate(raw)
    except OSError as exc:
        raise PolicyError(f"cannot read lifecycle policy {str(path)!r}: {exc}") from exc
    except (yaml.YAMLError, ValidationError, ValueError) as exc:
        raise PolicyError(f"invalid lifecycle policy {str(path)!r}: {exc}") from exc


# --- gates -------------------------------------------------------------------------------------------------
class GateError(ValueError):
    """A refused transition; ``failures`` lists each condition that was not met."""

    def __init__(self, version: ModelVersion, to_state: str, failures: list[str]):
        self.version_id, self.to_state, self.failures = version.id, to_state, failures
        super().__init__(
            f"cannot move {version.name} v{version.version} ({version.id}) from {version.state} to "
            f"{to_state}: " + "; ".join(failures)
        )


def check_validation(version: ModelVersion, policy: LifecyclePolicy) -> list[str]:
    """What keeps ``version``'s latest validation report from meeting the ``validated`` thresholds."""
    gate = policy.validated
    report = version.latest_report(gate.report_kind)
    if report is None:
        return [f"no '{gate.report_kind}' report is attached (attach one with attach_report)"]
    summary = read_validation(report.document, version.name)
    where = f"'{gate.report_kind}' report {report.id}"
    if summary.primary is None:
        return [f"{where}: " + "; ".join(summary.missing)]
    failures = []
    auroc, cal = summary.metrics.get("auroc"), summary.metrics.get("calibration_error")
    if auroc is None or not auroc.has_ci:
        failures.append(f"{where} gives no AUROC confidence interval for model {summary.primary!r}")
    elif auroc.lo is not None and auroc.lo < gate.min_auroc_lower_ci:
        failures.append(
            f"AUROC lower confidence bound {auroc.lo:.3f} is below the minimum {gate.min_auroc_lower_ci:.3f}"
        )
    if cal is None:
        failures.append(f"{where} gives no calibration error for model {summary.primary!r}")
    elif cal.value > gate.max_calibration_error:
        failures.append(
            f"calibration error {cal.value:.3f} is above the maximum {gate.max_calibration_error:.3f}"
        )
    if gate.require_no_four_fifths_flag:
        if summary.four_fifths_flag is None:
            failures.append(f"{where} has no fairness.four_fifths_flag")
        elif summary.four_fifths_flag:
            failures.append(
                "the four-fifths rule is flagged: a subgroup's selection rate is below 80% of the highest"
            )
    return failures


def check_approval(approver: User | None, actor: str, reason: str, policy: LifecyclePolicy) -> list[str]:
    gate = policy.approval
    failures = []
    if approver is None:
        failures.append(f"approver {actor!r} is not a user of this organization")
    elif gate.role not in approver.roles:
        failures.append(
            f"approver {actor!r} lacks role {gate.role} (has: {', '.join(approver.roles) or 'none'})"
        )
    elif approver.kind != "user":
        failures.append(f"approver {actor!r} is a service account; approvals need a person")
    if len(reason.strip()) < gate.min_reason_chars:
        failures.append(
            f"the written reason has {len(reason.strip())} characters; at least {gate.min_reason_chars} "
            "are required"
        )
    return failures


def check_silent_period(version: ModelVersion, policy: LifecyclePolicy) -> list[str]:
    """A monitoring summary recorded since the version entered ``silent`` shows enough days and no alerts."""
    gate = policy.pilot
    entered = version.entered("silent")
    report = version.latest_report(gate.monitoring_kind)
    if report is None or entered is None or report.attached_at < entered:
        return [
            f"no '{gate.monitoring_kind}' summary has been attached since the version entered silent mode"
        ]
    summary = read_monitoring(report.document)
    failures = [f"monitoring summary {report.id} has no '{key}'" for key in summary.missing]
    if summary.days is not None and summary.days < gate.min_silent_days:
        failures.append(
            f"silent-mode monitoring covers {summary.days:g} days; the policy requires {gate.min_silent_days}"
        )
    if len(summary.alerts) > gate.max_alerts:
        failures.append(
            f"silent-mode monitoring raised {len(summary.alerts)} alert(s); at most {gate.max_alerts} allowed"
        )
    if summary.in_bounds is False:
        failures.append(f"monitoring summary {report.id} reports metrics out of bounds")
    return failures


def gate_failures(
    version: ModelVersion,
    to_state: str,
    actor: str,
    reason: str,
    approver: User | None,
    policy: LifecyclePolicy,
) -> list[str]:
    """Every condition that keeps ``version`` from moving to ``to_state`` (empty: it may)."""
    if to_state not in STATES:
        return [f"unknown state {to_state!r}; states are {list(STATES)}"]
    if version.state == "retired":
        return ["the version is retired; register a new version instead"]
    if to_state == "retired":
        n = policy.retired.min_reason_chars
        return (
            []
            if len(reason.strip()) >= n
            else [f"retiring needs a written reason of at least {n} characters"]
        )
    if NEXT.get(version.state) != to_state:
        source = PREVIOUS.get(to_state)
        if source is None:
            return [f"a version cannot return to {to_state}"]
        return [f"{to_state} is reached only from {source}, and the version is {version.state}"]
    failures = []
    if to_state == "validated":
        failures += check_validation(version, policy)
    if to_state in policy.approval.states:
        failures += check_approval(approver, actor, reason, policy)
    if to_state == "pilot":
        failures += check_silent_period(version, policy)
    return failures


def promote(
    version_id: str,
    to_state: str,
    actor: str,
    reason: str,
    *,
    org: str | None = None,
    policy: LifecyclePolicy | str | Path | None = None,
    db: DB = None,
    registered_actor: bool = False,
) -> ModelVersion:
    """Move a version to ``to_state`` if every gate passes, recording the step (and approval) and an audit entry.

    ``registered_actor=True`` (the CLI) also refuses an ``actor`` who is not a user of the version's organization.

    ``actor`` is the username (in the version's organization) acting; for approval states it is the approver.
    A refusal raises :class:`GateError` listing each failed condition, and is itself audited. The reason goes into
    the audit log: it is governance text and must never name a patient.
    """
    policy = policy if isinstance(policy, LifecyclePolicy) else load_policy(policy)
    with session_scope(db, org=org, write=True) as session:
        row = find_version(session, version_id)
        version = version_view(session, row)
        approver = session.execute(
            select(User).where(User.org_id == row.org_id, User.username == actor)
        ).scalar_one_or_none()
        failures = gate_failures(version, to_state, actor, reason, approver, policy)
        if registered_actor and approver is None:
            failures.insert(0, f"actor {actor!r} is not a registered user of organization {row.org_id!r}")
        if not failures:
            role = policy.approval.role if to_state in policy.approval.states else None
            session.add(
                Transition(
                    org_id=row.org_id,
                    model_version_id=row.id,
                    from_state=row.state,
                    to_state=to_state,
                    actor=actor,
                    approver_role=role,
                    reason=reason,
                    created_at=utcnow(),
                )
            )
            audit.append(
                session,
                "model.promote",
                actor=actor,
                org=row.org_id,
                model_version_id=row.id,
                details={"from": row.state, "to": to_state, "approver_role": role, "reason": reason},
            )
            row.state = to_state
            session.flush()
            return version_view(session, row)
    audit.record(
        "model.promote_refused",
        actor=actor,
        org=version.org_id,
        model_version_id=version.id,
        details={"from": version.state, "to": to_state, "failures": failures},
        db=db,
    )
    raise GateError(version, to_state, failures)


def retire(
    version_id: str,
    actor: str,
    reason: str,
    *,
    org: str | None = None,
    policy: LifecyclePolicy | str | Path | None = None,
    db: DB = None,
) -> ModelVersion:
    """Retire a version from any state (it can no longer serve); the reason is required."""
    return promote(version_id, "retired", actor, reason, org=org, policy=policy, db=db)


def serving_allowed(version: ModelVersion) -> bool:
    """Whether predictions may be shown to clinicians (``pilot``, ``general``); ``silent`` runs but shows nothing."""
    return version.state in ("pilot", "general")


__all__ = [
    "STATES",
    "GateError",
    "LifecyclePolicy",
    "NotFound",
    "PolicyError",
    "gate_failures",
    "load_policy",
    "promote",
    "retire",
    "serving_allowed",
]
