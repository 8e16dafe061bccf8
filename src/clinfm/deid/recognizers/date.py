"""Dates in clinical shorthand: "03/14/2021", "3/14/21", "2021-03-14", "14-Mar-2021", "March 14th", "Mar 2021",
and "3/14" when a date cue precedes it (fractions such as "5/5 strength" or "1/2 tab" stay)."""

from __future__ import annotations

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


class ClinicalDateRecognizer(GroupPatternRecognizer):
    """Day-level and month-level dates; a year on its own is not PHI and is never matched."""

    CONTEXT = ("date", "dob", "admitted", "discharged", "on")
    PATTERNS = (
        GroupPattern(
            "mdy", rf"(?<![\d/.])(?P<phi>{_M}(?P<s>[/-]){_D}(?P=s)(?:{_Y}|\d{{2}}))(?![\d/]|-\d)", 0.9, "DATE"
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
        GroupPattern("mon_y", rf"\b(?P<phi>{MONTH}\.?,?\s+(?:of\s+)?{_Y})\b", 0.85, "DATE"),
        GroupPattern("m_y", rf"(?<![\d/.])(?P<phi>{_M}/{_Y})(?![\d/])", 0.8, "DATE"),
        GroupPattern(
            "md_cue", rf"\b{_CUE}\s*(?P<phi>{_M}/{_D})(?![\d/]|\.\d|\s*(?:strength|pain|tab|mg))", 0.8, "DATE"
        ),
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
