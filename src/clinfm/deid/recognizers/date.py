"""Dates in clinical shorthand: "03/14/2021", "3/14/21", "2021-03-14", "14-Mar-2021", "March 14th", "Mar 2021",
"3/14" when a date cue precedes it (fractions such as "5/5 strength" or "1/2 tab" stay), and dates in prose: days
in words ("march third", "the third of March") and holidays with a year ("Christmas Eve 2019")."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"]


def _month_alternation() -> str:
    words = set()
    for m in MONTHS + _ABBR:
        words |= {m, m.upper()}
        if m.lower() not in (
            "may",
            "mar",
            "dec",
            "jan",
            "jun",
            "jul",
            "aug",
            "sep",
            "oct",
            "nov",
            "apr",
            "feb",
            "sept",
        ):
            words.add(m.lower())  # lower-case full names only; "may", "dec" are words
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


MONTH = _month_alternation()
_M = r"(?:0?[1-9]|1[0-2])"
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_Y = r"(?:19|20)\d{2}"
_ORD = r"(?:st|nd|rd|th)"
_CUE = (
    r"(?i:on|since|from|until|till|thru|through|to|dated|DOS|d/c'?d?|admitted|adm|discharged|seen|started|stopped"
    r"|began|begun|last|next|f/u|follow[- ]up|appt|appointment|surgery|procedure|visit|by|before|after|due|scheduled"
    r"|dob|date|effective|returned|presented|injury|onset|between|and|-|~|@|placed|inserted|removed|done"
    r"|performed|drawn|collected|given|changed|expires?|exp|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|monday"
    r"|tuesday|wednesday|thursday|friday|saturday|sunday)\.?,?"
)

_SMALL_ORDINALS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
]  # fmt: skip
# Days of the month in words, 1..31: "third", "twenty-first", "thirtieth".
ORDINAL_WORDS: dict[str, int] = (
    {w: i + 1 for i, w in enumerate(_SMALL_ORDINALS)}
    | {"twentieth": 20, "thirtieth": 30, "thirty-first": 31}
    | {f"twenty-{w}": 21 + i for i, w in enumerate(_SMALL_ORDINALS[:9])}
)
ORDINAL_WORD = "(?:" + "|".join(
    sorted((w.replace("-", "[- ]") for w in ORDINAL_WORDS), key=len, reverse=True)
) + ")"
# Holidays that fix a day: with a year they are a date ("Christmas Eve 2019"); alone ("Christmas") they are not.
_HOLIDAY = (
    r"(?:christmas(?:[ \t]+(?:eve|day))?|xmas(?:[ \t]+eve)?|new[ \t]+year['’]?s(?:[ \t]+(?:eve|day))?|thanksgiving(?:[ \t]+day)?"
    r"|easter(?:[ \t]+(?:sunday|monday))?|good[ \t]+friday|halloween|independence[ \t]+day|fourth[ \t]+of[ \t]+july"
    r"|memorial[ \t]+day|labou?r[ \t]+day|veterans['’]?[ \t]+day|valentine['’]?s(?:[ \t]+day)?|st\.?[ \t]+patrick['’]?s[ \t]+day"
    r"|mother['’]?s[ \t]+day|father['’]?s[ \t]+day|boxing[ \t]+day|presidents['’]?[ \t]+day|columbus[ \t]+day"
    r"|martin[ \t]+luther[ \t]+king(?:[ \t]+jr\.?)?[ \t]+day|mlk[ \t]+day|juneteenth)"
)

_LOWER_MONTH = r"(?:january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
# "01MAR1922", "02JUL2022", "15Mar21": day, month abbreviation and year with no separator (any case).
COMPACT_DMY = rf"{_D}(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:{_Y}|\d{{2}})"
# Month/day without a year: what just before or after it says it is a score, a fraction, a ratio or a setting.
_NOT_DATE_BEFORE = re.compile(
    r"(?i)(?:\b(?:bp|sbp|dbp|abp|nbp|map|pa|pap|cvp|pcwp|ps|psv|peep|cpap|bipap|a/c|ac|simv|imv|vent|settings?"
    r"|gcs|apgar|grade|gr|strength|str|murmur|sem|hsm|pulses?|edema|reflexes|dtrs?|pain|cp|c/o|ha|rates?|scale"
    r"|score|ratio|i:e|ie|sats?|o2|fio2|wean(?:ed|ing)?|qty|ns|lr|d5)\b[ \t]*(?:at|of|to|from|is|=|:|,)?[ \t]*"
    r"(?:\d+[ \t]*)?|(?<![/\d])\d+[ \t]*[-x*][ \t]*|[+*][ \t]*)$"
)
_NOT_DATE_AFTER = re.compile(
    r"(?i)^[ \t]*(?:%|\+|'s|[-x*]\d|(?:murmur|sem|hsm|strength|str|pain|cpain|ns|lr|dose|tabs?|tablets?|amp|amps"
    r"|units?|u\b|mg|mcg|meq|ml|cc|l\b|hours?|hrs?|h\b|min|mins|minutes?|days?|d\b|wks?|weeks?|months?|yrs?"
    r"|years?|times|x\b|bpm|breaths|cmh2o|cm|mm|peep|ps|psv|bipap|cpap|fio2|sat|o2|lpm|l/min|vent|ac\b|edema"
    r"|pulses?|reflexes|scale|score|ratio|strength|of\b|ths|rds|nds)\b)"
)
_VENTILATOR_NEAR = re.compile(r"(?i)\b(?:psv?|peep|cpap|bipap|simv|imv|vent|ventilator|settings?|a/c|fio2)\b")
_COMMON_FRACTIONS = frozenset({"1/2", "1/3", "2/3", "1/4", "3/4", "1/8"})
_STRONG_CUE = re.compile(
    r"(?i)\b(?:on|since|dated|dos|admitted|adm|discharged|d/c'?d|started|stopped|due|scheduled|dob|born|until"
    r"|thru|through|last|lbm|appt|visit|surgery|placed|inserted|removed|done|changed|arrive|arrived|arriving"
    r"|expired|extubated|intubated|transferred|readmitted)[ \t]*:?[ \t]*\(?[ \t]*$"
    r"|\d/\d{1,2}[ \t]*(?:-|to|thru|or|and|,)[ \t]*$"
)


class ClinicalDateRecognizer(GroupPatternRecognizer):
    """Day-level and month-level dates; a year on its own is not PHI and is never matched."""

    CONTEXT = ("date", "dob", "admitted", "discharged", "on")
    PATTERNS = (
        GroupPattern(
            "mdy",
            rf"(?<![\d/.xX*])(?P<phi>{_M}(?P<s>[/-]){_D}(?P=s)(?:{_Y}|\d{{2}}))(?![\d/%]|-\d|[ \t]*%)",
            0.9,
            "DATE",
        ),
        GroupPattern("mdy_dot", rf"(?<![\d.])(?P<phi>{_M}\.{_D}\.{_Y})(?![\d.])", 0.85, "DATE"),
        GroupPattern(
            "ymd", rf"(?<![\d/.-])(?P<phi>{_Y}(?P<s>[/.-]){_M}(?P=s){_D})(?![\d/]|\.\d)", 0.9, "DATE"
        ),
        GroupPattern(
            "ymd_compact",
            rf"(?<=[:\s])(?P<phi>{_Y}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?=\s|$)",
            0.4,
            "DATE",
        ),
        GroupPattern(
            "d_mon_y", rf"\b(?P<phi>{_D}(?P<s>[- ]){MONTH}\.?(?P=s)(?:{_Y}|\d{{2}}))\b", 0.9, "DATE"
        ),
        GroupPattern(
            "mon_d_y",
            rf"\b(?P<phi>{MONTH}\.?\s+{_D}{_ORD}?(?:,?\s+{_Y})?)(?![\d:])(?!\s*(?:mg|mcg|g|ml|mL|units?|%|am|pm)\b)",
            0.85,
            "DATE",
        ),
        GroupPattern(
            "d_mon", rf"\b(?P<phi>{_D}{_ORD}?\s+(?:of\s+)?{MONTH}\.?(?:,?\s+{_Y})?)\b", 0.85, "DATE"
        ),
        GroupPattern("mon_y", rf"\b(?P<phi>{MONTH}\.?,?\s+(?:(?i:of)\s+)?{_Y})\b", 0.85, "DATE"),
        GroupPattern("m_y", rf"(?<![\d/.])(?P<phi>{_M}/{_Y})(?![\d/])", 0.8, "DATE"),
        GroupPattern(
            "md_cue", rf"\b{_CUE}\s*(?P<phi>{_M}/{_D})(?![\d/]|\.\d|\s*(?:strength|pain|tab|mg))", 0.8, "DATE"
        ),
        # Real notes write month/day bare ("CCU 9/7", "LBM 11/4", "8/25 @2330"): taken unless its context says
        # score, fraction, ratio or ventilator setting (see `_month_day_in_context`).
        GroupPattern(
            "md_bare", rf"(?<![\d/:+*#$])(?<!\d[.-])(?<!\d[xX])(?P<phi>{_M}/{_D})(?![\w/]|[.,:]\d)", 0.6, "DATE"
        ),
        GroupPattern(
            "m_yy", r"(?<![\d/:+*#$])(?<!\d[.-])(?<!\d[xX])(?P<phi>(?:0?[1-9]|1[0-2])/(?:[4-9]\d|3[2-9]))(?![\w/%]|[.,:]\d)", 0.6, "DATE"
        ),
        GroupPattern("compact_dmy", rf"(?<![A-Za-z0-9])(?P<phi>{COMPACT_DMY})(?![A-Za-z0-9])", 0.9, "DATE"),
        GroupPattern(
            "lower_mon_d_y",
            rf"\b(?P<phi>{_LOWER_MONTH}\.?[ \t]+{_D}{_ORD}?,?[ \t]+{_Y})\b",
            0.85,
            "DATE",
        ),
        GroupPattern("lower_mon_y", rf"\b(?P<phi>{_LOWER_MONTH}\.?,?[ \t]+(?:of[ \t]+)?{_Y})\b", 0.8, "DATE"),
        GroupPattern(
            "ordinal_day",
            rf"(?i:\bon[ \t]+the|\bof[ \t]+the)[ \t]+(?P<phi>{_D}{_ORD})\b(?![ \t]*(?i:time|degree|day|dose|floor|grade|trimester|percentile|rib|intercostal|icu|cycle|week|month))",
            0.7,
            "DATE",
        ),
        # Dates in prose: "march third", "March the twenty-first, 2020", "the third of March", "Christmas Eve 2019"
        GroupPattern(
            "mon_ordinal_word",
            rf"\b(?P<phi>{MONTH}\.?[ \t]+(?:(?i:the)[ \t]+)?(?i:{ORDINAL_WORD})(?:,?[ \t]+{_Y})?)(?![\w-])",
            0.85,
            "DATE",
        ),
        GroupPattern(
            "ordinal_word_mon",
            rf"(?<![\w-])(?P<phi>(?i:{ORDINAL_WORD})[ \t]+(?i:(?:day[ \t]+)?of)[ \t]+{MONTH}\.?(?:,?[ \t]+{_Y})?)\b",
            0.85,
            "DATE",
        ),
        GroupPattern("holiday_year", rf"(?i)\b(?P<phi>{_HOLIDAY},?[ \t]+(?:of[ \t]+)?{_Y})\b", 0.85, "DATE"),
        GroupPattern(
            "md_line",
            rf"(?m)^\s*(?P<phi>{_M}/{_D})(?=\s*[:\-]|\s+@|\s+\d{{1,2}}:\d{{2}}|\s+\d{{4}}h?\b)",
            0.8,
            "DATE",
        ),
        GroupPattern(
            "md_time", rf"(?<![\d/.])(?P<phi>{_M}/{_D})(?=\s*(?:@|at)?\s*\d{{1,2}}:\d{{2}})", 0.8, "DATE"
        ),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        if pattern.name == "md_cue":
            month, day = value.split("/")
            return month != day  # "5/5", "10/10" are scores
        return True

    def refine(self, text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
        if pattern.name in ("md_bare", "m_yy", "md_cue") and not _month_day_in_context(text, start, end):
            return None
        return start, end, pattern.entity


def _month_day_in_context(text: str, start: int, end: int) -> bool:
    """Whether a bare "m/d" reads as a date here rather than a score (pain 7/10, 2/6 murmur, strength 5/5), a
    fraction (1/2 NS), a ratio or a ventilator setting (PS 10/5, 600x12/5/40%)."""
    value = text[start:end]
    line_start = text.rfind("\n", 0, start) + 1
    before = text[max(line_start, start - 30) : start]
    after = text[end : end + 16]
    if _NOT_DATE_AFTER.match(after):
        return False
    strong = bool(_STRONG_CUE.search(before))
    if not strong and (_NOT_DATE_BEFORE.search(before) or _VENTILATOR_NEAR.search(before)):
        return False
    month, day = value.split("/")
    if value in _COMMON_FRACTIONS or day == "10" and int(month) <= 10:
        return strong  # "1/2" and "7/10" are mostly fractions and scores: a date only after a strong cue
    if month == day:  # "5/5", "10/10": a date after a strong cue, before a time, or opening a sentence
        timed = re.match(r"[ \t]*(?:@|at[ \t]+\d|\d{3,4}\b)", after)
        opens = re.search(r"(?:^|[.!?;:][ \t]*|[ \t]{2,})$", text[line_start:start])
        return strong or bool(timed) or bool(opens)
    return True
