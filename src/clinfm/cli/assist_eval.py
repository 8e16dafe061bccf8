"""``clinfm assist-eval``, ``assist-finetune`` and ``fhir-domains``: the assistant's task suite, its fine-tuning
under the change plan, and the OMOP code domains the FHIR API reads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clinfm.agentbench.suite import compare_runs, run_evaluation
from clinfm.cli.common import console, err, errors_exit, progress_bar


def assist_eval(
    dataset: Annotated[Path, typer.Argument(help="De-identified MEDS dataset.")],
    report: Annotated[Path, typer.Option("--report", help="HTML report (a .json twin is written beside it).")],
    backend: Annotated[str, typer.Option("--backend", help="none (tool calls, no language model), local or openai.")] = "none",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many tasks, round-robin over categories.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the task draw and bootstrap.")] = 0,
    split: Annotated[str, typer.Option(help="Subjects drawn from this split (held_out).")] = "held_out",
    per_subject: Annotated[int, typer.Option(help="Tasks drawn per subject.")] = 6,
    model: Annotated[str | None, typer.Option(help="local: model folder or .gguf; openai: model name.")] = None,
    adapter: Annotated[str | None, typer.Option(help="local: a LoRA adapter folder.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: endpoint base URL (…/v1).")] = None,
    attach: Annotated[str | None, typer.Option(help="Registry version id to attach the report to (kind assist_evaluation).")] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="Model calls per task before it counts as failed.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=8, help="local: tokens generated per call.")] = 160,
) -> None:
    """MedAgentBench-style task suite over the store's FHIR view, graded by code, with bootstrap intervals."""
    with progress_bar("assist-eval", "tasks") as update, errors_exit(ValueError, FileNotFoundError):
        doc = run_evaluation(dataset, backend, report, limit=limit, seed=seed, split=split, per_subject=per_subject,
                             model=model, adapter=adapter, base_url=base_url, max_steps=max_steps,
                             max_new_tokens=max_new_tokens, progress=update)  # fmt: skip
    table = Table("category", "success [95% CI]", title=f"{doc['n_tasks']} tasks, {doc['n_subjects']} subjects, backend {backend}")
    for cat, m in doc["success_by_category"].items():
        table.add_row(cat, _fmt(m))
    for name in ("success", "citation_precision", "abstention_precision", "abstention_recall", "unsupported_statement_rate"):
        table.add_row(f"[b]{name}[/b]", _fmt(doc[name] if name != "success" else doc["success"]))
    console.print(table)
    console.print(f"report: {report} and {report.with_suffix('.json')}")
    if attach:
        from clinfm.govern.registry import attach_report

        info = attach_report(attach, report.with_suffix(".json"), kind="assist_evaluation", actor=os.environ.get("USER", "cli"))
        console.print(f"attached to {attach} as report {getattr(info, 'id', info)}")


