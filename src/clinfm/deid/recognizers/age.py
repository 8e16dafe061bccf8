"""Ages over 89 ("92 y/o", "age 94", "95-year-old", "aged 101", "in her 90s"), in figures or in words ("age
ninety-three", "ninety-one year old", "in her nineties"); younger ages are not PHI."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_OLD = r"(?:9\d|1[01]\d|12[0-5])"  # 90..125
_UNIT = r"(?:y/o|y\.o\.?|yo|yrs?\.?(?:\s+old)?|years?(?:\s+|-)old|year-old|yr-old|y\.?\s?o\.?)"

_UNITS = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_TEENS = r"(?:ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
# 90..125 in words: "ninety", "ninety-three", "ninety three", "one hundred (and) two", "a hundred and ten"
_OLD_WORDS = (
    rf"(?:ninety(?:[- ]{_UNITS})?|(?:one|a)[- ]hundred(?:(?:[- ]and)?[- ](?:{_UNITS}|{_TEENS}|twenty(?:[- ](?:one|two|three|four|five))?))?)"
)
_WORD_UNIT = r"(?:years?|yrs?|y/o|yo)(?:[- ](?:old|of[ \t]+age))?|year-old"


class AgeOver89Recognizer(GroupPatternRecognizer):
    """The number of an age of 90 or more; the unit stays so surrogates read "90+ y/o"."""

    CONTEXT = ("age", "aged", "year", "old", "yo")
    PATTERNS = (
        GroupPattern(
            "age_unit", rf"\b(?P<phi>{_OLD})(?:\s*|-){_UNIT}(?![a-z])", 0.9, "AGE_OVER_89", re.IGNORECASE
        ),
        GroupPattern(
            "age_cue",
            rf"\b(?:age|aged|age:)\s*:?\s*(?P<phi>{_OLD})\b(?!\s*(?:%|mg|kg|mm|ml|cm|units?))",
            0.9,
            "AGE_OVER_89",
            re.IGNORECASE,
        ),
        GroupPattern("age_sex", rf"\b(?P<phi>{_OLD})(?:M|F)\b", 0.8, "AGE_OVER_89"),
        GroupPattern(
            "age_person",
            rf"\b(?P<phi>{_OLD})[\s-]*(?:year[\s-]*old\s+)?(?:woman|man|female|male|gentleman|lady|WF|WM|BF|BM)\b",
            0.85,
            "AGE_OVER_89",
            re.IGNORECASE,
        ),
        # "age ninety-three", "aged one hundred and one", "ninety-one year old", "a ninety-year-old man"
        GroupPattern(
            "age_cue_words",
            rf"\b(?:age|aged|age:)[ \t]*:?[ \t]*(?P<phi>{_OLD_WORDS})\b(?![- ](?:percent|%|mg|kg|minutes?|mins?))",
            0.85,
            "AGE_OVER_89",
            re.IGNORECASE,
        ),
        GroupPattern(
            "age_unit_words", rf"\b(?P<phi>{_OLD_WORDS})[- ]+(?:{_WORD_UNIT})(?![a-z])", 0.85, "AGE_OVER_89", re.IGNORECASE
        ),
        GroupPattern(
            "decade_words",
            r"\b(?:in\s+(?:his|her|their)\s+(?:early\s+|mid\s+|late\s+)?)(?P<phi>nineties|hundreds)\b",
            0.8,
            "AGE_OVER_89",
            re.IGNORECASE,
        ),
        GroupPattern(
            "decade",
            r"\b(?:in\s+(?:his|her|their)\s+(?:early\s+|mid\s+|late\s+)?)(?P<phi>(?:9|1[01])0s)\b",
            0.8,
            "AGE_OVER_89",
            re.IGNORECASE,
        ),
    )
