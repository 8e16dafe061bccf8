"""``clinfm demo``: the main job on the embedded Eunomia data, step by step: ingest, de-identify, pretrain,
validate, govern, serve."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from clinfm.cli import render
from clinfm.cli.common import ConfigOpt, EngineOptions, IngestOptions, console, err, progress_bar
from clinfm.cli.ingest import run_ingest
from clinfm.defaults import resolve

if TYPE_CHECKING:
    from clinfm.data.store import SubjectDatabase

DEMO_TASK = "new_stroke"  # Eunomia has no deaths and no long stays; stroke has ~90 positives


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes.")] = Path("demo-output"),
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes for the ingest.")] = 1,
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

    run_ingest(lambda: omop.plan(), IngestOptions(raw), EngineOptions(workers=workers))
    made.append(("Source MEDS dataset (identified)", raw))

    console.rule("[bold]2. De-identify (keyed pseudonyms, per-subject date shifts, notes scrubbed)")
    _deid(raw, deid_dir, secret_file)
    made += [("De-identified dataset", deid_dir), ("De-identification report", deid_dir / "deid_report.html")]

    console.rule("[bold]3. Statistics and one patient's timeline (pseudonymous id, shifted dates)")
    sid = _look(deid_dir, out)

    console.rule("[bold]4. Pretrain the foundation model on the de-identified data")
    from clinfm.model.train import pretrain as run_pretraining

    result = render.train_with_progress(lambda cb: run_pretraining(deid_dir, config, run_dir, progress=cb))
    render.training(result)
    _rollout(run_dir, deid_dir, sid)
    made.append(("Model run (safetensors + tokenizer + config)", run_dir))

    console.rule(f"[bold]5. Validate on the task {task!r} against baselines")
    report = out / f"validation-{task}.html"
    validation = _validate(deid_dir, task, run_dir, report)
    if validation:
        made.append(("Validation report", report))

    console.rule("[bold]6. Govern: register, gate, approve, model card, API key")
    key, card_paths = _govern(run_dir, deid_dir, validation)
    made += [("Model card", card_paths.get("html", "")), ("Registry and audit log", os.environ["CLINFM_HOME"])]

    console.rule("[bold]7. Ask the embedded clinical assistant about the demo patient (verified, cited)")
    from clinfm.cli.assist import demo_question

    demo_question(deid_dir, sid)

    console.rule("[bold green]Done")
    for label, path in made:
        console.print(f"{label + ':':<48} [cyan]{path}[/cyan]")
    console.print(f"Next: [bold]clinfm timeline {deid_dir} {sid}[/bold]   [bold]clinfm ddx[/bold]   "
                  f"[bold]clinfm registry list[/bold]   [bold]clinfm audit verify[/bold] (with CLINFM_HOME={os.environ['CLINFM_HOME']})")  # fmt: skip
    if serve_after:
        _serve(deid_dir, run_dir, secret_file, key, port, sid)


def _deid(raw: Path, deid_dir: Path, secret_file: Path) -> None:
    from clinfm.deid.structured import create_secret, deidentify_dataset, read_secret

    if not secret_file.exists():
        create_secret(secret_file)
        console.print(f"Created a de-identification secret at [cyan]{secret_file}[/cyan] (mode 0600); keep it safe.")
    with progress_bar("de-identify", "shards") as update:
        result = deidentify_dataset(raw, deid_dir, read_secret(secret_file), policy="shift", progress=update)
    render.deid_summary(result)


def _look(deid_dir: Path, out: Path) -> int:
    from clinfm.data.stats import dataset_stats
    from clinfm.data.store import SubjectDatabase
    from clinfm.data.timeline import render_timeline

    s = dataset_stats(deid_dir)
    render.stats(s)
    (out / "eunomia-deid-stats.json").write_text(json.dumps(s, indent=2))
    db = SubjectDatabase(deid_dir)
    sid = _typical_subject(db)
    console.print(render_timeline(db[sid], db.descriptions(), limit=25))
    return sid


def _rollout(run_dir: Path, deid_dir: Path, sid: int) -> None:
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.checkpoint import load_checkpoint
    from clinfm.model.generate import sample_rollout

    model, tokenizer, _ = load_checkpoint(run_dir)
    db = SubjectDatabase(deid_dir)
    record = db.table(sid)
    times = [t for t in record.column("time").to_pylist() if t is not None]
    cut = times[len(times) // 2]
    descriptions = db.descriptions()
    events = sample_rollout(model, tokenizer, record, cut, max_new_tokens=40, seed=0)
    table = Table(title=f"A sampled future for subject {sid} after {cut:%Y-%m-%d} (simulated, not a prediction "
                        "to act on)", title_justify="left", box=None)  # fmt: skip
    for col in ("simulated date", "code", "description"):
        table.add_column(col, overflow="fold")
    for when, code in events[:15]:
        table.add_row(f"{when:%Y-%m-%d}", code, descriptions.get(code, ""))
    console.print(table)


def _validate(deid_dir: Path, task: str, run_dir: Path, report: Path) -> dict[str, Any] | None:
    from clinfm.validate.evaluate import InsufficientPositivesError
    from clinfm.validate.evaluate import evaluate as run_evaluation

    try:
        with progress_bar("evaluate", "steps") as update:
            # 5-fold subject-level CV: the 10% held-out split of 2,694 subjects holds too few positives
            run_evaluation(deid_dir, task, ["count_gbm", "count_lr", "fm_probe"], report, progress=update,
                           fm_run_dir=run_dir, split="cv")  # fmt: skip
    except (ValueError, LookupError, InsufficientPositivesError) as exc:
        err.print(f"[yellow]validation skipped:[/yellow] {exc}")
        return None
    return render.evaluation(report)


def _govern(run_dir: Path, deid_dir: Path, validation: dict[str, Any] | None) -> tuple[str, dict[str, Path]]:
    """Register, try the default gate (it may refuse, and says why), then rehearse silent mode under the
    labelled demo-only policy: silent mode computes and logs predictions but shows clinicians nothing."""
    from clinfm.govern import GateError, bootstrap_demo, promote, write_card
    from clinfm.govern.demo import SCIENTIST

    demo_policy = resolve("demo_lifecycle_policy")
    boot = bootstrap_demo(run_dir, deid_dir, validation, primary_model="fm_probe")
    version, owner = boot["model_version_id"], boot["clinical_owner"]
    console.print(f"Registered [bold]{boot['model']}[/bold] ({version}) in organization {boot['org']}: "
                  f"state [bold]{boot['state']}[/bold]")  # fmt: skip
    for failure in boot["gate_failures"]:
        console.print(f"  [yellow]default policy refused 'validated':[/yellow] {failure}")
    try:
        if boot["state"] == "draft" and validation is not None:
            promote(version, "validated", SCIENTIST, "Demo: rehearsal under the packaged demo-lifecycle-policy.yaml "
                    "(DEMO ONLY thresholds)", policy=demo_policy)  # fmt: skip
            console.print("  [dim]validated under the DEMO-ONLY policy (demo-lifecycle-policy.yaml) to "
                          "rehearse silent mode; a real model must pass lifecycle-policy.yaml[/dim]")  # fmt: skip
        v = promote(version, "silent", owner, "Demo: rehearse silent mode on de-identified demo data (no clinical use)",
                    policy=demo_policy)  # fmt: skip
        console.print(f"Approved by the demo clinical owner [bold]{owner}[/bold]: state [bold]{v.state}[/bold] "
                      "(predictions are computed and logged; no CDS cards)")  # fmt: skip
    except GateError as exc:
        console.print(f"[yellow]gate refused:[/yellow] {exc}")
    card_paths = write_card(version, Path(boot["card_paths"]["html"]).parent)
    console.print(f"Demo API key (shown once): [bold]{boot['api_key']}[/bold]")
    return boot["api_key"], card_paths


def _serve(deid_dir: Path, run_dir: Path, secret_file: Path, key: str, port: int, sid: int) -> None:
    from clinfm.serve import ServeSettings, run

    settings = ServeSettings(dataset_path=deid_dir, dataset_org="demo", model_run_dir=run_dir,
                             tenant_secret_file=secret_file, data_dir=deid_dir.parent / "serve-data")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    console.rule("[bold]8. Serving (Ctrl-C to stop)")
    console.print(f"Web page:  [cyan]{base}/[/cyan]  (log in with the API key)\nAPI docs:  [cyan]{base}/docs[/cyan]\n"
                  f"API key:   [bold]{key}[/bold]\nA patient: [bold]{sid}[/bold] (pseudonymous id to type on the web page)\nTry:       curl -H 'Authorization: Bearer {key}' {base}/v1/models")  # fmt: skip
    run("127.0.0.1", port, settings)


def _typical_subject(db: SubjectDatabase) -> int:
    """A subject with a visit and a median-sized record: a readable example."""
    from clinfm import schema

    ids = list(db)
    sizes = sorted((len(db.table(s)), s) for s in ids[: min(len(ids), 500)])
    for _, sid in sizes[len(sizes) // 2 :]:
        codes = db.table(sid).column(schema.CODE).to_pylist()
        if any(c.startswith("VISIT//") for c in codes):
            return sid
    return sizes[len(sizes) // 2][1]


def register(app: typer.Typer) -> None:
    app.command()(demo)
