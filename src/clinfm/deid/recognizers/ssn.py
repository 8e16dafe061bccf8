"""Social security numbers after an SSN cue, including the undashed and spaced forms Presidio scores low."""

from __future__ import annotations

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer


class SSNRecognizer(GroupPatternRecognizer):
    """ "SSN: 123-45-6789", "social security # 123 45 6789", "SS# 123456789"."""

    CONTEXT = ("ssn", "social", "security")
    PATTERNS = (
        GroupPattern(
            "ssn_cue",
            r"\b(?i:SSN|SS\s?#|SS\s+no\.?|social\s+security(?:\s+(?:number|no\.?|#))?|soc\s+sec(?:\s+#)?)\s*[:#=]?\s*"
            r"(?P<phi>\d{3}[- ]?\d{2}[- ]?\d{4})\b",
            0.95,
            "SSN",
        ),
        GroupPattern(
            "ssn_dashed",
            r"(?<![\d-])(?P<phi>(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4})(?![\d-])",
            0.6,
            "SSN",
        ),
    )
