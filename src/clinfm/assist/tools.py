"""Tools the assistant's model may call: each an existing, validated part of ClinFM, bound to ONE patient's chart.

No tool takes a subject id: a :class:`ToolRegistry` is built for one chart, so whatever the model (or a note in
the record) asks for, it can only reach that patient. Results are chart lines with citation ids; values a tool
computes (eGFR, a forecast, a safety finding) are new items that cite the event they rest on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clinfm.assist.backends import ToolCall, ToolSpec
from clinfm.assist.chart import SECTIONS, Chart, ChartItem, format_number

MAX_RESULT_ITEMS = 12


class ToolError(ValueError):
    """A call the registry refuses (unknown tool, bad arguments); the reason goes back to the model."""


@dataclass
class ToolResult:
    name: str
    text: str
    citations: list[str] = field(default_factory=list)
    ok: bool = True


ForecastFn = Callable[[Chart], dict[str, Any]]
"""Returns ``{"state": lifecycle state, "version": id, "risks": [{"outcome", "probability", "ci_low", "ci_high"}]}``."""


@dataclass
class Tool:
    spec: ToolSpec
    run: Callable[..., ToolResult]


class ToolRegistry:
    """The tools for one chart. ``call`` validates the name and arguments before running anything."""

    def __init__(self, chart: Chart, forecast: ForecastFn | None = None, enabled: tuple[str, ...] | None = None) -> None:
        self.chart = chart
        self.forecast_fn = forecast
        tools = [self._search(), self._lab_series(), self._renal(), self._treatment(), self._ddx()]
        if forecast is not None:
            tools.append(self._forecast())
        self.tools = {t.spec.name: t for t in tools if enabled is None or t.spec.name in enabled}

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    def call(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            raise ToolError(f"there is no tool {call.name!r}; the tools are {sorted(self.tools)}")
        _check_arguments(call.arguments, tool.spec.parameters, call.name)
        return tool.run(**call.arguments)

    def _add(self, item: ChartItem) -> ChartItem:
        if item.cid not in self.chart.by_id:
            self.chart.items.append(item)
            self.chart.by_id[item.cid] = item
        return self.chart.by_id[item.cid]

    # The tools -------------------------------------------------------------------------------------------
    def _search(self) -> Tool:
        spec = ToolSpec("search_timeline", "Search this patient's record by words or codes, optionally by section "
                        "and date range (YYYY-MM-DD).", {
                            "type": "object", "properties": {
                                "query": {"type": "string", "minLength": 1, "maxLength": 80},
                                "section": {"enum": list(SECTIONS)},
                                "since": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                                "until": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                            }, "required": ["query"], "additionalProperties": False})  # fmt: skip

        def run(query: str, section: str | None = None, since: str | None = None, until: str | None = None) -> ToolResult:
            lo, hi = _date(since, "since"), _date(until, "until")
            hits = [i for score, i in self.chart.relevant(query) if score > 0
                    and (section is None or i.section == section)
                    and (lo is None or (i.time and i.time.date() >= lo)) and (hi is None or (i.time and i.time.date() <= hi))]  # fmt: skip
            return _lines("search_timeline", hits[:MAX_RESULT_ITEMS], f"no event matches {query!r}")

        return Tool(spec, run)

    def _lab_series(self) -> Tool:
        codes = sorted({i.code for i in self.chart.items if i.section in ("lab", "vital") and i.value is not None})
        spec = ToolSpec("lab_series", "All recorded values of one lab or vital sign of this patient, oldest first.",
                        {"type": "object", "properties": {"code": {"enum": codes or ["none"]}},
                         "required": ["code"], "additionalProperties": False})  # fmt: skip

        def run(code: str) -> ToolResult:
            series = sorted((i for i in self.chart.items if i.code == code and i.value is not None), key=lambda i: i.time or dt.datetime.min)
            return _lines("lab_series", series[-MAX_RESULT_ITEMS:], f"no value of {code} in the record")

        return Tool(spec, run)

    def _latest_creatinine(self) -> ChartItem | None:
        cr = [i for i in self.chart.items if i.code in ("LOINC//2160-0", "LOINC//38483-4") and i.value is not None
              and (i.unit or "mg/dL").replace(" ", "").lower() in ("mg/dl", "umol/l")]
        return max(cr, key=lambda i: i.time or dt.datetime.min) if cr else None

    def _renal(self) -> Tool:
        spec = ToolSpec("renal_function", "This patient's eGFR (CKD-EPI 2021) from the latest serum creatinine, "
                        "age and sex.", {"type": "object", "properties": {}, "additionalProperties": False})  # fmt: skip

        def run() -> ToolResult:
            item = self.egfr_item()
            if item is None:
                return ToolResult("renal_function", "no serum creatinine with age and sex (adult) in the record", ok=False)
            return _lines("renal_function", [item], "")

        return Tool(spec, run)

    def egfr_item(self) -> ChartItem | None:
        from clinfm.reasoning.treatment import renal_function

        cr, c = self._latest_creatinine(), self.chart
        sex = {"F": "female", "M": "male"}.get(c.sex or "")
        if cr is None or sex is None or c.age is None or not 18 <= c.age <= 120:
            return None
        rf = renal_function(creatinine=cr.value, creatinine_unit=cr.unit or "mg/dL", age=c.age, sex=sex)
        if rf is None:
            return None
        return self._add(ChartItem(
            _derived_id("egfr", cr.cid), "lab", cr.time, cr.code,
            f"eGFR {format_number(rf.egfr)} mL/min/1.73m2, stage {rf.stage} ({rf.method}) from creatinine",
            value=cr.value, unit=cr.unit, derived={"egfr": rf.egfr}))  # fmt: skip

    def _treatment(self) -> Tool:
        spec = ToolSpec("treatment_check", "Safety check of medications (the patient's own, plus any named): "
                        "allergies, interactions, renal dosing, duplicates.", {
                            "type": "object", "properties": {"add": {"type": "array", "maxItems": 5,
                                                                     "items": {"type": "string", "maxLength": 60}}},
                            "additionalProperties": False})  # fmt: skip

        def run(add: list[str] | None = None) -> ToolResult:
            from clinfm.reasoning.treatment import check_treatment

            meds = [i for i in self.chart.items if i.section == "medication"]
            allergies = [i for i in self.chart.items if i.section == "allergy"]
            egfr = self.egfr_item()
            names = [m.description for m in meds] + list(add or [])
            result = check_treatment(names, [a.description.lower().replace("allergy to ", "") for a in allergies],
                                     egfr=egfr.derived["egfr"] if egfr else None)  # fmt: skip
            by_name = {m.description: m for m in meds}
            lines, cites = [], []
            findings = ([("allergy", f.medication, f"{f.severity}: {f.relation} with allergy {f.allergy} ({f.risk})")
                         for f in result.allergy_conflicts]
                        + [("interaction", m, f"{f.severity}: {f.ingredient_a} + {f.ingredient_b}: {f.effect}")
                           for f in result.interactions for m in f.medications[:1]]
                        + [("renal", f.medication, f"{f.severity}: {f.ingredient} at eGFR {f.egfr:g}: {f.action}")
                           for f in result.renal_flags]
                        + [("duplicate", f.medications[0], f"{f.severity}: {f.reason}") for f in result.duplicates])  # fmt: skip
            for kind, med, text in findings[:MAX_RESULT_ITEMS]:
                source = by_name.get(med)
                if source is None:
                    lines.append(f"(proposed {med}) {kind} {text}")
                    continue
                item = self._add(ChartItem(_derived_id(kind + text, source.cid), "medication", source.time, source.code,
                                           f"safety check of {source.description}: {kind} {text}"))  # fmt: skip
                lines.append(item.line())
                cites.append(item.cid)
            if not findings:
                lines.append("no allergy conflict, interaction, renal flag or duplicate found" if result.medications
                             else f"not checked: {result.abstention_reason}")  # fmt: skip
            lines += [f"warning: {w}" for w in result.warnings[:4]]
            return ToolResult("treatment_check", "\n".join(lines), cites)

        return Tool(spec, run)

    def _ddx(self) -> Tool:
        spec = ToolSpec("differential_diagnosis", "Differential diagnosis (DDXPlus engine) from findings in words, "
                        "e.g. 'cough', 'fever'.", {
                            "type": "object", "properties": {"findings": {
                                "type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "string", "maxLength": 60}}},
                            "required": ["findings"], "additionalProperties": False})  # fmt: skip

        def run(findings: list[str]) -> ToolResult:
            from clinfm.reasoning import differential, find_evidences, load_knowledge_base, parse_answer

            kb = load_knowledge_base()
            answers, unknown = [], []
            for f in findings:
                hits = find_evidences(f, kb, limit=1)
                if hits and kb.evidence(hits[0][0]).is_binary:
                    answers.append(parse_answer(kb, hits[0][0], True))
                else:
                    unknown.append(f)
            sex = {"F": "female", "M": "male"}.get(self.chart.sex or "")
            result = differential(answers, sex=sex, kb=kb)
            lines = [f"findings matched: {', '.join(a.question for a in answers) or 'none'}"]
            if unknown:
                lines.append(f"not recognised: {', '.join(unknown)}")
            if result.abstained:
                lines.append(f"the engine abstains: {result.abstention_reason}")
            else:
                lines += [f"{c.rank}. {c.pathology} ({c.icd10}) p={c.probability:.2f}{' CANNOT MISS' if c.cant_miss else ''}"
                          for c in result.candidates[:5]]  # fmt: skip
            lines.append("(a differential from the findings given, not from the record: it cites no event)")
            return ToolResult("differential_diagnosis", "\n".join(lines))

        return Tool(spec, run)

    def _forecast(self) -> Tool:
        spec = ToolSpec("forecast", "The foundation model's risk forecast for this patient (when it may be shown).",
                        {"type": "object", "properties": {}, "additionalProperties": False})

        def run() -> ToolResult:
            out = self.forecast_fn(self.chart)  # type: ignore[misc]
            if out.get("state") not in ("pilot", "general"):
                return ToolResult("forecast", f"the forecast model {out.get('version')} is in {out.get('state')!r} "
                                  "state: its numbers are not shown", ok=False)  # fmt: skip
            anchor = max((i for i in self.chart.items if i.time), key=lambda i: i.time or dt.datetime.min, default=None)
            if anchor is None:
                return ToolResult("forecast", "the record has no timed event to forecast from", ok=False)
            lines, cites = [], []
            for r in out.get("risks", [])[:6]:
                text = (f"forecast ({out.get('version')}): {r['outcome']} within the horizon "
                        f"{r['probability'] * 100:.0f}% (95% CI {r['ci_low'] * 100:.0f}-{r['ci_high'] * 100:.0f}%), "
                        f"as of this event")  # fmt: skip
                item = self._add(ChartItem(_derived_id(text, anchor.cid), anchor.section, anchor.time, anchor.code,
                                           f"{anchor.description}; {text}", value=anchor.value, unit=anchor.unit))  # fmt: skip
                lines.append(item.line())
                cites.append(item.cid)
            return ToolResult("forecast", "\n".join(lines) or "no forecast", cites)

        return Tool(spec, run)


def _lines(name: str, items: list[ChartItem], empty: str) -> ToolResult:
    if not items:
        return ToolResult(name, empty, ok=False)
    return ToolResult(name, "\n".join(i.line() for i in items), [i.cid for i in items])


def _derived_id(what: str, source: str) -> str:
    return "e" + hashlib.sha256(f"{source}|{what}".encode()).hexdigest()[:7]


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ToolError(f"{name} {value!r} is not a date YYYY-MM-DD") from None


def _check_arguments(args: dict[str, Any], schema: dict[str, Any], tool: str) -> None:
    """The JSON schema's object rules (required, no extras, types, enums): enough for the tools' flat arguments."""
    if not isinstance(args, dict):
        raise ToolError(f"{tool} arguments must be an object")
    props = schema.get("properties", {})
    extra = sorted(set(args) - set(props))
    if extra and schema.get("additionalProperties") is False:
        raise ToolError(f"{tool} takes no argument {extra[0]!r} (it takes {sorted(props) or 'none'})")
    missing = [k for k in schema.get("required", []) if k not in args]
    if missing:
        raise ToolError(f"{tool} needs the argument {missing[0]!r}")
    for k, v in args.items():
        p = props.get(k, {})
        if "enum" in p and v not in p["enum"]:
            raise ToolError(f"{tool} argument {k}={json.dumps(v)[:40]} is not one of {p['enum'][:8]}")
        if p.get("type") == "string" and not isinstance(v, str):
            raise ToolError(f"{tool} argument {k} must be a string")
        if p.get("type") == "array" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise ToolError(f"{tool} argument {k} must be a list of strings")
