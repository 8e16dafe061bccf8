"""``clinfm monitor replay|report`` and ``clinfm retrain``: silent-mode rehearsal, monitoring, controlled change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli.common import console, errors_exit, parse_time, progress_bar

monitor_app = typer.Typer(help="Silent-mode rehearsal and monitoring: replay, drift, performance, feedback.", no_args_is_help=True)


@monitor_app.command("replay")
def monitor_replay(
    path: Annotated[Path, typer.Argument(help="MEDS dataset to walk forward in time.")],
    task: Annotated[str, typer.Option("--task", help="Task name or YAML path (its prediction times are scored).")],
    start: Annotated[str, typer.Option("--from", help="First moment of the replay (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="Last moment of the replay (YYYY-MM-DD).")],
    model: Annotated[str | None, typer.Option("--model", help="Registered model version (default: train a count model before --from).")] = None,
    every: Annotated[str, typer.Option("--every", help="Step, e.g. 7d or 1d.")] = "7d",
) -> None:
    """Rehearse a silent deployment: only events before each moment are visible; outcomes are backfilled."""
    from clinfm.monitor import replay

    first, last = parse_time(start, "--from"), parse_time(end, "--to")
    with progress_bar("replay", "steps") as update, errors_exit(ValueError, LookupError, FileNotFoundError):
        summary = replay(path, model, task, first, last, every, progress=update)
    console.print_json(data=summary.as_dict())


@monitor_app.command("report")
def monitor_report_cmd(
    model: Annotated[str, typer.Option("--model", help="Model version whose stored predictions to monitor.")],
    out: Annotated[Path, typer.Option("--out", help="HTML page to write (JSON summary beside it).")] = Path("monitoring.html"),
    attach: Annotated[bool, typer.Option("--attach", help="Attach the summary to the model version for the gates.")] = False,
) -> None:
    """Input drift (PSI of codes and labs, unknown codes), prediction drift and performance over time, with alerts."""
    from clinfm.monitor import attach_summary, monitor_report

    summary = monitor_report(model, out_html=out)
    data = summary.as_json()
    for alert in data.get("alerts", []):
        console.print(f"[red]alert:[/red] {alert}")
    console.print(f"{len(data.get('alerts', []))} alert(s) over {data.get('days')} days; page: [cyan]{out}[/cyan]")
    if attach:
        attach_summary(model, summary)
        console.print(f"Attached the monitoring summary to {model}")


def retrain(
    path: Annotated[Path, typer.Argument(help="MEDS dataset with the newer data.")],
    incumbent: Annotated[str, typer.Option("--incumbent", help="Model version in use.")],
    plan: Annotated[Path | None, typer.Option("--plan", help="Change-control plan (YAML); default $CLINFM_CHANGE_PLAN, else the packaged change-plan.yaml.")] = None,
) -> None:
    """Build a candidate under a predetermined change plan and compare it with the incumbent (paired bootstrap)."""
    from clinfm.monitor import retrain as run_retrain

    with progress_bar("retrain", "steps") as update, errors_exit(ValueError, LookupError, FileNotFoundError):
        decision = run_retrain(plan, path, incumbent, progress=update)
    console.print_json(data=decision.as_dict())


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
    app.command()(retrain)
