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
            "ssn_last_four",
            r"(?i:\b(?:SSN|SS\s?#|social\s+security(?:\s+(?:number|no\.?|#))?)[ \t]*\(?[ \t]*(?:last|final)[ \t]+(?:4|four)"
            r"(?:[ \t]+digits)?[ \t]*\)?|\b(?:last|final)[ \t]+(?:4|four)(?:[ \t]+digits)?[ \t]+(?:of[ \t]+)?(?:the[ \t]+)?"
            r"(?:pt'?s[ \t]+|patient'?s[ \t]+)?(?:SSN|SS\s?#|social(?:\s+security)?(?:\s+(?:number|no\.?|#))?))"
            r"[ \t]*(?:[:#=]|is|-)?[ \t]*(?:(?:x{3}|\*{3}|X{3})[- ]?(?:x{2}|\*{2}|X{2})[- ]?)?(?P<phi>\d{4})(?!\d)",
            0.9,
            "SSN",
        ),
        GroupPattern(
            "ssn_masked",
            r"(?<![\w-])(?:x{3}|X{3}|\*{3})-(?:x{2}|X{2}|\*{2})-(?P<phi>\d{4})(?!\d)",
            0.85,
            "SSN",
        ),
        GroupPattern(
            "ssn_dashed",
            r"(?<![\d-])(?P<phi>(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4})(?![\d-])",
            0.6,
            "SSN",
        ),
    )
