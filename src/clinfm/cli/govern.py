"""``clinfm registry|card|audit|access``: the model registry, model cards, the audit log, tenants and keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clinfm.cli.common import ActorOpt, OrgOpt, console, err, errors_exit

registry_app = typer.Typer(help="Model registry: register, list, show, attach reports, promote through gates.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
access_app = typer.Typer(help="Organizations, users, roles and API keys.", no_args_is_help=True)


@contextmanager
def govern_errors() -> Iterator[None]:
    """Governance refusals and unknown ids end the command with their message and exit status 2."""
    with errors_exit(KeyError, LookupError, ValueError, PermissionError):
        yield


@registry_app.command("register")
def registry_register(
    name: Annotated[str, typer.Argument(help="Model name, e.g. clinfm-eunomia.")],
    run_dir: Annotated[Path, typer.Argument(help="Training run folder (weights, tokenizer, config).")],
    dataset_dir: Annotated[Path, typer.Argument(help="The (de-identified) MEDS dataset it was trained on.")],
    actor: ActorOpt = "cli",
    org: OrgOpt = "local",
) -> None:
    """Register a model version with its artifact hashes and training-data fingerprint (state: draft)."""
    from clinfm.govern import register_model

    with govern_errors():
        v = register_model(name, run_dir, dataset_dir, actor, org=org)
    console.print(f"Registered [bold]{v.name} v{v.version}[/bold] as [cyan]{v.id}[/cyan] (state {v.state})")


@registry_app.command("list")
def registry_list(org: Annotated[str | None, typer.Option("--org")] = None) -> None:
    """Every registered model version with its lifecycle state."""
    from clinfm.govern import list_models

    table = Table(title="Model registry", title_justify="left")
    for col in ("id", "name", "version", "state", "org", "created"):
        table.add_column(col)
    for v in list_models(org=org):
        table.add_row(v.id, v.name, str(v.version), v.state, v.org_id, v.created_at.isoformat(timespec="seconds"))
    console.print(table)


@registry_app.command("show")
def registry_show(version_id: Annotated[str, typer.Argument(help="Model version id.")]) -> None:
    """One model version as JSON: hashes, dataset fingerprint, reports, lifecycle history."""
    from clinfm.govern import get_model

    with govern_errors():
        print(get_model(version_id).model_dump_json(indent=2))


@registry_app.command("attach")
def registry_attach(
    version_id: Annotated[str, typer.Argument()],
    report: Annotated[Path, typer.Argument(help="Report JSON (validation or monitoring).")],
    kind: Annotated[str, typer.Option(help="validation or monitoring")] = "validation",
    primary_model: Annotated[str | None, typer.Option(help="Which model in a validation report is this one.")] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Attach a validation or monitoring report (JSON) to a model version."""
    from clinfm.govern import attach_report

    with govern_errors():
        attach_report(version_id, report, kind=kind, actor=actor, primary_model=primary_model)
    console.print(f"Attached {kind} report {report} to {version_id}")


@registry_app.command("promote")
def registry_promote(
    version_id: Annotated[str, typer.Argument()],
    to: Annotated[str, typer.Option("--to", help="validated, silent, pilot, general or retired")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded; never name a patient).")],
    actor: ActorOpt = "cli",
) -> None:
    """Move a model version through the lifecycle; a refused gate says which condition failed."""
    from clinfm.govern import GateError, promote

    with govern_errors():
        try:
            v = promote(version_id, to, actor, reason, registered_actor=True)
        except GateError as exc:  # a refusal (exit 1) is not an error in the request (exit 2)
            err.print(f"[red]refused:[/red] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"{v.name} v{v.version} is now [bold]{v.state}[/bold]")


def card(
    version_id: Annotated[str, typer.Argument(help="Model version id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for card.md, card.html and card.json.")] = Path("model-cards"),
) -> None:
    """Generate the model card (Markdown, HTML, JSON) from the registry, with the 31 HTI-1 source attributes."""
    from clinfm.govern import write_card

    with govern_errors():
        paths = write_card(version_id, out / version_id)
    for fmt, path in paths.items():
        console.print(f"{fmt}: [cyan]{path}[/cyan]")


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[Path | None, typer.Option("--checkpoints", help="Signed checkpoint file (default: CLINFM_AUDIT_CHECKPOINTS or <CLINFM_HOME>/audit-checkpoints.jsonl).")] = None,
) -> None:
    """Recompute the keyed audit chain and hold it against the signed checkpoints; name the first bad entry."""
    from clinfm.govern import verify_chain

    result = verify_chain(checkpoints=checkpoints)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/yellow]: {warning}")
    if result.ok:
        anchor = f", signed checkpoint at seq {result.checkpoint_seq}" if result.checkpoint_seq else ""
        console.print(f"[green]audit chain intact[/green]: {result.entries:,} entries{anchor}")
        return
    where = f" at entry {result.seq}" if result.seq is not None else ""
    err.print(f"[red]audit chain broken[/red]{where} ({result.problem}): {result.message}")
    raise typer.Exit(1)


