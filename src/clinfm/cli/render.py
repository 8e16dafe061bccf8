"""How results look in the terminal: one renderer per result kind (rich tables and lines), apart from the
commands that produce them so the demo and the commands print the same thing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clinfm.cli.common import console, err

if TYPE_CHECKING:
    from clinfm.data.dataset import DatasetSummary
    from clinfm.deid.structured import DeidResult
    from clinfm.model.generate import Forecast
    from clinfm.model.train import TrainProgress, TrainResult
    from clinfm.reasoning.models import DifferentialResult, TreatmentCheck


def reconciliation(summary: DatasetSummary) -> None:
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


def not_converted(found: dict[str, str]) -> None:
    """What the source holds that the ingest did not turn into events, and why."""
    if not found:
        return
    table = Table(title="Found and not converted to events", title_justify="left")
    table.add_column("table / file")
    table.add_column("why", overflow="fold")
    for name, why in sorted(found.items()):
        table.add_row(name, why)
    console.print(table)


def stats(s: dict[str, Any]) -> None:
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


def deid_summary(result: DeidResult) -> None:
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


def train_with_progress(train: Callable[[Callable[[TrainProgress], None]], TrainResult]) -> TrainResult:
    """Run ``train(update)`` under a progress bar showing step, loss and tokens per second."""
    with Progress(
        TextColumn("[bold]pretrain[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
        TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        bar = progress.add_task("pretrain", total=None, loss=float("nan"), tps=0.0)

        def update(p: TrainProgress) -> None:
            progress.update(bar, completed=p.step, total=p.max_steps, loss=p.loss, tps=p.tokens_per_s)

        return train(update)


def training(result: TrainResult) -> None:
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


def forecast(fc: Forecast) -> None:
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


def differential(dx: DifferentialResult) -> Table:
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


def treatment(result: TreatmentCheck) -> None:
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


def evaluation(report: Path) -> dict[str, Any]:
    """The held-out table of a validation report (read from its JSON twin); returns that JSON."""
    data: dict[str, Any] = json.loads(Path(report).with_suffix(".json").read_text())
    table = Table(title=f"Task {data['task']}: held-out performance (95% bootstrap CI)", title_justify="left")
    for col in ("model", "AUROC", "AUPRC", "Brier", "ECE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in data["models"].items():
        table.add_row(name, *(_with_ci(m.get(k)) for k in ("auroc", "auprc", "brier", "ece")))
    console.print(table)
    console.print(f"Report: [cyan]{report}[/cyan]  (JSON twin: {Path(report).with_suffix('.json')})")
    return data


def _with_ci(metric: Any) -> str:
    if isinstance(metric, dict) and metric.get("ci"):
        return f"{metric['value']:.3f} ({metric['ci'][0]:.3f}-{metric['ci'][1]:.3f})"
    return "-"
