"""The ``clinfm`` command line: one command per verb, each a thin call into the packages.

This module and ``serve`` are the only places that know about the terminal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clinfm import __version__
from clinfm.defaults import resolve

app = typer.Typer(
    help="ClinFM: ingest clinical records into MEDS, then build, validate and serve clinical foundation models.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
ingest_app = typer.Typer(help="Convert a source (OMOP, FHIR R4, MIMIC-IV, MEDS) into a MEDS dataset.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
registry_app = typer.Typer(help="Model registry: register, list, show, attach reports, promote through gates.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
monitor_app = typer.Typer(help="Silent-mode rehearsal and monitoring: replay, drift, performance, feedback.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")
access_app = typer.Typer(help="Organizations, users, roles and API keys.", no_args_is_help=True)
app.add_typer(access_app, name="access")

console = Console()
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("clinfm")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the MEDS dataset to (replaced atomically).")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes, one task each.")]
ShardsOpt = Annotated[int | None, typer.Option("--shards", min=1, help="Output shards (default: by input size).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the train/tuning/held_out split.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="local (processes) or ray (pip install 'clinfm\\[ray]').")]
RayAddressOpt = Annotated[str | None, typer.Option("--ray-address", help="Existing Ray cluster (default: start one).")]


def _version(value: bool) -> None:
    if value:
        console.print(f"clinfm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details (ids and counts only).")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def _progress_bar(label: str, unit: str, total: int | None = None):
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        bar = progress.add_task(label, total=total)
        yield lambda done, total=total: progress.update(bar, completed=done, total=total)


# --- ingest ----------------------------------------------------------------------------------------------
def _run_ingest(
    make_plan: Callable, out: Path, workers: int, shards: int | None, seed: int,
    engine: str = "local", ray_address: str | None = None,
):  # fmt: skip
    from clinfm.data.dataset import IngestError, build_dataset

    try:
        plan = make_plan()
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with _progress_bar(f"ingest {plan.source}", "tasks", total=len(plan.tasks)) as update:
        try:
            summary = build_dataset(plan, out, workers=workers, shards=shards, seed=seed, progress=update,
                                    engine=engine, ray_address=ray_address)  # fmt: skip
        except IngestError as exc:
            err.print(f"[red]error:[/red] {exc}\nThe previous dataset at {out} (if any) is unchanged.")
            raise typer.Exit(1) from exc
    _print_reconciliation(summary)
    if plan.ignored_files:
        console.print(f"[dim]Not converted (known, no events by design): {', '.join(plan.ignored_files)}[/dim]")
    return summary


def _print_reconciliation(summary) -> None:
    table = Table(title="Reconciliation: records read = converted + quarantined", title_justify="left")
    for col in ("table / resource", "read", "converted", "quarantined", ""):
        table.add_column(col, justify="left" if not col or col.startswith("table") else "right")
    for name, c in sorted(summary.reconciliation.items()):
        table.add_row(name, f"{c.read:,}", f"{c.converted:,}", f"{c.quarantined:,}", "ok" if c.balanced else "[red]MISMATCH")
    console.print(table)
    console.print(
        f"Wrote [bold]{summary.subjects:,}[/bold] subjects, [bold]{summary.events:,}[/bold] events, "
        f"{summary.codes:,} codes in {summary.shards} shard(s) to [cyan]{summary.path}[/cyan]"
    )
    if summary.quarantined:
        console.print(
            f"[yellow]{summary.quarantined:,} quarantine row(s)[/yellow] with reasons in "
            f"[cyan]{summary.path / 'quarantine.parquet'}[/cyan]"
        )


@ingest_app.command("omop")
def ingest_omop(
    out: OutOpt,
    duckdb_file: Annotated[Path | None, typer.Option("--duckdb", help="OMOP CDM in a DuckDB file.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Folder of OMOP CDM CSV files (person.csv, ...).")] = None,
    workers: WorkersOpt = 1,
    shards: ShardsOpt = None,
    seed: SeedOpt = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """OMOP CDM 5.3/5.4 to MEDS. With neither --duckdb nor --csv, reads the embedded Eunomia demo CDM."""
    from clinfm.data.ingest import omop

    _run_ingest(lambda: omop.plan(duckdb_file, csv_dir), out, workers, shards, seed, engine, ray_address)


@ingest_app.command("fhir")
def ingest_fhir(
    path: Annotated[Path, typer.Argument(help="FHIR R4 Bundles (*.json) or Bulk Data NDJSON (*.ndjson[.gz]): a file or folder.")],
    out: OutOpt,
    workers: WorkersOpt = 1,
    shards: ShardsOpt = None,
    seed: SeedOpt = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """FHIR R4 (Bundles or Bulk Data NDJSON, e.g. Synthea output) to MEDS."""
    from clinfm.data.ingest import fhir

    _run_ingest(lambda: fhir.plan(path), out, workers, shards, seed, engine, ray_address)


@ingest_app.command("mimic")
def ingest_mimic(
    path: Annotated[Path, typer.Argument(help="MIMIC-IV root folder holding hosp/ and icu/ CSV(.gz) tables.")],
    out: OutOpt,
    workers: WorkersOpt = 1,
    shards: ShardsOpt = None,
    seed: SeedOpt = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """MIMIC-IV (hosp/ and icu/ modules) to MEDS."""
    from clinfm.data.ingest import mimic

    _run_ingest(lambda: mimic.plan(path), out, workers, shards, seed, engine, ray_address)


@ingest_app.command("meds")
def ingest_meds(
    path: Annotated[Path, typer.Argument(help="An existing MEDS dataset folder (data/*.parquet).")],
    out: OutOpt,
    workers: WorkersOpt = 1,
    shards: ShardsOpt = None,
    seed: SeedOpt = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Validate and adopt an existing MEDS dataset (its splits and code descriptions are kept)."""
    from clinfm.data.ingest import meds

    _run_ingest(lambda: meds.plan(path), out, workers, shards, seed, engine, ray_address)