def assist_finetune(
    dataset: Annotated[Path, typer.Argument(help="De-identified MEDS dataset (train split for examples, held-out for the comparison).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoint/, adapter/, merged/, lineage.json (rerun to resume).")],
    model: Annotated[str | None, typer.Option(help="Base model folder or .gguf (default: the embedded SmolLM2-135M-Instruct).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps (one example each).")] = 40,
    examples: Annotated[int, typer.Option(min=1, help="Instruction examples drawn from the train split.")] = 200,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate of the LoRA weights.")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    feedback: Annotated[Path | None, typer.Option(help="Clinician feedback JSONL (default: $CLINFM_DATA_DIR/assist-feedback.jsonl).")] = None,
    org: Annotated[str | None, typer.Option(help="Organization whose feedback is used and who owns the version.")] = None,
    name: Annotated[str, typer.Option(help="Registry model name of the fine-tuned assistant.")] = "clinfm-assistant",
    compare_limit: Annotated[int, typer.Option(min=0, help="Held-out tasks for the base vs fine-tuned comparison (0: skip, not registered).")] = 26,
    plan: Annotated[Path | None, typer.Option(help="Change plan (bootstrap resamples and seed; default: the packaged plan).")] = None,
    base_version: Annotated[str | None, typer.Option(help="Registry version of the base assistant (a refused comparison is attached to it).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the example draw, training order and bootstrap.")] = 0,
    max_steps: Annotated[int, typer.Option(min=1, help="Comparison: model calls per task.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=8, help="Comparison: tokens generated per call.")] = 160,
) -> None:
    """LoRA fine-tuning of the local assistant model on the organization's records and clinician feedback;
    registered only when the change plan's paired comparison on held-out subjects shows it better."""
    import json

    from clinfm.agentbench.feedback import read_feedback
    from clinfm.agentbench.finetune import FinetuneConfig, decide, finetune, instruction_examples, register_finetuned
    from clinfm.monitor.plan import load_plan

    fb_path = feedback or Path(os.environ.get("CLINFM_DATA_DIR", "clinfm-data")) / "assist-feedback.jsonl"
    config = FinetuneConfig(steps=steps, examples=examples, learning_rate=learning_rate, rank=rank, alpha=2 * rank, seed=seed)
    try:
        change_plan = load_plan(plan)
        fb = read_feedback(fb_path, org)
        with tempfile.TemporaryDirectory(prefix="clinfm-finetune-") as tmp:
            ex, manifest = instruction_examples(dataset, tmp, config, fb)
        console.print(f"{manifest['n_examples']} instruction examples ({manifest['by_category']}), {len(manifest['feedback_ids'])} from feedback")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("assist-finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                      TimeElapsedColumn(), console=err) as bar:  # fmt: skip
            job = bar.add_task("steps", total=steps, loss="-")
            result = finetune(ex, manifest, out, config, model, progress=lambda i, n, loss: bar.update(job, completed=i, loss=f"{loss:.3f}"))
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} over {len(result.losses)} steps "
                  f"(resumed from {result.resumed_from}); CPU {result.cpu_seconds / 60:.1f} min, peak RSS {result.peak_rss_mb:.0f} MB")  # fmt: skip
    if compare_limit == 0:
        console.print(f"weights: {out / 'merged'} and {out / 'adapter'}; not compared, so not registered")
        return
    n_boot, boot_seed = change_plan.bounds.n_resamples, change_plan.bounds.seed
    def compare_run(report: Path, weights: str | None) -> dict[str, Any]:
        return run_evaluation(dataset, "local", report, limit=compare_limit, seed=seed, model=weights, n_resamples=n_boot,
                              max_steps=max_steps, max_new_tokens=max_new_tokens)  # fmt: skip

    base_doc = compare_run(out / "compare-base.html", model)
    tuned_doc = compare_run(out / "compare-tuned.html", str(out / "merged"))
    comparison = compare_runs(base_doc, tuned_doc, n_boot, boot_seed)
    accepted, reason = decide(comparison["query"])
    doc = {"plan": change_plan.name, "accepted": accepted, "reason": reason, "comparison": comparison, "lineage": result.lineage,
           "base_report": base_doc["success"], "tuned_report": tuned_doc["success"]}  # fmt: skip
    (out / "change_comparison.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    console.print(f"change plan {change_plan.name!r}: {'ACCEPTED' if accepted else 'refused'}: {reason}")
    from clinfm.govern.registry import attach_report

    actor = os.environ.get("USER", "cli")
    if accepted:
        version = register_finetuned(result, dataset, name, actor, org=org)
        attach_report(version.id, doc, kind=change_plan.governance.report_kind, actor=actor)
        attach_report(version.id, tuned_doc, kind="assist_evaluation", actor=actor)
        console.print(f"registered {version.id} ({name} v{version.version}, draft) with its comparison and evaluation")
    elif base_version:
        attach_report(base_version, doc, kind=change_plan.governance.report_kind, actor=actor)
        console.print(f"not registered; the comparison is attached to {base_version}")
    else:
        console.print(f"not registered; the comparison is in {out / 'change_comparison.json'}")


def fhir_domains(
    dataset: Annotated[Path, typer.Argument(help="MEDS dataset (ingested from OMOP).")],
    omop: Annotated[Path | None, typer.Option(help="OMOP DuckDB file whose concept table names the domains (default: Eunomia).")] = None,
) -> None:
    """Record each code's OMOP domain beside the dataset so the FHIR API serves SNOMED procedures as Procedure."""
    from clinfm.fhir.resources import write_code_domains

    with errors_exit(FileNotFoundError, OSError):
        out = write_code_domains(dataset, omop)
    console.print(f"wrote {out}")


def _fmt(m: dict[str, Any]) -> str:
    if not m or m.get("value") is None:
        return "–"
    ci = f" [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}]" if m.get("ci") else ""
    return f"{m['value']:.3f}{ci} (n={m['n']})"


def register(app: typer.Typer) -> None:
    app.command("assist-eval")(assist_eval)
    app.command("assist-finetune")(assist_finetune)
    app.command("fhir-domains")(fhir_domains)
