"""Vehicle identifiers: VINs (17 characters, check digit when uncued) and licence plates after a plate cue."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.address import STATE_ABBREVIATIONS, STATE_NAMES
from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGH", range(1, 9)))}
_VIN_VALUES.update(dict(zip("JKLMN", range(1, 6))) | {"P": 7, "R": 9} | dict(zip("STUVWXYZ", range(2, 10))))
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_checksum_ok(vin: str) -> bool:
    """North-American VIN check digit (position 9)."""
    total = sum(_VIN_VALUES[ch] * w for ch, w in zip(vin.upper(), _VIN_WEIGHTS))
    check = "X" if total % 11 == 10 else str(total % 11)
    return vin[8].upper() == check


_VIN = r"[A-HJ-NPR-Z0-9]{17}"
_PLATE = r"(?=[A-Z0-9 -]*\d)(?=[A-Z0-9 -]*[A-Z])[A-Z0-9]{1,4}[- ]?[A-Z0-9]{2,5}"
_STATE = "(?:" + "|".join(STATE_NAMES) + "|" + "|".join(STATE_ABBREVIATIONS) + ")"


class VehicleIdRecognizer(GroupPatternRecognizer):
    """VINs and licence plates."""

    CONTEXT = ("vin", "vehicle", "plate", "car")
    PATTERNS = (
        GroupPattern(
            "vin_cue",
            rf"\bVIN\s*(?:#|no\.?|number)?\s*[:#]?\s*(?P<phi>{_VIN})\b",
            0.95,
            "VEHICLE_ID",
            re.IGNORECASE,
        ),
        GroupPattern("vin", rf"\b(?P<phi>{_VIN})\b", 0.7, "VEHICLE_ID"),
        GroupPattern(
            "plate_cue",
            r"\b(?i:licen[cs]e\s+plate|plate\s*(?:#|no\.?|number)|plates?\s+(?:is|reads|of))\s*(?i:#|no\.?|number)?\s*[:#]?\s*"
            r"(?P<phi>(?=[A-Z0-9 -]*\d)(?=[A-Z0-9 -]*[A-Z])[A-Z0-9]{1,4}[- ]?[A-Z0-9]{2,5})\b",
            0.85,
            "VEHICLE_ID",
        ),
        # "Massachusetts plate 7KX-P219", "MA plate ABC 1234", "plate 4TRS882 (NH)", "plate: 8GHJ 772"
        GroupPattern(
            "plate_state",
            rf"\b{_STATE}\.?[ \t]+(?i:licen[cs]e[ \t]+)?(?i:registration[ \t]+)?(?i:plates?|tag)[ \t]*"
            rf"(?i:#|no\.?|number)?[ \t]*(?:[:#]|(?i:is|reads|of))?[ \t]*(?P<phi>{_PLATE})\b",
            0.85,
            "VEHICLE_ID",
        ),
        GroupPattern(
            "plate_then_state",
            rf"\b(?i:plates?|tag)[ \t]*(?:[:#]|(?i:is|reads|number|no\.?))?[ \t]*(?P<phi>{_PLATE})[ \t]*"
            rf"(?:\(?[ \t]*{_STATE}\b|,?[ \t]+(?i:in|from|registered)[ \t])",
            0.85,
            "VEHICLE_ID",
        ),
        GroupPattern("plate_sep", rf"\b(?i:plate)[ \t]*[:#][ \t]*(?P<phi>{_PLATE})\b", 0.85, "VEHICLE_ID"),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        has_alpha = any(ch.isalpha() for ch in value)
        if pattern.name == "vin":
            return has_alpha and any(ch.isdigit() for ch in value) and vin_checksum_ok(value)
        return True
