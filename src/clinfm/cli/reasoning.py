"""``clinfm ddx|treatment-check``: the differential-diagnosis interview and medication safety checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import console, errors_exit


def ddx(
    kb_path: Annotated[Path | None, typer.Option("--kb", help="DDXPlus-format knowledge base folder (default: $CLINFM_DDXPLUS_DIR, else the packaged copy).")] = None,
    budget: Annotated[int | None, typer.Option(help="Ask at most this many questions.")] = 15,
    threshold: Annotated[float | None, typer.Option(
        help="Stop when the calibrated top probability reaches this (default: the answer model's).")] = None,
    record: Annotated[Path | None, typer.Option(help="MEDS dataset folder holding the patient's record.")] = None,
    subject: Annotated[int | None, typer.Option(help="Subject id in --record: its antecedents count as findings.")] = None,
    answer_model: Annotated[Path | None, typer.Option(help="Answer-noise model JSON (default: the packaged one).")] = None,
) -> None:
    """Interactive differential diagnosis in the terminal: answer questions, watch the ranking update."""
    from pydantic import BaseModel
    from rich.prompt import Prompt

    from clinfm.reasoning import DifferentialResult, Explanation, load_knowledge_base, run_terminal
    from clinfm.reasoning.answer_model import load_answer_model
    from clinfm.reasoning.record import summarize_record

    if (record is None) != (subject is None):
        with errors_exit(ValueError):
            raise ValueError("--record and --subject go together (a MEDS folder and a subject id in it)")
    with errors_exit(FileNotFoundError, ValueError):
        kb = load_knowledge_base(kb_path)
        model = load_answer_model(answer_model)
        found = None
        if record is not None and subject is not None:
            found = summarize_record(kb, _store_subject(record, subject))
    if found is not None:
        console.print(f"From the record of subject {subject}: {len(found.findings)} findings"
                      + "".join(f"\n  [green]from the record[/green] {a.question} ({', '.join(a.record_codes)})"
                                for a in found.findings))

    def ask(prompt: str, options: list[str]) -> str:
        if not options:
            return Prompt.ask(f"[bold]{prompt}[/bold]", default="", console=console)
        for i, option in enumerate(options, 1):
            console.print(f"  [cyan]{i}[/cyan]. {option}")
        reply = Prompt.ask(f"[bold]{prompt}[/bold] (number or text; blank = don't know)", default="", console=console)
        return options[int(reply) - 1] if reply.isdigit() and 0 < int(reply) <= len(options) else reply

    def show(model: BaseModel) -> None:
        if isinstance(model, Explanation):
            console.rule("Explanation")
            console.print(model.text)
        elif isinstance(model, DifferentialResult):
            console.print(render.differential(model))

    run_terminal(ask, show, kb, budget=budget, confidence_threshold=threshold, model=model,
                 record=found.findings if found else None, sex=found.sex if found else None,
                 age=found.age if found else None)


def _store_subject(path: Path, subject_id: int):
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(path)
    if subject_id not in db:
        raise ValueError(f"subject {subject_id} is not in {path} ({len(db):,} subjects)")
    return db[subject_id]


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
    render.treatment(result)


def register(app: typer.Typer) -> None:
    app.command()(ddx)
    app.command("treatment-check")(treatment_check)
