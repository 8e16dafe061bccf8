"""``clinfm monitor replay|report|inject|assistant-import`` and ``clinfm retrain``: silent-mode rehearsal,
monitoring (incidents, drift drills, the assistant's calls), controlled change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli.common import console, errors_exit, fail, parse_time, progress_bar

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
    policy: Annotated[Path | None, typer.Option("--policy", help="Monitoring policy YAML (default: $CLINFM_MONITORING_POLICY, else the packaged one).")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Attach the summary to the model version for the gates.")] = False,
) -> None:
    """Input drift (codes, labs, unknown codes, missing key inputs), prediction drift, performance and the
    assistant over time against the policy; alerts merged into incidents; plots first, tables below."""
    from clinfm.monitor import PolicyError, attach_summary, monitor_report

    with errors_exit(PolicyError, LookupError):
        summary = monitor_report(model, policy=policy, out_html=out)
    for inc in summary.incidents:
        console.print(f"[red]{inc.id}[/red] {inc.title}: {inc.start[:10]} to {inc.end[:10]}, "
                      f"{len(inc.windows)} window(s), peak {inc.peak.message}")  # fmt: skip
    b = summary.budget
    rate = f" ({b.per_year:.2f} a year, budget {b.budget_per_year:g}{', OVER BUDGET' if b.over else ''})" if b else ""
    console.print(f"{len(summary.incidents)} incident(s) from {len(summary.alerts)} alert(s) over "
                  f"{summary.days:.0f} days{rate}; page: [cyan]{out}[/cyan]")  # fmt: skip
    if attach:
        attach_summary(model, summary)
        console.print(f"Attached the monitoring summary to {model}")


@monitor_app.command("inject")
def monitor_inject(
    path: Annotated[Path, typer.Argument(help="MEDS dataset to copy.")],
    out: Annotated[Path, typer.Option("--out", help="New folder for the drifted copy.")],
    after: Annotated[str, typer.Option("--from", help="Drift starts at this moment (YYYY-MM-DD).")],
    rename: Annotated[list[str] | None, typer.Option("--rename", help="OLD=NEW: record code OLD as NEW from then on (repeatable).")] = None,
    lab: Annotated[str | None, typer.Option("--lab", help="Lab code whose values to scale.")] = None,
    scale: Annotated[float, typer.Option("--scale", help="Factor for --lab's values.")] = 1.0,
) -> None:
    """A drift drill: copy a dataset with a code renamed or a lab rescaled from a date on, to replay and monitor."""
    from clinfm.monitor.inject import inject_drift

    pairs = {}
    for item in rename or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            fail(f"--rename {item!r} is not OLD=NEW")
        pairs[old] = new
    with errors_exit(ValueError, FileNotFoundError, FileExistsError):
        done = inject_drift(path, out, parse_time(after, "--from"), lab_scale=scale, lab_code=lab, rename=pairs)
    console.print(f"Drifted copy: [cyan]{done}[/cyan] ({len(pairs)} code(s) renamed, lab {lab or '-'} x{scale:g} from {after})")


@monitor_app.command("assistant-import")
def monitor_assistant_import(
    calls: Annotated[Path | None, typer.Argument(help="JSON Lines, one assistant call per line (clinfm.monitor.assistant.AssistantCall fields).")] = None,
    from_audit: Annotated[bool, typer.Option("--from-audit", help="Read the assistant's calls from the governance audit log (assist.answer entries).")] = False,
) -> None:
    """Store the assistant's audited calls for monitoring (ids, counts, times; no text)."""
    from clinfm.monitor.assistant import calls_from_audit, read_calls
    from clinfm.monitor.store import PredictionStore, add_assistant_calls

    if (calls is None) == (not from_audit):
        fail("give either a CALLS.jsonl file or --from-audit (one of them)")
    with errors_exit(ValueError, FileNotFoundError):
        records = read_calls(calls) if calls is not None else calls_from_audit(_audit_entries())
        n = add_assistant_calls(PredictionStore(), records)
    console.print(f"Stored {n} assistant call(s)")


def _audit_entries():
    """Every audit entry, in chain order, a page at a time."""
    from clinfm.govern.audit import list_entries

    seq = 0
    while page := list_entries(since_seq=seq, limit=1000):
        yield from page
        seq = page[-1].seq


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
