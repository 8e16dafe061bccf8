"""The verifier: nothing the model says is shown unless the patient's record supports it.

An answer is a list of :class:`Statement` (text + citation ids). A statement is kept only when it cites at
least one event, every citation is an event of *this* patient's chart, and every number, date, year, unit and
code it states appears in what it cites; a statement that orders a dose is removed whatever it cites. Each
removal says why. When nothing supported remains the answer abstains, and says why.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from clinfm.assist.chart import STOPWORDS, SYNONYMS, Chart, ChartItem, format_number, iso_day, words

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.]*\d)")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
YEAR = re.compile(r"\b(19\d{2}|20\d{2})\b")
CODE = re.compile(r"\b[A-Z][A-Za-z0-9_]*//[\w.\-/]+")
CITE_MARK = re.compile(r"\[(?:e[0-9a-f]{7}(?:,\s*)?)+\]|\be[0-9a-f]{7}\b")
UNITS = {
    "mg/dl": "mg/dl", "mmol/l": "mmol/l", "umol/l": "umol/l", "µmol/l": "umol/l", "g/dl": "g/dl", "g/l": "g/l",
    "mmhg": "mm[hg]", "mm[hg]": "mm[hg]", "kg": "kg", "cm": "cm", "kg/m2": "kg/m2", "bpm": "/min", "/min": "/min",
    "%": "%", "ml/min": "ml/min", "ml/min/1.73": "ml/min", "meq/l": "meq/l", "u/l": "u/l", "iu/l": "u/l",
    "ng/ml": "ng/ml", "pg/ml": "pg/ml", "cel": "cel", "°c": "cel", "lb": "lb", "10*3/ul": "10*3/ul",
}  # fmt: skip
UNIT_PATTERN = re.compile(r"(?<![\w/])(" + "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
                          + r")(?![\w])", re.I)  # fmt: skip
DOSING = [
    re.compile(r"\b(give|administer|prescribe|start|begin|increase|decrease|reduce|titrate|double|halve|take)\b[^.]{0,60}"
               r"\b\d+(?:\.\d+)?\s*(mg|mcg|µg|g|units?|ml|iu)\b", re.I),
    re.compile(r"\b\d+(?:\.\d+)?\s*(mg|mcg|µg|units?|ml)\b[^.]{0,30}\b(daily|bid|tid|qid|twice|once|every|q\d+h|per day|"
               r"a day|at night)\b", re.I),
    re.compile(r"\b(dose|dosage)\s+(of|to|should be)\s+\d", re.I),
]  # fmt: skip


class Statement(BaseModel):
    text: str = Field(max_length=2000)
    citations: list[str] = Field(default_factory=list, max_length=20)


class RemovedStatement(BaseModel):
    text: str
    citations: list[str]
    reasons: list[str]


@dataclass
class Verdict:
    kept: list[Statement] = field(default_factory=list)
    removed: list[RemovedStatement] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if not self.kept:
            return "nothing supported"
        return "all supported" if not self.removed else "some removed"


def check_statement(s: Statement, chart: Chart) -> list[str]:
    """Why ``s`` is not supported by ``chart`` (empty: supported)."""
    reasons = []
    if any(p.search(s.text) for p in DOSING):
        reasons.append("states a dose or a dosing order: the assistant gives no dosing orders")
    if not s.citations:
        return reasons + ["cites no event of the record"]
    cited: list[ChartItem] = []
    for cid in dict.fromkeys(s.citations):
        item = chart.get(cid)
        if item is None:
            reasons.append(f"citation {cid!r} is not an event of patient {chart.subject_id}'s record")
        else:
            cited.append(item)
    if not cited:
        return reasons
    support = " ".join(_support_text(i) for i in cited)
    text = CITE_MARK.sub(" ", s.text)
    for code in CODE.findall(text):
        if code.rstrip(".") not in {i.code for i in cited}:
            reasons.append(f"code {code} is not the code of a cited event")
    text = CODE.sub(" ", text)
    dates = {d.isoformat() for d in _dates(cited)}
    for y, m, d in ISO_DATE.findall(text):
        if f"{y}-{m}-{d}" not in dates:
            reasons.append(f"date {y}-{m}-{d} is not the date of a cited event")
    years = {d.year for d in _dates(cited)}
    text_no_dates = ISO_DATE.sub(" ", text)
    for y in YEAR.findall(text_no_dates):
        if int(y) not in years and y not in support:
            reasons.append(f"year {y} is not the year of a cited event")
    text_no_dates = YEAR.sub(" ", text_no_dates)
    units = {UNITS.get(u.lower(), u.lower()) for i in cited if i.unit for u in [i.unit.replace(" ", "")]}
    units |= {UNITS[u.lower()] for u in UNIT_PATTERN.findall(support)}
    for u in UNIT_PATTERN.findall(text_no_dates):
        if UNITS[u.lower()] not in units:
            reasons.append(f"unit {u} is not the unit of a cited event")
    allowed = [float(n) for n in NUMBER.findall(_without_dates_and_codes(support))]
    stated = NUMBER.findall(UNIT_PATTERN.sub(" ", text_no_dates))
    for n in stated:
        if not any(_same_number(n, a) for a in allowed):
            reasons.append(f"value {n} does not match a cited event")
    if not reasons and len(cited) == 1:
        reasons += _trend_pairing(cited[0], stated, [f"{y}-{m}-{d}" for y, m, d in ISO_DATE.findall(text)])
    if not reasons and not stated and not _on_topic(text_no_dates, support):
        reasons.append("says nothing that the cited events say (no shared term)")
    return reasons


def verify(statements: list[Statement], chart: Chart) -> Verdict:
    """Keep the supported statements; report the others with their reasons."""
    out = Verdict()
    for s in statements:
        reasons = check_statement(s, chart)
        if reasons:
            out.removed.append(RemovedStatement(text=s.text, citations=s.citations, reasons=reasons))
        else:
            out.kept.append(s)
    return out


def _trend_pairing(item: ChartItem, numbers: list[str], dates: list[str]) -> list[str]:
    """A lab line also states the value before it ("rising from 1.9 on 2020-04-05"): the earlier value and its date
    belong together, and the earlier value alone is not this event's value."""
    prev, prev_time = item.derived.get("previous"), item.derived.get("previous_time")
    if prev is None or prev_time is None or item.value is None:
        return []
    own_n = any(_same_number(n, item.value) for n in numbers)
    prev_n = any(_same_number(n, prev) for n in numbers)
    own_d = item.time.date().isoformat() in dates if item.time else False
    prev_d = prev_time.date().isoformat() in dates
    out = []
    if prev_n and not own_n and not prev_d:
        out.append(f"value {format_number(prev)} is the value before this event (on {prev_time.date().isoformat()}), "
                   f"not its value {format_number(item.value)}")  # fmt: skip
    if prev_d and not prev_n:
        out.append(f"date {prev_time.date().isoformat()} is the date of the earlier value {format_number(prev)}, not "
                   "of the value stated")  # fmt: skip
    if own_d and prev_n and not own_n:
        out.append(f"value {format_number(prev)} was not measured on {iso_day(item.time)}")
    return out


