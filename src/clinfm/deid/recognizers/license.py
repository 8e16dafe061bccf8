"""Certificate/license numbers: DEA numbers (checksum), NPIs, state medical/nursing and driver's licences."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer


def dea_checksum_ok(value: str) -> bool:
    """DEA: 2 letters + 7 digits; (d1+d3+d5) + 2*(d2+d4+d6) ends in d7."""
    d = [int(ch) for ch in value[2:]]
    return len(d) == 7 and (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


def npi_checksum_ok(value: str) -> bool:
    """NPI: Luhn over the 10 digits prefixed with 80840."""
    digits = [int(ch) for ch in "80840" + value]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


_NUM = r"\s*(?:#|no\.?|number|num\.?|id)?\s*(?:is)?\s*[:#=\-]?\s*"


class LicenseNumberRecognizer(GroupPatternRecognizer):
    """DEA numbers and NPIs anywhere when their checksum holds; after their cue, whatever the checksum (a typo
    in an identifier is still an identifier); licence numbers after their cue."""

    CONTEXT = ("dea", "npi", "license", "licence", "lic")
    PATTERNS = (
        GroupPattern(
            "dea_cue", rf"\bDEA{_NUM}(?P<phi>[A-Z][A-Z9]\d{{7}})\b", 0.95, "LICENSE_NUMBER", re.IGNORECASE
        ),
        GroupPattern("dea", r"\b(?P<phi>[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7})\b", 0.7, "LICENSE_NUMBER"),
        GroupPattern("npi_cue", rf"\bNPI{_NUM}(?P<phi>\d{{10}})\b", 0.95, "LICENSE_NUMBER", re.IGNORECASE),
        GroupPattern("npi", r"\b(?P<phi>[12]\d{9})\b", 0.6, "LICENSE_NUMBER"),
        GroupPattern(
            "license_cue",
            r"\b(?:(?:medical|state|MD|RN|nursing|physician|professional|driver'?s?|drivers|DL|CDL)\s+)?"
            rf"(?:licen[cs]e|lic\.?|DL){_NUM}(?P<phi>(?=[A-Z0-9-]*\d)[A-Z]{{0,3}}[- ]?\d[A-Z0-9-]{{3,14}})\b",
            0.9,
            "LICENSE_NUMBER",
            re.IGNORECASE,
        ),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        if pattern.name == "dea":
            return dea_checksum_ok(value)
        if pattern.name == "dea_cue":
            return value[2:].isdigit()
        if pattern.name == "npi":  # ten digits with no cue count as an NPI only when its check digit holds
            return npi_checksum_ok(value)
        return True
