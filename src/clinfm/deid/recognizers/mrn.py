"""Medical record numbers: an id after an MRN cue ("MRN: 00123456", "Med Rec #", "medical record number")."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_CUE = (
    r"(?:MRN|MR\s?#|MR\s+(?:No|Num)\.?|Med(?:ical)?\.?\s*Rec(?:ord)?s?\.?\s*(?:#|No\.?|Num(?:ber)?\.?)?"
    r"|medical\s+record\s+(?:number|no\.?|num\.?|#)|Unit\s+(?:No\.?|Number|#)|Hospital\s+(?:No\.?|Number|#)"
    r"|Chart\s*(?:#|No\.?|Number))"
)


class MRNRecognizer(GroupPatternRecognizer):
    """Digits (optionally a short letter prefix and dashes) following an MRN cue."""

    CONTEXT = ("mrn", "medical", "record", "chart")
    PATTERNS = (
        GroupPattern(
            "mrn_cue",
            rf"\b{_CUE}\s*(?:is|of)?\s*[:#=\-]?\s*(?P<phi>[A-Z]{{0,3}}-?\d[\d-]{{3,14}}\d)\b",
            0.9,
            "MRN",
            re.IGNORECASE,
        ),
    )