def _support_text(item: ChartItem) -> str:
    extra = [str(v) for v in item.derived.values() if v is not None and not isinstance(v, dt.datetime)]
    return item.line() + " " + " ".join(extra)


def _without_dates_and_codes(text: str) -> str:
    text = re.sub(r"\b\d{2}:\d{2}(:\d{2})?\b", " ", CODE.sub(" ", text))
    return UNIT_PATTERN.sub(" ", ISO_DATE.sub(" ", text))


def _dates(items: list[ChartItem]) -> set[dt.date]:
    out = set()
    for i in items:
        if i.time:
            out.add(i.time.date())
        for v in i.derived.values():
            if isinstance(v, dt.datetime):
                out.add(v.date())
        for y, m, d in ISO_DATE.findall(i.line()):
            out.add(dt.date(int(y), int(m), int(d)))
    return out


def _same_number(stated: str, actual: float) -> bool:
    """Equal at the precision stated: "1.4" matches 1.43, "140" matches 140.0, "1.5" does not match 1.4."""
    value = float(stated)
    decimals = len(stated.split(".", 1)[1]) if "." in stated else 0
    return abs(value - actual) <= 0.5 * 10**-decimals + 1e-9 or abs(abs(value) - actual) <= 1e-9


def _on_topic(text: str, support: str) -> bool:
    have = set(words(support))
    terms = [w for w in words(text) if w not in STOPWORDS and len(w) >= 3 and not w.replace(".", "").isdigit()]
    if not terms:
        return True
    expanded = terms + [x for w in terms for x in SYNONYMS.get(w, "").split()]
    return any(w in have or w.rstrip("s") in have for w in expanded)
