"""Telephone and fax numbers in North-American formats, pagers and extensions; a fax cue makes it FAX."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

# Within this many characters before the number, a fax cue ("fax", "F:", "Fx") decides the label.
FAX_CUE = re.compile(r"(?i:\bfax|\bfacsimile|\bfx)\b[^\n\d]{0,12}$|(?:^|[\s(|;,])F\s*[:#.]\s*$")
PHONE_CUE = re.compile(
    r"(?i:\bph|\bphone|\btel|\bcell|\bmobile|\bhome|\bwork|\bcall|\bpager|\bc|\bh|\bw|\bp)\b[^\n\d]{0,6}$"
)


def fax_context(text: str, start: int) -> bool:
    """Whether the number starting at `start` is introduced as a fax number."""
    before = text[max(0, start - 24) : start]
    return bool(FAX_CUE.search(before)) and not PHONE_CUE.search(before)


class PhoneFaxRecognizer(GroupPatternRecognizer):
    """(617) 555-1234, 617-555-1234, 617.555.1234, +1 617 555 1234, with "ext 12"; pager/extension numbers."""

    CONTEXT = ("phone", "tel", "call", "fax", "cell", "pager")
    PATTERNS = (
        GroupPattern(
            "nanp",
            r"(?<![\w/.-])(?P<phi>(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
            r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,5})?)(?![\w/-]|\.\d)",
            0.8,
            "PHONE",
        ),
        GroupPattern("slashed", r"(?<![\w/.-])(?P<phi>\d{3}/\d{3}/\d{4})(?![\w/-])", 0.7, "PHONE"),
        GroupPattern(
            "pager",
            r"\b(?i:pager|beeper|pgr|pg|ext\.?|extension|x)[\s#:]*(?P<phi>\d{4,7})\b(?![./]\d)",
            0.75,
            "PHONE",
        ),
    )

    def refine(self, text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
        # "x 1234" only counts right after a phone-like word ("call x4123"), not "x 2 days"
        bare_x = text[max(0, start - 4) : start].strip().lower() == "x"
        if bare_x and not re.search(
            r"(?i)(call|phone|page|ext|tel|#)\W*x\s*$", text[max(0, start - 16) : start]
        ):
            return None
        return start, end, "FAX" if fax_context(text, start) else "PHONE"
