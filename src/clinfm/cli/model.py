"""``clinfm pretrain|forecast``: train the foundation model, sample a subject's futures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import ConfigOpt, EngineOptions, console, fail, options, parse_time, progress_bar


@options
def pretrain(
    path: Annotated[Path, typer.Argument(help="(De-identified) MEDS dataset to train on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, tokenizer, config, metrics.")],
    run: EngineOptions,
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    init: Annotated[Path | None, typer.Option("--init", help="Continue pretraining a trained run folder (its weights, tokenizer and architecture) on this dataset.")] = None,
    prepare_only: Annotated[bool, typer.Option("--prepare-only", help="Only fit the tokenizer and write the windows (then train with torchrun).")] = False,
) -> None:
    """Pretrain the generative transformer on patient timelines (CPU by default, CUDA when present).

    Tokenization runs one task per shard on --workers processes or Ray; training then runs here. Several
    GPUs or nodes: prepare here, then torchrun -m clinfm.model.train DATASET --config C --out RUN
    """
    from clinfm.model.config import load_config
    from clinfm.model.corpus import prepare_corpus
    from clinfm.model.train import pretrain as run_pretraining

    from clinfm.model.train import continued_config

    engine = run.build()
    try:
        cfg = load_config(config)
        if init is not None:
            cfg = continued_config(cfg, init)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if prepare_only:
        with progress_bar("tokenize", "shards") as update:
            stats = prepare_corpus(path, cfg, out, engine=engine, progress=update, tokenizer_from=init)
        for split, s in stats.items():
            console.print(f"{split}: {s['subjects']:,} subjects, {s['events']:,} events, vocabulary {s['vocab_size']:,}")
        console.print(f"Windows in [cyan]{out / 'windows'}[/cyan]; train with the same --config and --out.")
        return
    result = render.train_with_progress(lambda cb: run_pretraining(path, cfg, out, progress=cb, resume=resume, engine=engine, init=init))
    render.training(result)


def forecast(
    run_dir: Annotated[Path, typer.Argument(help="Trained run folder.")],
    path: Annotated[Path, typer.Argument(help="MEDS dataset holding the subject.")],
    subject_id: Annotated[int, typer.Argument()],
    at: Annotated[str | None, typer.Option("--at", help="Prediction time (ISO); default: the last event.")] = None,
    outcome: Annotated[list[str] | None, typer.Option("--outcome", help="death, admission, or a code glob like ICD10CM//I50*")] = None,
    horizon_days: Annotated[float, typer.Option(help="Horizon in simulated days.")] = 365.0,
    samples: Annotated[int, typer.Option(help="Sampled futures.")] = 64,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Forecast a subject by sampling futures: outcome probabilities with 95% intervals, likely next diagnoses."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.generate import forecast as run_forecast

    db = SubjectDatabase(path)
    if subject_id not in db:
        fail(f"subject {subject_id} is not in {path}")
    when = parse_time(at, "--at") if at else max(e.time for e in db[subject_id].events if e.time)
    [fc] = run_forecast(run_dir, path, [(subject_id, when)], outcomes=tuple(outcome or ("death", "admission")),
                        horizon_days=horizon_days, n_samples=samples, seed=seed)  # fmt: skip
    render.forecast(fc)


def register(app: typer.Typer) -> None:
    app.command()(pretrain)
    app.command()(forecast)
