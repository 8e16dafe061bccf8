"""A subject's timeline as rich text: one line per event, grouped by day, coloured by kind of event."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from clinfm import schema
from clinfm.schema import Event, Subject

KIND_STYLES = {
    "visit": "bold magenta",
    "diagnosis": "red",
    "lab": "blue",
    "medication": "green",
    "procedure": "yellow",
    "note": "cyan",
    "birth/death": "bold white",
    "other": "white",
}

_VOCAB_KIND = {
    "ICD10CM": "diagnosis", "ICD9CM": "diagnosis", "SNOMED": "diagnosis",
    "LOINC": "lab", "MIMIC_LAB": "lab", "MIMIC_OMR": "lab", "MIMIC_MICRO": "lab",
    "RxNorm": "medication", "NDC": "medication", "CVX": "medication", "MIMIC_DRUG": "medication",
    "MIMIC_EMAR": "medication", "ATC": "medication",
    "CPT4": "procedure", "HCPCS": "procedure", "ICD10PCS": "procedure", "ICD9Proc": "procedure",
    "VISIT": "visit", "NOTE": "note", "MEDS_BIRTH": "birth/death", "MEDS_DEATH": "birth/death",
}  # fmt: skip


def event_kind(code: str) -> str:
    """The display kind of a code (visit, diagnosis, lab, medication, procedure, note, ...)."""
    return _VOCAB_KIND.get(schema.vocabulary_of(code), "other")


def _value(e: Event, show_text: bool) -> str:
    if e.numeric_value is not None:
        return f"{e.numeric_value:g}{' ' + e.unit if e.unit else ''}"
    if e.text_value:
        if e.code.startswith("NOTE//") and not show_text:
            return f"[note, {len(e.text_value):,} characters]"
        return e.text_value if len(e.text_value) <= 60 else e.text_value[:57] + "..."
    return ""


def render_timeline(subject: Subject, descriptions: dict[str, str], limit: int = 200, show_text: bool = False) -> Group:
    """Static codes as a header, then one row per timed event (at most ``limit``; 0 means all)."""
    static = [e.code for e in subject.events if e.time is None]
    timed = [e for e in subject.events if e.time is not None]
    header = Text.assemble(
        ("Subject ", "bold"), (str(subject.subject_id), "bold cyan"),
        f"  {len(subject.events):,} events", "  " + "  ".join(static),
    )  # fmt: skip
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("date", "time", "kind", "code", "value", "description"):
        table.add_column(col, overflow="fold")
    shown = timed if not limit else timed[:limit]
    last_day = None
    for e in shown:
        assert e.time is not None  # timed events only
        day = e.time.date().isoformat()
        kind = event_kind(e.code)
        style = KIND_STYLES[kind]
        table.add_row(
            day if day != last_day else "", e.time.strftime("%H:%M"), Text(kind, style=style),
            Text(e.code, style=style), _value(e, show_text), descriptions.get(e.code, ""),
        )  # fmt: skip
        last_day = day
    footer = Text(f"... {len(timed) - len(shown):,} more events (use --limit 0 for all)", style="dim") if len(
        shown
    ) < len(timed) else Text("")
    legend = Text.assemble(*[(f" {k} ", s) for k, s in KIND_STYLES.items()])
    return Group(header, legend, table, footer)
