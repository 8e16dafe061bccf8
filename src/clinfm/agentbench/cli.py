"""``clinfm assist-eval`` and ``clinfm fhir-domains``: thin typer commands over :mod:`clinfm.agentbench` and
:mod:`clinfm.fhir` (registered on the main app by ``clinfm.cli``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


def run_evaluation(dataset: Path, backend: str, report: Path, *, limit: int | None = None, seed: int = 0,
                   split: str = "held_out", per_subject: int = 6, model: str | None = None, adapter: str | None = None,
                   base_url: str | None = None, api_key: str | None = None, n_resamples: int = 1000,
                   workdir: Path | None = None, progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """Build the evaluation store from ``split``, generate tasks, run the agent, write the HTML + JSON report."""
    from clinfm.agentbench.agents import BaselineAgent, ChatAgent, FhirTools, LocalChat, OpenAIChat
    from clinfm.agentbench.report import run_suite, summarize, write_report
    from clinfm.agentbench.tasks import build_eval_store, generate_tasks, select
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    if backend not in ("none", "local", "openai"):
        raise ValueError(f"backend {backend!r} is not one of none, local, openai")
    with tempfile.TemporaryDirectory(prefix="clinfm-agentbench-") as tmp:
        store_dir = build_eval_store(dataset, Path(workdir or tmp) / "eval-store", split=split, seed=seed)
        tasks = select(generate_tasks(store_dir, seed=seed, per_subject=per_subject), limit)
        db = SubjectDatabase(store_dir)
        tools = FhirTools(FhirStore(db, CodeCatalog.for_dataset(store_dir, db.descriptions())))
        if backend == "none":
            agent: Any = BaselineAgent()
        elif backend == "openai":
            url = base_url or os.environ.get("CLINFM_OPENAI_BASE_URL")
            name = model or os.environ.get("CLINFM_OPENAI_MODEL")
            if not url or not name:
                raise ValueError("backend openai needs --base-url and --model (or CLINFM_OPENAI_BASE_URL / CLINFM_OPENAI_MODEL)")
            agent = ChatAgent(OpenAIChat(url, name, api_key or os.environ.get("CLINFM_OPENAI_API_KEY")))
        else:
            agent = ChatAgent(LocalChat(model, adapter))
        results = run_suite(tasks, agent, tools, progress)
    doc = summarize(results, backend, n_resamples=n_resamples, seed=seed)
    doc.update(dataset=str(dataset), split=split, seed=seed, limit=limit, model=model, adapter=adapter)
    write_report(doc, report)
    return doc


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
) -> None:
    """MedAgentBench-style task suite over the store's FHIR view, graded by code, with bootstrap intervals."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("assist-eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err) as bar:
        job = bar.add_task("tasks", total=None)
        try:
            doc = run_evaluation(dataset, backend, report, limit=limit, seed=seed, split=split, per_subject=per_subject,
                                 model=model, adapter=adapter, base_url=base_url,
                                 progress=lambda i, n: bar.update(job, completed=i, total=n))  # fmt: skip
        except (ValueError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
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


def fhir_domains(
    dataset: Annotated[Path, typer.Argument(help="MEDS dataset (ingested from OMOP).")],
    omop: Annotated[Path | None, typer.Option(help="OMOP DuckDB file whose concept table names the domains (default: Eunomia).")] = None,
) -> None:
    """Record each code's OMOP domain beside the dataset so the FHIR API serves SNOMED procedures as Procedure."""
    from clinfm.fhir.resources import write_code_domains

    try:
        out = write_code_domains(dataset, omop)
    except (FileNotFoundError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}")


def _fmt(m: dict[str, Any]) -> str:
    if not m or m.get("value") is None:
        return "–"
    ci = f" [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}]" if m.get("ci") else ""
    return f"{m['value']:.3f}{ci} (n={m['n']})"


def register(app: typer.Typer) -> None:
    app.command("assist-eval")(assist_eval)
    app.command("fhir-domains")(fhir_domains)
