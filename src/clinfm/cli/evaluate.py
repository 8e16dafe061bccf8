"""``clinfm evaluate``: validate models on a prediction task against baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import TaskOpt, errors_exit, progress_bar


def evaluate(
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    task: TaskOpt,
    report: Annotated[Path, typer.Option("--report", help="HTML report to write (a .json twin is written beside it).")],
    models: Annotated[list[str] | None, typer.Option("--models", help="count_gbm, count_lr, fm_probe, fm_zeroshot")] = None,
    fm_run: Annotated[Path | None, typer.Option("--fm-run", help="Foundation-model run folder for fm_* models.")] = None,
    split: Annotated[str, typer.Option(help="subject, cv, temporal or external.")] = "subject",
    recalibrate: Annotated[str | None, typer.Option(help="platt or isotonic (fitted on the tuning split).")] = None,
) -> None:
    """Validate models on a prediction task against baselines: CIs, calibration, decision curves, fairness."""
    from clinfm.validate.evaluate import DEFAULT_MODELS, InsufficientPositivesError
    from clinfm.validate.evaluate import evaluate as run_evaluation

    refusals = (ValueError, FileNotFoundError, LookupError, InsufficientPositivesError)
    with progress_bar("evaluate", "steps") as update, errors_exit(*refusals):
        run_evaluation(path, task, models or list(DEFAULT_MODELS), report, progress=update,
                       fm_run_dir=fm_run, split=split, recalibrate=recalibrate)  # fmt: skip
    render.evaluation(report)


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