@audit_app.command("init-keys")
def audit_init_keys(
    directory: Annotated[Path, typer.Argument(help="Where to write audit.key, audit-signing.pem and .pub (mode 0600).")],
) -> None:
    """Create the audit chain's MAC key and checkpoint signing key (point CLINFM_AUDIT_KEY_FILE and
    CLINFM_AUDIT_SIGNING_KEY_FILE at them; give auditors only the .pub)."""
    from clinfm.govern.audit_keys import AuditKeyError, generate_keys

    with errors_exit(AuditKeyError):
        mac, signing, pub = generate_keys(directory)
    console.print(f"Wrote {mac}, {signing} (keep both secret) and {pub} (for auditors)")


@access_app.command("create-org")
def access_create_org(org: Annotated[str, typer.Argument()], name: Annotated[str | None, typer.Option()] = None,
                      actor: ActorOpt = "cli") -> None:  # fmt: skip
    """Create an organization (tenant)."""
    from clinfm.govern import create_organization

    create_organization(org, name, actor=actor, exist_ok=True)
    console.print(f"Organization [bold]{org}[/bold] ready")


@access_app.command("create-user")
def access_create_user(
    org: Annotated[str, typer.Argument()],
    username: Annotated[str, typer.Argument()],
    role: Annotated[list[str], typer.Option("--role", help="admin, clinical_owner, data_scientist, clinician, auditor, api_client")],
    actor: ActorOpt = "cli",
) -> None:
    """Create a user with roles in an organization."""
    from clinfm.govern import create_user

    with govern_errors():
        create_user(org, username, role, actor=actor)
    console.print(f"User [bold]{username}[/bold] in {org} with roles {', '.join(role)}")


MAX_RATE = 100_000  # govern.access.MAX_RATE_PER_MINUTE
"""The most requests a minute a key may be granted (more is a typo, and no server serves it)."""


@access_app.command("create-key")
def access_create_key(
    org: Annotated[str, typer.Argument()],
    username: Annotated[str, typer.Argument()],
    scope: Annotated[list[str], typer.Option("--scope", help="SMART v2 scope, e.g. system/RiskAssessment.rs")],
    rate: Annotated[int, typer.Option(help="Requests per minute (1 to 100,000).", min=1, max=MAX_RATE)] = 60,
    days: Annotated[int | None, typer.Option(help="Expires after this many days (1 to 3,650; omit for no expiry).", min=1, max=3650)] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Create an API key; it is printed once and stored only as a salted hash."""
    from clinfm.govern import create_api_key

    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days) if days is not None else None
    with govern_errors():
        issued = create_api_key(org, username, scope, actor=actor, rate_per_minute=rate, expires_at=expires)
    console.print(f"API key (shown once, store it now): [bold]{issued.key}[/bold]\nkey id: {issued.key_id}")


@access_app.command("revoke-key")
def access_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after cfm_, before the secret).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log; never name a patient).")],
    org: Annotated[str | None, typer.Option("--org", help="Only look in this organization.")] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Revoke an API key for good (servers stop accepting it within their 30 s key cache)."""
    from clinfm.govern import revoke_api_key

    with govern_errors():
        revoke_api_key(key_id, actor=actor, reason=reason, org=org)
    console.print(f"API key {key_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
    app.command()(card)
    app.add_typer(audit_app, name="audit")
    app.add_typer(access_app, name="access")
