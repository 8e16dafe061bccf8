"""``clinfm validate|stats|timeline``: look at a MEDS dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import console, err, errors_exit, fail


def validate(path: Annotated[Path, typer.Argument(help="MEDS dataset folder.")]) -> None:
    """Check a dataset against MEDS and ClinFM's rules (sorted shards, one shard per subject, splits)."""
    from clinfm.data.dataset import validate_dataset

    try:
        summary = validate_dataset(path)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]invalid:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]valid[/green] MEDS dataset: {summary.subjects:,} subjects, {summary.events:,} events, "
                  f"{summary.shards} shard(s)")  # fmt: skip


def stats(
    path: Annotated[Path, typer.Argument(help="MEDS dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (machine-readable).")] = False,
    top: Annotated[int, typer.Option(help="How many of the most frequent codes to list.")] = 15,
) -> None:
    """Subjects, events, codes by vocabulary, time span and top codes of a dataset."""
    from clinfm.data.stats import dataset_stats

    with errors_exit(FileNotFoundError):
        s = dataset_stats(path, top=top)
    if as_json:
        print(json.dumps(s, indent=2))
        return
    render.stats(s)


def timeline(
    path: Annotated[Path, typer.Argument(help="MEDS dataset folder.")],
    subject_id: Annotated[int, typer.Argument(help="Subject id (pseudonymous after de-identification).")],
    limit: Annotated[int, typer.Option(help="Show at most this many events (0: all).")] = 200,
    show_text: Annotated[bool, typer.Option("--show-text", help="Show note text (PHI before de-identification).")] = False,
) -> None:
    """A subject's timeline in the terminal, colour-coded by kind of event."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.data.timeline import render_timeline

    with errors_exit(FileNotFoundError):
        db = SubjectDatabase(path)
    if subject_id not in db:
        fail(f"subject {subject_id} is not in {path} ({len(db):,} subjects; try `clinfm stats {path}`)")
    console.print(render_timeline(db[subject_id], db.descriptions(), limit=limit, show_text=show_text))


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(stats)
    app.command()(timeline)
