"""``clinfm ask``: a question about one patient, answered by the clinical assistant with verified citations."""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clinfm.cli.common import console, errors_exit


def ask(
    dataset: Annotated[Path, typer.Argument(help="A (de-identified) MEDS dataset folder.")],
    subject_id: Annotated[int, typer.Argument(help="The subject (pseudonymous id).")],
    question: Annotated[str, typer.Argument(help="The question, in words.")],
    at: Annotated[dt.datetime | None, typer.Option("--at", help="Read the record as of this time (default: all of it).")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="local (embedded model, offline) or openai (any Chat Completions endpoint); default $CLINFM_ASSIST_BACKEND, else local.")] = None,
    model_path: Annotated[Path | None, typer.Option("--model-path", help="local: a .gguf file or a Hugging Face folder.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="openai: e.g. http://localhost:8000/v1")] = None,
    model: Annotated[str | None, typer.Option("--model", help="openai: the model or deployment name.")] = None,
    answer_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Largest completion of one model turn.")] = None,
    org: Annotated[str, typer.Option("--org", help="The organization the question is asked for (governance, egress).")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Ask about one patient: every statement shown cites events of the record and was checked against them."""
    from clinfm.assist.backends import BackendError
    from clinfm.assist.service import EgressRefused, NotServing
    from clinfm.data.store import SubjectDatabase

    with errors_exit(FileNotFoundError):
        db = SubjectDatabase(dataset)
    if subject_id not in db:
        console.print(f"[red]error:[/red] subject {subject_id} is not in {dataset}")
        raise typer.Exit(2)
    overrides: dict[str, Any] = {k: v for k, v in dict(backend=backend, model_path=model_path, base_url=base_url, model=model,
                                       answer_tokens=answer_tokens).items() if v is not None}  # fmt: skip
    with errors_exit(ValueError, FileNotFoundError, EgressRefused, NotServing, BackendError):
        result = ask_dataset(dataset, db, subject_id, question, at=at, org=org, **overrides)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(render_answer(result))


def ask_dataset(dataset: Path, db: Any, subject_id: int, question: str, *, at: dt.datetime | None = None,
                org: str = "local", **settings: Any) -> Any:  # fmt: skip
    """One governed question over a dataset (the CLI's and the demo's path)."""
    from clinfm.assist.service import Assistant, dataset_is_deidentified, find_assistant_version
    from clinfm.assist.settings import AssistSettings, make_backend

    s = AssistSettings(**settings)
    assistant = Assistant(make_backend(s), s)
    version = find_assistant_version(assistant.config(), org)
    return assistant.answer(db[subject_id], question, org=org, actor=getpass.getuser(), at=at,
                            descriptions=db.descriptions(), deidentified=dataset_is_deidentified(dataset),
                            state=version.state if version else None, version=version.id if version else None)  # fmt: skip


def render_answer(a: Any) -> Group:
    """Each statement with its cited events; removed statements with why; the abstention; the banner."""
    parts: list[Any] = [Text(a.banner, style="dim italic")]
    parts.append(Text.assemble(("Question: ", "bold"), a.question, f"  (subject {a.subject_id}, as of {a.at[:10]})"))
    if not a.shown:
        parts.append(Text("Silent mode: the answer was computed, verified and logged; it is not shown.", style="yellow"))
    for i, s in enumerate(a.statements, 1):
        table = Table(box=None, show_header=False, pad_edge=False)
        for col in ("id", "date", "code", "value", "description"):
            table.add_column(col, style="dim" if col == "id" else None, overflow="fold")
        for c in s.citations:
            value = f"{c.numeric_value:g} {c.unit or ''}".strip() if c.numeric_value is not None else ""
            table.add_row(c.id, (c.time or "static")[:10], c.code, value, c.description)
        parts.append(Panel(Group(Text(s.text, style="bold"), table), title=f"statement {i}", title_align="left",
                           border_style="green"))  # fmt: skip
    if a.abstained:
        parts.append(Panel(Text(f"The assistant abstains: {a.abstention_reason}"), border_style="yellow", title="abstained",
                           title_align="left"))  # fmt: skip
    for r in a.removed:
        parts.append(Text.assemble(("removed: ", "red"), (r.text, "strike"), f"  ({'; '.join(r.reasons)})"))
    for w in a.warnings:
        parts.append(Text(f"warning: {w}", style="yellow"))
    b = a.backend
    parts.append(Text(f"{b.get('backend')} {b.get('model_id')} | {a.steps} step(s) | tokens {a.usage.prompt_tokens} in, "
                      f"{a.usage.completion_tokens} out | {a.latency_s:.1f} s | verifier: {a.verifier_outcome}",
                      style="dim"))  # fmt: skip
    return Group(*parts)


def assist_register(
    dataset: Annotated[Path, typer.Argument(help="The dataset the assistant will answer over (fingerprinted).")],
    org: Annotated[str, typer.Option("--org", help="The organization that owns the configuration.")] = "local",
    backend: Annotated[str | None, typer.Option("--backend", help="local or openai (default $CLINFM_ASSIST_BACKEND).")] = None,
    model_path: Annotated[Path | None, typer.Option("--model-path")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who registers (default: the OS user).")] = None,
) -> None:
    """Register the current assistant configuration (backend, model, weights hash, prompt, tools, context policy)
    as a model version in draft; promote it with `clinfm registry promote` like any model."""
    from clinfm.assist.service import Assistant, register_assistant
    from clinfm.assist.settings import AssistSettings, make_backend
    from clinfm.govern.db import NotFound

    overrides: dict[str, Any] = {k: v for k, v in dict(backend=backend, model_path=model_path, base_url=base_url, model=model).items()
                 if v is not None}  # fmt: skip
    with errors_exit(ValueError, FileNotFoundError, NotFound):
        s = AssistSettings(**overrides)
        assistant = Assistant(make_backend(s), s)
        v = register_assistant(assistant.config(), dataset, actor or getpass.getuser(), org=org)
    console.print(f"Registered [bold]{v.name}[/bold] version {v.version} ([cyan]{v.id}[/cyan]) for {org}: state "
                  f"[bold]{v.state}[/bold]")  # fmt: skip


DEMO_QUESTION = "What allergies and chronic problems are recorded?"


def demo_question(dataset: Path, subject_id: int, question: str = DEMO_QUESTION) -> Any:
    """The demo's last step: one question to the embedded model, the verified answer (or abstention) printed."""
    from clinfm.assist.backends import BackendError
    from clinfm.data.store import SubjectDatabase

    console.print(f"Embedded model: SmolLM2-135M-Instruct (offline, CPU); question about patient {subject_id}: "
                  f"[bold]{question}[/bold]")  # fmt: skip
    try:
        with console.status("the assistant is reading the chart and answering (the first run de-quantizes the model)"):
            result = ask_dataset(dataset, SubjectDatabase(dataset), subject_id, question, chart_tokens=600,
                                 answer_tokens=160, statement_chars=100, timeout_s=600)  # fmt: skip
    except (FileNotFoundError, ImportError, BackendError) as exc:
        console.print(f"[yellow]the assistant could not answer: {exc}[/yellow]")
        return None
    console.print(render_answer(result))
    console.print(f"Ask your own: [bold]clinfm ask {dataset} {subject_id} \"...\"[/bold]")
    return result


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command("assist-register")(assist_register)