# --- looking at a dataset ------------------------------------------------------------------------------
@app.command()
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


@app.command()
def stats(
    path: Annotated[Path, typer.Argument(help="MEDS dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (machine-readable).")] = False,
    top: Annotated[int, typer.Option(help="How many of the most frequent codes to list.")] = 15,
) -> None:
    """Subjects, events, codes by vocabulary, time span and top codes of a dataset."""
    from clinfm.data.stats import dataset_stats

    try:
        s = dataset_stats(path, top=top)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(s, indent=2))
        return
    print_stats(s)


def print_stats(s: dict) -> None:
    console.print(
        f"[bold]{s['path']}[/bold]: {s['subjects']:,} subjects, {s['events']:,} events, {s['codes']:,} codes, "
        f"{s['shards']} shard(s); {s['time_span']['first']} to {s['time_span']['last']}; "
        f"median {s['events_per_subject_median']:.0f} events per subject; {s['quarantined']:,} quarantined"
    )
    if s["splits"]:
        console.print("splits: " + ", ".join(f"{k} {v:,}" for k, v in s["splits"].items()))
    vocab = Table(title="Codes by vocabulary", title_justify="left")
    for c in ("vocabulary", "events", "codes"):
        vocab.add_column(c, justify="left" if c == "vocabulary" else "right")
    for v in s["vocabularies"]:
        vocab.add_row(v["vocabulary"], f"{v['events']:,}", f"{v['codes']:,}")
    top = Table(title="Most frequent codes", title_justify="left")
    for c in ("code", "events", "description"):
        top.add_column(c, justify="right" if c == "events" else "left")
    for t in s["top_codes"]:
        top.add_row(t["code"], f"{t['events']:,}", t["description"] or "")
    console.print(vocab)
    console.print(top)


