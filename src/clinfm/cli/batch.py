"""``clinfm embed|score``: batch jobs over a whole dataset, one task per shard on the chosen engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clinfm.cli.common import ActorOpt, EngineOptions, console, errors_exit, fail, options, parse_time, progress_bar

if TYPE_CHECKING:
    from clinfm.batch import Cohort

PointsOpt = Annotated[Path | None, typer.Option("--points", help="Parquet or CSV of subject_id, prediction_time.")]
AtOpt = Annotated[str | None, typer.Option("--at", help="One prediction time for every subject with a record by then.")]


@contextmanager
def batch_errors() -> Iterator[None]:
    from clinfm.batch import BatchError
    from clinfm.engine import EngineError

    with errors_exit(BatchError, EngineError, ValueError, LookupError, FileNotFoundError):
        yield


def cohort(points: Path | None, at: str | None, task: str | None, path: Path) -> Cohort | None:
    """--points, --at or --task: exactly one names the prediction points (a task may also define the risk)."""
    from clinfm.batch import Cohort, task_cohort
    from clinfm.tasks.config import load_task

    if points is not None and at is not None:
        fail("give --points or --at, not both")
    if points is not None:
        if not points.exists():
            fail(f"points file {points} does not exist")
        return Cohort(points_file=str(points))
    if at is not None:
        return Cohort(at=parse_time(at, "--at"))
    return task_cohort(load_task(task), path) if task is not None else None


@options
def embed(
    run_dir: Annotated[Path, typer.Argument(help="Trained foundation-model run folder.")],
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file: subject_id, prediction_time, n_tokens, last, mean.")],
    run: EngineOptions,
    task: Annotated[str | None, typer.Option("--task", help="Embed at this task's prediction times.")] = None,
    points: PointsOpt = None,
    at: AtOpt = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Export patient embeddings (the model's hidden state of the history up to each prediction time)."""
    from clinfm.batch import export_embeddings

    if sum(x is not None for x in (task, points, at)) != 1:
        fail("say where to embed with one of --task, --points or --at")
    engine = run.build()
    with batch_errors():
        where = cohort(points, at, task, path)
        assert where is not None  # one of the three was given
        with progress_bar("embed", "shards") as update:
            frame = export_embeddings(run_dir, path, where, out, batch_size=batch_size, engine=engine, progress=update)
    console.print(f"{frame.height:,} embeddings of {frame['subject_id'].n_unique():,} subjects in [cyan]{out}[/cyan]")


@options
def score(
    model: Annotated[str, typer.Argument(help="Registered version id, or a run folder (count model or foundation model).")],
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file: subject_id, prediction_time, score.")],
    run: EngineOptions,
    task: Annotated[str | None, typer.Option("--task", help="Foundation model: the task whose outcome is the risk.")] = None,
    points: PointsOpt = None,
    at: AtOpt = None,
    samples: Annotated[int, typer.Option(min=1, help="Foundation model: sampled futures per point.")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    actor: ActorOpt = "cli",
) -> None:
    """Score a whole dataset with a model (default points: the task's prediction times), shard by shard."""
    from clinfm.batch import resolve_model, score_dataset
    from clinfm.tasks.config import load_task

    engine = run.build()
    with batch_errors():
        ref = resolve_model(model)
        where = cohort(points, at, task if ref.kind == "fm" else None, path)
        with progress_bar("score", "shards") as update:
            frame = score_dataset(ref, path, out, task=load_task(task) if task else None, cohort=where,
                                  samples=samples, seed=seed, engine=engine, progress=update, actor=actor)  # fmt: skip
    mean = f", mean score {frame['score'].to_numpy().mean():.3f}" if frame.height else ""
    console.print(f"{frame.height:,} scores of {frame['subject_id'].n_unique():,} subjects{mean} in [cyan]{out}[/cyan]")


def register(app: typer.Typer) -> None:
    app.command()(embed)
    app.command()(score)
