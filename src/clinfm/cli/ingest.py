"""``clinfm ingest omop|fhir|mimic|meds``: convert a source into a MEDS dataset, with the reconciliation table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import EngineOptions, IngestOptions, console, err, fail, options, progress_bar

if TYPE_CHECKING:
    from clinfm.data.dataset import DatasetSummary
    from clinfm.data.ingest.base import SourcePlan

ingest_app = typer.Typer(help="Convert a source (OMOP, FHIR R4, MIMIC-IV, MEDS) into a MEDS dataset.", no_args_is_help=True)


def run_ingest(make_plan: Callable[[], SourcePlan], opts: IngestOptions, run: EngineOptions) -> DatasetSummary:
    """Plan, build under a progress bar, print the reconciliation; a bad source exits 2, a failed build 1."""
    from clinfm.data.dataset import IngestError, build_dataset
    from clinfm.engine import EngineError

    try:
        plan = make_plan()
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    engine = run.build()
    with progress_bar(f"ingest {plan.source}", "tasks", total=len(plan.tasks)) as update:
        try:
            summary = build_dataset(plan, opts.out, shards=opts.shards, seed=opts.seed, progress=update, engine=engine)
        except (IngestError, EngineError) as exc:
            err.print(f"[red]error:[/red] {exc}\nThe previous dataset at {opts.out} (if any) is unchanged.")
            raise typer.Exit(1) from exc
    render.reconciliation(summary)
    render.not_converted(plan.not_converted)
    return summary


@ingest_app.command("omop")
@options
def ingest_omop(
    opts: IngestOptions,
    run: EngineOptions,
    duckdb_file: Annotated[Path | None, typer.Option("--duckdb", help="OMOP CDM in a DuckDB file.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Folder of OMOP CDM CSV files (person.csv, ...).")] = None,
) -> None:
    """OMOP CDM 5.3/5.4 to MEDS. With neither --duckdb nor --csv, reads the embedded Eunomia demo CDM."""
    from clinfm.data.ingest import omop

    run_ingest(lambda: omop.plan(duckdb_file, csv_dir), opts, run)


@ingest_app.command("fhir")
@options
def ingest_fhir(
    path: Annotated[Path, typer.Argument(help="FHIR R4 Bundles (*.json) or Bulk Data NDJSON (*.ndjson[.gz]): a file or folder.")],
    opts: IngestOptions,
    run: EngineOptions,
) -> None:
    """FHIR R4 (Bundles or Bulk Data NDJSON, e.g. Synthea output) to MEDS."""
    from clinfm.data.ingest import fhir

    run_ingest(lambda: fhir.plan(path), opts, run)


@ingest_app.command("mimic")
@options
def ingest_mimic(
    path: Annotated[Path, typer.Argument(help="MIMIC-IV root folder holding hosp/ and icu/ CSV(.gz) tables.")],
    opts: IngestOptions,
    run: EngineOptions,
) -> None:
    """MIMIC-IV (hosp/ and icu/ modules) to MEDS."""
    from clinfm.data.ingest import mimic

    run_ingest(lambda: mimic.plan(path), opts, run)


@ingest_app.command("meds")
@options
def ingest_meds(
    path: Annotated[Path, typer.Argument(help="An existing MEDS dataset folder (data/*.parquet).")],
    opts: IngestOptions,
    run: EngineOptions,
) -> None:
    """Validate and adopt an existing MEDS dataset (its splits and code descriptions are kept)."""
    from clinfm.data.ingest import meds

    run_ingest(lambda: meds.plan(path), opts, run)


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