@app.command()
def timeline(
    path: Annotated[Path, typer.Argument(help="MEDS dataset folder.")],
    subject_id: Annotated[int, typer.Argument(help="Subject id (pseudonymous after de-identification).")],
    limit: Annotated[int, typer.Option(help="Show at most this many events (0: all).")] = 200,
    show_text: Annotated[bool, typer.Option("--show-text", help="Show note text (PHI before de-identification).")] = False,
) -> None:
    """A subject's timeline in the terminal, colour-coded by kind of event."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.data.timeline import render_timeline

    try:
        db = SubjectDatabase(path)
        subject = db[subject_id]
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except KeyError as exc:
        err.print(f"[red]error:[/red] subject {subject_id} is not in {path} ({len(db):,} subjects; try "
                  f"`clinfm stats {path}`)")  # fmt: skip
        raise typer.Exit(2) from exc
    console.print(render_timeline(subject, db.descriptions(), limit=limit, show_text=show_text))


# --- de-identification -----------------------------------------------------------------------------------
@app.command("deid-secret")
def deid_secret(path: Annotated[Path, typer.Argument(help="Where to write the new secret (mode 0600).")]) -> None:
    """Create a random de-identification secret. Keep it: the same secret gives the same pseudonyms."""
    from clinfm.deid.structured import create_secret

    try:
        create_secret(path)
    except FileExistsError as exc:
        err.print(f"[red]error:[/red] {path} already exists; refusing to overwrite a secret")
        raise typer.Exit(2) from exc
    console.print(f"Wrote a new secret to [cyan]{path}[/cyan] (mode 0600). Anyone holding it can link "
                  "pseudonyms back to source ids: store it like a password.")  # fmt: skip


@app.command()
def deid(
    path: Annotated[Path, typer.Argument(help="MEDS dataset to de-identify.")],
    out: OutOpt,
    secret_file: Annotated[Path | None, typer.Option("--secret-file", help="Secret key file (required).")] = None,
    policy: Annotated[str, typer.Option(help="shift (model building: dates shifted per subject) or safe-harbor.")] = "shift",
    workers: WorkersOpt = 1,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """De-identify a MEDS dataset: keyed pseudonyms, per-subject date shifts (or Safe Harbor), scrubbed notes."""
    from clinfm.deid.structured import POLICIES, SecretError, deidentify_dataset, read_secret

    if policy not in POLICIES:
        err.print(f"[red]error:[/red] --policy {policy!r} is not one of {', '.join(POLICIES)}")
        raise typer.Exit(2)
    try:
        secret = read_secret(secret_file)
    except SecretError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with _progress_bar("de-identify", "shards") as update:
        try:
            result = deidentify_dataset(path, out, secret, policy=policy, progress=update, workers=workers,  # type: ignore[arg-type]
                                        engine=engine, ray_address=ray_address)  # fmt: skip
        except (ValueError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    print_deid_summary(result)


def print_deid_summary(result) -> None:
    r = result.report
    table = Table(title=f"De-identification ({r['policy']})", title_justify="left")
    table.add_column("identifier")
    table.add_column("count", justify="right")
    for key, value in r["changed"].items():
        if key == "note_spans_by_label":
            value = sum(value.values())
            key = "note spans replaced"
        table.add_row(key.replace("_", " "), f"{value:,}")
    console.print(table)
    k = r["k_anonymity"]
    console.print(f"k-anonymity over {', '.join(k['quasi_identifiers']) or 'no quasi-identifiers'}: k = {k['k']}, "
                  f"{k.get('classes_below_threshold', 0)} classes below {k.get('threshold', '-')}")  # fmt: skip
    console.print(f"De-identified dataset: [cyan]{result.path}[/cyan]\nReport: [cyan]{result.path / 'deid_report.html'}[/cyan]")


@app.command("deid-text")
def deid_text(
    in_path: Annotated[Path, typer.Option("--in", help="JSONL input, one {\"id\", \"text\"} object a line.")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL output with spans (and text unless detect).")],
    mode: Annotated[str, typer.Option(help="detect, redact, tag or surrogate.")] = "redact",
    quarantine: Annotated[Path | None, typer.Option(help="Where bad lines go (default OUT.quarantine.jsonl).")] = None,
) -> None:
    """De-identify free text line by line, for any pipeline. Bad lines are quarantined, never fatal."""
    from clinfm.deid.textio import MODES, deid_jsonl

    if mode not in MODES:
        err.print(f"[red]error:[/red] --mode {mode!r} is not one of {', '.join(MODES)}")
        raise typer.Exit(2)
    if not in_path.is_file():
        err.print(f"[red]error:[/red] --in {str(in_path)!r} does not exist")
        raise typer.Exit(2)
    quarantine = quarantine or out_path.with_suffix(".quarantine.jsonl")
    with _progress_bar("deid-text", "lines", total=None) as update:
        counts = deid_jsonl(in_path, out_path, mode=mode, quarantine_path=quarantine, progress=lambda n: update(n, None))
    console.print(" ".join(f"{k}: {v:,}" for k, v in counts.items() if isinstance(v, int)))
    console.print(f"Output: [cyan]{out_path}[/cyan]" + (f"; quarantine: [cyan]{quarantine}[/cyan]" if counts.get("quarantined") else ""))


# --- the foundation model -----------------------------------------------------------------------------------
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Model config: a YAML path or a packaged size (fm-tiny, fm-small, fm-medium); default $CLINFM_MODEL_CONFIG, else fm-small.")]


@app.command()
def pretrain(
    path: Annotated[Path, typer.Argument(help="(De-identified) MEDS dataset to train on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, tokenizer, config, metrics.")],
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    prepare_only: Annotated[bool, typer.Option("--prepare-only", help="Only fit the tokenizer and write the windows (then train with torchrun).")] = False,
    workers: WorkersOpt = 1,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Pretrain the generative transformer on patient timelines (CPU by default, CUDA when present).

    Tokenization runs one task per shard on --workers processes or Ray; training then runs here. Several
    GPUs or nodes: prepare here, then torchrun -m clinfm.model.train DATASET --config C --out RUN
    """
    from clinfm.model.config import load_config
    from clinfm.model.corpus import prepare_corpus
    from clinfm.model.train import pretrain as run_pretraining

    if prepare_only:
        with _progress_bar("tokenize", "shards") as update:
            stats = prepare_corpus(path, load_config(config), out, workers=workers, engine=engine,
                                   ray_address=ray_address, progress=update)  # fmt: skip
        for split, s in stats.items():
            console.print(f"{split}: {s['subjects']:,} subjects, {s['events']:,} events, vocabulary {s['vocab_size']:,}")
        console.print(f"Windows in [cyan]{out / 'windows'}[/cyan]; train with the same --config and --out.")
        return
    result = _train_with_progress(lambda cb: run_pretraining(path, config, out, progress=cb, resume=resume, workers=workers,
                                                             engine=engine, ray_address=ray_address))  # fmt: skip
    _print_training(result)


