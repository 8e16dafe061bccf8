"""``clinfm synth``: generate a seeded Synthea cohort in parallel chunks and ingest it into MEDS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import EngineOptions, err, fail, options, progress_bar


@options
def synth(
    run: EngineOptions,
    out: Annotated[Path, typer.Option("--out", "-o", help="MEDS dataset to write.")],
    patients: Annotated[int, typer.Option("--patients", "-p", min=1, help="Patients to generate.")] = 100,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Cohort seed (also seeds the train/tuning/held_out split).")] = 0,
    chunk_patients: Annotated[int, typer.Option("--chunk-patients", min=1, help="Patients per Synthea task (part of the recipe: another value is another cohort).")] = 25,
    cache: Annotated[Path | None, typer.Option("--cache", help="Where the FHIR chunks are kept (default: OUT.fhir beside OUT); reused on rerun.")] = None,
) -> None:
    """Generate a reproducible synthetic FHIR cohort with Synthea (one seeded chunk per task, byte-identical for a
    seed whatever --workers) and ingest it. A few seconds per patient per core: run big cohorts in the background."""
    from clinfm.data.dataset import IngestError, build_dataset
    from clinfm.data.ingest import fhir
    from clinfm.data.synth import SynthError, generate_cohort
    from clinfm.engine import EngineError

    engine = run.build()
    cache = cache or out.with_name(out.name + ".fhir")
    try:
        with progress_bar("synthea", "chunks", total=-(-patients // chunk_patients)) as update:
            root = generate_cohort(patients, seed, cache, chunk_patients=chunk_patients, engine=engine, progress=update)
        plan = fhir.plan(root)
        with progress_bar("ingest fhir", "tasks", total=len(plan.tasks)) as update:
            summary = build_dataset(plan, out, seed=seed, progress=update, engine=engine)
    except ValueError as exc:
        fail(str(exc))
    except (SynthError, IngestError, EngineError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    render.reconciliation(summary)


def register(app: typer.Typer) -> None:
    app.command()(synth)