def _train_with_progress(train):
    with Progress(
        TextColumn("[bold]pretrain[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
        TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        bar = progress.add_task("pretrain", total=None, loss=float("nan"), tps=0.0)

        def update(p) -> None:
            progress.update(bar, completed=p.step, total=p.max_steps, loss=p.loss, tps=p.tokens_per_s)

        return train(update)


def _print_training(result) -> None:
    tuning = result.tuning
    console.print(
        f"Trained {result.n_params:,} parameters for {result.steps} steps ({result.train_tokens_seen:,} tokens, "
        f"{result.tokens_per_s:,.0f} tok/s, {result.wall_s:.0f} s, world size {result.world_size}); "
        f"vocabulary {result.vocab_size:,}"
    )
    if tuning:
        acc = ", ".join(f"top-{k} {v:.2f}" for k, v in sorted(tuning.top_k_accuracy.items()))
        console.print(f"Held-out (tuning split): loss {tuning.loss:.3f}, [bold]perplexity {tuning.perplexity:.2f}[/bold]; "
                      f"next-code accuracy {acc}")  # fmt: skip
    console.print(f"Run folder: [cyan]{result.run_dir}[/cyan]")


@app.command()
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
    import datetime as dt

    from clinfm.data.store import SubjectDatabase
    from clinfm.model.generate import forecast as run_forecast

    db = SubjectDatabase(path)
    if subject_id not in db:
        err.print(f"[red]error:[/red] subject {subject_id} is not in {path}")
        raise typer.Exit(2)
    when = dt.datetime.fromisoformat(at) if at else max(e.time for e in db[subject_id].events if e.time)
    [fc] = run_forecast(run_dir, path, [(subject_id, when)], outcomes=tuple(outcome or ("death", "admission")),
                        horizon_days=horizon_days, n_samples=samples, seed=seed)  # fmt: skip
    print_forecast(fc)


def print_forecast(fc) -> None:
    table = Table(title=f"Forecast for subject {fc.subject_id} at {fc.prediction_time:%Y-%m-%d %H:%M}, "
                        f"{fc.horizon_days:g}-day horizon, {fc.samples} sampled futures", title_justify="left")  # fmt: skip
    for col in ("outcome", "probability", "95% interval"):
        table.add_column(col, justify="left" if col == "outcome" else "right")
    for o in fc.outcomes:
        table.add_row(o.outcome, f"{o.probability:.1%}", f"{o.ci_low:.1%} - {o.ci_high:.1%}")
    console.print(table)
    if fc.next_diagnoses:
        dx = Table(title="Expected next diagnoses", title_justify="left")
        for col in ("code", "probability", "description"):
            dx.add_column(col)
        for d in fc.next_diagnoses[:8]:
            dx.add_row(d.code, f"{d.probability:.1%}", d.description or "")
        console.print(dx)


# --- clinical reasoning ----------------------------------------------------------------------------------
@app.command()
def ddx(
    kb_path: Annotated[Path | None, typer.Option("--kb", help="DDXPlus-format knowledge base folder.")] = None,
    budget: Annotated[int | None, typer.Option(help="Ask at most this many questions.")] = 15,
    threshold: Annotated[float, typer.Option(help="Stop when the top diagnosis reaches this probability.")] = 0.9,
) -> None:
    """Interactive differential diagnosis in the terminal: answer questions, watch the ranking update."""
    from rich.prompt import Prompt

    from clinfm.reasoning import Explanation, load_knowledge_base, run_terminal

    try:
        kb = load_knowledge_base(kb_path)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

    def ask(prompt: str, options: list[str]) -> str:
        if not options:
            return Prompt.ask(f"[bold]{prompt}[/bold]", default="", console=console)
        for i, option in enumerate(options, 1):
            console.print(f"  [cyan]{i}[/cyan]. {option}")
        reply = Prompt.ask(f"[bold]{prompt}[/bold] (number or text; blank = don't know)", default="", console=console)
        return options[int(reply) - 1] if reply.isdigit() and 0 < int(reply) <= len(options) else reply

    def show(model) -> None:
        if isinstance(model, Explanation):
            console.rule("Explanation")
            console.print(model.text)
            return
        console.print(render_differential(model))

    run_terminal(ask, show, kb, budget=budget, confidence_threshold=threshold)


def render_differential(dx) -> Table:
    table = Table(title="Differential" + (f"  [yellow](insufficient evidence: {dx.abstention_reason})[/yellow]"
                                          if dx.abstained else ""), title_justify="left")  # fmt: skip
    for col in ("#", "pathology", "probability", "", "for", "against"):
        table.add_column(col, justify="right" if col in ("#", "probability") else "left")
    for c in dx.candidates:
        table.add_row(
            str(c.rank), c.pathology, f"{c.probability:.1%}", "[red bold]can't miss[/red bold]" if c.cant_miss else "",
            "; ".join(f"{f.question} {f.answer}" for f in c.findings_for[:2]),
            "; ".join(f"{f.question} {f.answer}" for f in c.findings_against[:2]),
        )  # fmt: skip
    return table


@app.command("treatment-check")
def treatment_check(
    medications: Annotated[list[str], typer.Argument(help="Medications (names or RxNorm codes).")],
    allergy: Annotated[list[str] | None, typer.Option("--allergy", help="An allergy (repeat for several).")] = None,
    egfr: Annotated[float | None, typer.Option(help="Latest eGFR, mL/min/1.73m2.")] = None,
    creatinine: Annotated[float | None, typer.Option(help="Latest serum creatinine, mg/dL (with --age, --sex).")] = None,
    age: Annotated[int | None, typer.Option()] = None,
    sex: Annotated[str | None, typer.Option(help="female or male")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Safety checks on a medication list: allergies, interactions, renal dosing, duplicate therapy."""
    from clinfm.reasoning import check_treatment

    result = check_treatment(medications, allergies=allergy or [], egfr=egfr, creatinine=creatinine, age=age, sex=sex)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    findings = Table(title="Medication safety", title_justify="left")
    for col in ("kind", "severity", "finding", "source"):
        findings.add_column(col)
    for a in result.allergy_conflicts:
        findings.add_row("allergy", a.severity, f"{a.medication} vs allergy {a.allergy} ({a.relation}): {a.risk}", a.source)
    for i in result.interactions:
        findings.add_row("interaction", i.severity, f"{i.ingredient_a} + {i.ingredient_b}: {i.effect}", i.source)
    for r in result.renal_flags:
        findings.add_row("renal", r.severity, f"{r.medication} at eGFR {r.egfr:.0f} ({r.rule}): {r.action}", r.source)
    for d in result.duplicates:
        findings.add_row("duplicate", d.severity, f"{', '.join(d.medications)}: {d.reason}", "")
    console.print(findings)
    if result.unmatched:
        console.print(f"[yellow]Not recognised (not checked):[/yellow] {', '.join(result.unmatched)}")
    for w in result.warnings:
        console.print(f"[dim]{w}[/dim]")
    console.print("[green]No finding at moderate severity or above.[/green]" if result.safe
                  else f"Highest severity: [red]{result.highest_severity}[/red]")  # fmt: skip


# --- governance ------------------------------------------------------------------------------------------
ActorOpt = Annotated[str, typer.Option("--actor", help="Who is acting (a registered user, recorded in the audit log).")]
OrgOpt = Annotated[str, typer.Option("--org", help="Organization (tenant).")]


@contextmanager
def _govern_errors():
    """Governance refusals and unknown ids end the command with their message and exit status 2."""
    try:
        yield
    except (KeyError, LookupError, ValueError, PermissionError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


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

    with _govern_errors():
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

    with _govern_errors():
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

    with _govern_errors():
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

    with _govern_errors():
        try:
            v = promote(version_id, to, actor, reason)
        except GateError as exc:  # a refusal (exit 1) is not an error in the request (exit 2)
            err.print(f"[red]refused:[/red] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"{v.name} v{v.version} is now [bold]{v.state}[/bold]")


@app.command()
def card(
    version_id: Annotated[str, typer.Argument(help="Model version id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for card.md, card.html and card.json.")] = Path("model-cards"),
) -> None:
    """Generate the model card (Markdown, HTML, JSON) from the registry, with the 31 HTI-1 source attributes."""
    from clinfm.govern import write_card

    with _govern_errors():
        paths = write_card(version_id, out / version_id)
    for fmt, path in paths.items():
        console.print(f"{fmt}: [cyan]{path}[/cyan]")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit hash chain; name the first altered, missing or reordered entry."""
    from clinfm.govern import verify_chain

    result = verify_chain()
    if result.ok:
        console.print(f"[green]audit chain intact[/green]: {result.entries:,} entries")
        return
    err.print(f"[red]audit chain broken[/red] at entry {result.seq} ({result.problem}): {result.message}")
    raise typer.Exit(1)


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

    with _govern_errors():
        create_user(org, username, role, actor=actor)
    console.print(f"User [bold]{username}[/bold] in {org} with roles {', '.join(role)}")


@access_app.command("create-key")
def access_create_key(
    org: Annotated[str, typer.Argument()],
    username: Annotated[str, typer.Argument()],
    scope: Annotated[list[str], typer.Option("--scope", help="SMART v2 scope, e.g. system/RiskAssessment.rs")],
    rate: Annotated[int, typer.Option(help="Requests per minute.")] = 60,
    days: Annotated[int | None, typer.Option(help="Expires after this many days.")] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Create an API key; it is printed once and stored only as a salted hash."""
    import datetime as dt

    from clinfm.govern import create_api_key

    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days) if days else None
    with _govern_errors():
        issued = create_api_key(org, username, scope, actor=actor, rate_per_minute=rate, expires_at=expires)
    console.print(f"API key (shown once, store it now): [bold]{issued.key}[/bold]\nkey id: {issued.key_id}")



# --- batch jobs over a whole dataset --------------------------------------------------------------------------
def _cohort(points: Path | None, at: str | None, task: str | None, path: Path):
    """--points, --at or --task: exactly one names the prediction points (a task may also define the risk)."""
    from clinfm.batch import Cohort, task_cohort
    from clinfm.tasks.config import load_task

    if points is not None and at is not None:
        err.print("[red]error:[/red] give --points or --at, not both")
        raise typer.Exit(2)
    if points is not None:
        if not points.exists():
            err.print(f"[red]error:[/red] points file {points} does not exist")
            raise typer.Exit(2)
        return Cohort(points_file=str(points))
    if at is not None:
        return Cohort(at=_parse_time(at, "--at"))
    return task_cohort(load_task(task), path) if task is not None else None


PointsOpt = Annotated[Path | None, typer.Option("--points", help="Parquet or CSV of subject_id, prediction_time.")]
AtOpt = Annotated[str | None, typer.Option("--at", help="One prediction time for every subject with a record by then.")]


@app.command()
def embed(
    run_dir: Annotated[Path, typer.Argument(help="Trained foundation-model run folder.")],
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file: subject_id, prediction_time, n_tokens, last, mean.")],
    task: Annotated[str | None, typer.Option("--task", help="Embed at this task's prediction times.")] = None,
    points: PointsOpt = None,
    at: AtOpt = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    workers: WorkersOpt = 1,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Export patient embeddings (the model's hidden state of the history up to each prediction time)."""
    from clinfm.batch import export_embeddings

    with _batch_errors():
        if sum(x is not None for x in (task, points, at)) != 1:
            err.print("[red]error:[/red] say where to embed with one of --task, --points or --at")
            raise typer.Exit(2)
        cohort = _cohort(points, at, task, path)
        with _progress_bar("embed", "shards") as update:
            frame = export_embeddings(run_dir, path, cohort, out, batch_size=batch_size, workers=workers,
                                      engine=engine, ray_address=ray_address, progress=update)  # fmt: skip
    console.print(f"{frame.height:,} embeddings of {frame['subject_id'].n_unique():,} subjects in [cyan]{out}[/cyan]")


@app.command()
def score(
    model: Annotated[str, typer.Argument(help="Registered version id, or a run folder (count model or foundation model).")],
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file: subject_id, prediction_time, score.")],
    task: Annotated[str | None, typer.Option("--task", help="Foundation model: the task whose outcome is the risk.")] = None,
    points: PointsOpt = None,
    at: AtOpt = None,
    samples: Annotated[int, typer.Option(min=1, help="Foundation model: sampled futures per point.")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    workers: WorkersOpt = 1,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actor: ActorOpt = "cli",
) -> None:
    """Score a whole dataset with a model (default points: the task's prediction times), shard by shard."""
    from clinfm.batch import resolve_model, score_dataset
    from clinfm.tasks.config import load_task

    with _batch_errors():
        ref = resolve_model(model)
        cohort = _cohort(points, at, task if ref.kind == "fm" else None, path)
        with _progress_bar("score", "shards") as update:
            frame = score_dataset(ref, path, out, task=load_task(task) if task else None, cohort=cohort,
                                  samples=samples, seed=seed, workers=workers, engine=engine,
                                  ray_address=ray_address, progress=update, actor=actor)  # fmt: skip
    mean = f", mean score {frame['score'].mean():.3f}" if frame.height else ""
    console.print(f"{frame.height:,} scores of {frame['subject_id'].n_unique():,} subjects{mean} in [cyan]{out}[/cyan]")


@contextmanager
def _batch_errors():
    from clinfm.batch import BatchError
    from clinfm.data.dataset import IngestError

    try:
        yield
    except (BatchError, IngestError, ValueError, LookupError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

# --- monitoring and controlled change -------------------------------------------------------------------
def _parse_time(value: str, name: str):
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {name} {value!r} is not a date (expected YYYY-MM-DD or an ISO date-time)")
        raise typer.Exit(2) from exc


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

    with _progress_bar("replay", "steps") as update:
        try:
            summary = replay(path, model, task, _parse_time(start, "--from"), _parse_time(end, "--to"), every,
                             progress=update)  # fmt: skip
        except (ValueError, LookupError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
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


@app.command()
def retrain(
    path: Annotated[Path, typer.Argument(help="MEDS dataset with the newer data.")],
    incumbent: Annotated[str, typer.Option("--incumbent", help="Model version in use.")],
    plan: Annotated[Path | None, typer.Option("--plan", help="Change-control plan (YAML); default $CLINFM_CHANGE_PLAN, else the packaged change-plan.yaml.")] = None,
) -> None:
    """Build a candidate under a predetermined change plan and compare it with the incumbent (paired bootstrap)."""
    from clinfm.monitor import retrain as run_retrain

    with _progress_bar("retrain", "steps") as update:
        try:
            decision = run_retrain(plan, path, incumbent, progress=update)
        except (ValueError, LookupError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    console.print_json(data=decision.as_dict())


# --- serving -------------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Start the API (REST + OpenAPI, CDS Hooks, FHIR) and the clinician web page. Settings: CLINFM_* variables."""
    from pydantic import ValidationError

    from clinfm.serve import ServeSettings, run

    try:
        settings = ServeSettings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"Web page: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    run(host, port, settings)


# --- evaluation --------------------------------------------------------------------------------------------
@app.command()
def evaluate(
    path: Annotated[Path, typer.Argument(help="MEDS dataset.")],
    task: Annotated[str, typer.Option("--task", help="Task name (a packaged task, or NAME.yaml in $CLINFM_TASKS_DIR) or a YAML path.")],
    report: Annotated[Path, typer.Option("--report", help="HTML report to write (a .json twin is written beside it).")],
    models: Annotated[list[str] | None, typer.Option("--models", help="count_gbm, count_lr, fm_probe, fm_zeroshot")] = None,
    fm_run: Annotated[Path | None, typer.Option("--fm-run", help="Foundation-model run folder for fm_* models.")] = None,
    split: Annotated[str, typer.Option(help="subject, cv, temporal or external.")] = "subject",
    recalibrate: Annotated[str | None, typer.Option(help="platt or isotonic (fitted on the tuning split).")] = None,
) -> None:
    """Validate models on a prediction task against baselines: CIs, calibration, decision curves, fairness."""
    from clinfm.validate.evaluate import DEFAULT_MODELS
    from clinfm.validate.evaluate import evaluate as run_evaluation

    with _progress_bar("evaluate", "steps") as update:
        try:
            run_evaluation(path, task, models or list(DEFAULT_MODELS), report, progress=update,
                                    fm_run_dir=fm_run, split=split, recalibrate=recalibrate)  # fmt: skip
        except (ValueError, FileNotFoundError, LookupError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    print_evaluation(report)


def print_evaluation(report: Path) -> None:
    data = json.loads(Path(report).with_suffix(".json").read_text())
    table = Table(title=f"Task {data['task']}: held-out performance (95% bootstrap CI)", title_justify="left")
    for col in ("model", "AUROC", "AUPRC", "Brier", "ECE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in data["models"].items():
        cell = lambda k: (f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}-{m[k]['ci'][1]:.3f})"  # noqa: E731
                          if isinstance(m.get(k), dict) and m[k].get("ci") else "-")  # fmt: skip
        table.add_row(name, cell("auroc"), cell("auprc"), cell("brier"), cell("ece"))
    console.print(table)
    console.print(f"Report: [cyan]{report}[/cyan]  (JSON twin: {Path(report).with_suffix('.json')})")


# --- the demo --------------------------------------------------------------------------------------------
DEMO_TASK = "new_stroke"  # Eunomia has no deaths and no long stays; stroke has ~90 positives


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes.")] = Path("demo-output"),
    workers: WorkersOpt = 1,
    config: ConfigOpt = None,
    task: Annotated[str, typer.Option("--task", help="Validation task.")] = DEMO_TASK,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="End by starting the server.")] = True,
    port: Annotated[int, typer.Option(help="Port for the server.")] = 8000,
) -> None:
    """The main job on the embedded Eunomia data: ingest, de-identify, pretrain, validate, govern, serve."""
    out = out.resolve()
    os.environ.setdefault("CLINFM_HOME", str(out / "clinfm-home"))
    raw, deid_dir, run_dir = out / "eunomia-meds", out / "eunomia-deid", out / "fm-run"
    secret_file = out / "deid.secret"
    made: list[tuple[str, Path | str]] = []

    console.rule("[bold]1. Ingest the embedded Eunomia OMOP CDM into MEDS")
    from clinfm.data.ingest import omop

    _run_ingest(lambda: omop.plan(), raw, workers, None, 0)
    made.append(("Source MEDS dataset (identified)", raw))

    console.rule("[bold]2. De-identify (keyed pseudonyms, per-subject date shifts, notes scrubbed)")
    _demo_deid(raw, deid_dir, secret_file)
    made += [("De-identified dataset", deid_dir), ("De-identification report", deid_dir / "deid_report.html")]

    console.rule("[bold]3. Statistics and one patient's timeline (pseudonymous id, shifted dates)")
    sid = _demo_look(deid_dir, out)

    console.rule("[bold]4. Pretrain the foundation model on the de-identified data")
    from clinfm.model.train import pretrain as run_pretraining

    result = _train_with_progress(lambda cb: run_pretraining(deid_dir, config, run_dir, progress=cb))
    _print_training(result)
    _demo_rollout(run_dir, deid_dir, sid)
    made.append(("Model run (safetensors + tokenizer + config)", run_dir))

    console.rule(f"[bold]5. Validate on the task {task!r} against baselines")
    report = out / f"validation-{task}.html"
    validation = _demo_validate(deid_dir, task, run_dir, report)
    if validation:
        made.append(("Validation report", report))

    console.rule("[bold]6. Govern: register, gate, approve, model card, API key")
    key, card_paths = _demo_govern(run_dir, deid_dir, validation)
    made += [("Model card", card_paths.get("html", "")), ("Registry and audit log", os.environ["CLINFM_HOME"])]

    console.rule("[bold green]Done")
    for label, path in made:
        console.print(f"{label + ':':<48} [cyan]{path}[/cyan]")
    console.print(f"Next: [bold]clinfm timeline {deid_dir} {sid}[/bold]   [bold]clinfm ddx[/bold]   "
                  f"[bold]clinfm registry list[/bold]   [bold]clinfm audit verify[/bold] (with CLINFM_HOME={os.environ['CLINFM_HOME']})")  # fmt: skip
    if serve_after:
        _demo_serve(deid_dir, run_dir, secret_file, key, port, sid)


def _demo_deid(raw: Path, deid_dir: Path, secret_file: Path) -> None:
    from clinfm.deid.structured import create_secret, deidentify_dataset, read_secret

    if not secret_file.exists():
        create_secret(secret_file)
        console.print(f"Created a de-identification secret at [cyan]{secret_file}[/cyan] (mode 0600); keep it safe.")
    with _progress_bar("de-identify", "shards") as update:
        result = deidentify_dataset(raw, deid_dir, read_secret(secret_file), policy="shift", progress=update)
    print_deid_summary(result)


def _demo_look(deid_dir: Path, out: Path) -> int:
    from clinfm.data.stats import dataset_stats
    from clinfm.data.store import SubjectDatabase
    from clinfm.data.timeline import render_timeline

    s = dataset_stats(deid_dir)
    print_stats(s)
    (out / "eunomia-deid-stats.json").write_text(json.dumps(s, indent=2))
    db = SubjectDatabase(deid_dir)
    sid = _typical_subject(db)
    console.print(render_timeline(db[sid], db.descriptions(), limit=25))
    return sid


def _demo_rollout(run_dir: Path, deid_dir: Path, sid: int) -> None:
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.generate import sample_rollout
    from clinfm.model.train import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir)
    db = SubjectDatabase(deid_dir)
    table = db.table(sid)
    times = [t for t in table.column("time").to_pylist() if t is not None]
    cut = times[len(times) // 2]
    descriptions = db.descriptions()
    events = sample_rollout(model, tokenizer, table, cut, max_new_tokens=40, seed=0)
    table = Table(title=f"A sampled future for subject {sid} after {cut:%Y-%m-%d} (simulated, not a prediction "
                        "to act on)", title_justify="left", box=None)  # fmt: skip
    for col in ("simulated date", "code", "description"):
        table.add_column(col, overflow="fold")
    for when, code in events[:15]:
        table.add_row(f"{when:%Y-%m-%d}", code, descriptions.get(code, ""))
    console.print(table)


def _demo_validate(deid_dir: Path, task: str, run_dir: Path, report: Path) -> dict | None:
    from clinfm.validate.evaluate import evaluate as run_evaluation

    try:
        with _progress_bar("evaluate", "steps") as update:
            # 5-fold subject-level CV: the 10% held-out split of 2,694 subjects holds too few positives
            run_evaluation(deid_dir, task, ["count_gbm", "count_lr", "fm_probe"], report, progress=update,
                           fm_run_dir=run_dir, split="cv")  # fmt: skip
    except (ValueError, LookupError) as exc:
        err.print(f"[yellow]validation skipped:[/yellow] {exc}")
        return None
    data = json.loads(report.with_suffix(".json").read_text())
    for name, m in data["models"].items():
        auroc = m.get("auroc") or {}
        if auroc.get("ci"):
            console.print(f"  {name:<12} AUROC {auroc['value']:.3f} (95% CI {auroc['ci'][0]:.3f}-{auroc['ci'][1]:.3f})")
    return data




def _demo_govern(run_dir: Path, deid_dir: Path, validation: dict | None) -> tuple[str, dict]:
    """Register, try the default gate (it may refuse, and says why), then rehearse silent mode under the
    labelled demo-only policy: silent mode computes and logs predictions but shows clinicians nothing."""
    from clinfm.govern import GateError, bootstrap_demo, promote, write_card
    from clinfm.govern.demo import SCIENTIST

    boot = bootstrap_demo(run_dir, deid_dir, validation, primary_model="fm_probe")
    version, owner = boot["model_version_id"], boot["clinical_owner"]
    console.print(f"Registered [bold]{boot['model']}[/bold] ({version}) in organization {boot['org']}: "
                  f"state [bold]{boot['state']}[/bold]")  # fmt: skip
    for failure in boot["gate_failures"]:
        console.print(f"  [yellow]default policy refused 'validated':[/yellow] {failure}")
    try:
        if boot["state"] == "draft" and validation is not None:
            promote(version, "validated", SCIENTIST, "Demo: rehearsal under the packaged demo-lifecycle-policy.yaml "
                    "(DEMO ONLY thresholds)", policy=resolve("demo_lifecycle_policy"))  # fmt: skip
            console.print("  [dim]validated under the DEMO-ONLY policy (demo-lifecycle-policy.yaml) to "
                          "rehearse silent mode; a real model must pass lifecycle-policy.yaml[/dim]")  # fmt: skip
        v = promote(version, "silent", owner, "Demo: rehearse silent mode on de-identified demo data (no clinical use)",
                    policy=resolve("demo_lifecycle_policy"))  # fmt: skip
        console.print(f"Approved by the demo clinical owner [bold]{owner}[/bold]: state [bold]{v.state}[/bold] "
                      "(predictions are computed and logged; no CDS cards)")  # fmt: skip
    except GateError as exc:
        console.print(f"[yellow]gate refused:[/yellow] {exc}")
    card_paths = write_card(version, Path(boot["card_paths"]["html"]).parent)
    console.print(f"Demo API key (shown once): [bold]{boot['api_key']}[/bold]")
    return boot["api_key"], card_paths


def _demo_serve(deid_dir: Path, run_dir: Path, secret_file: Path, key: str, port: int, sid: int) -> None:
    from clinfm.serve import ServeSettings, run

    settings = ServeSettings(dataset_path=deid_dir, dataset_org="demo", model_run_dir=run_dir,
                             tenant_secret_file=secret_file, data_dir=deid_dir.parent / "serve-data")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    console.rule("[bold]7. Serving (Ctrl-C to stop)")
    console.print(f"Web page:  [cyan]{base}/[/cyan]  (log in with the API key)\nAPI docs:  [cyan]{base}/docs[/cyan]\n"
                  f"API key:   [bold]{key}[/bold]\nA patient: [bold]{sid}[/bold] (pseudonymous id to type on the web page)\nTry:       curl -H 'Authorization: Bearer {key}' {base}/v1/models")  # fmt: skip
    run("127.0.0.1", port, settings)


def _typical_subject(db) -> int:
    """A subject with a visit and a median-sized record: a readable example."""
    from clinfm import schema

    ids = list(db)
    sizes = sorted((len(db.table(s)), s) for s in ids[: min(len(ids), 500)])
    for n, sid in sizes[len(sizes) // 2 :]:
        codes = db.table(sid).column(schema.CODE).to_pylist()
        if any(c.startswith("VISIT//") for c in codes):
            return sid
    return sizes[len(sizes) // 2][1]

# --- assistant evaluation suite and FHIR code domains (issue 17): commands live in clinfm.agentbench.cli ------
from clinfm.agentbench import cli as _agentbench_cli  # noqa: E402

_agentbench_cli.register(app)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    app()
