"""Device identifiers and serial numbers: serial/S/N, lot numbers, UDIs, device ids, MAC addresses."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer


class DeviceIdRecognizer(GroupPatternRecognizer):
    """An id after a device cue, and GS1-style UDIs ("(01)00884521062047(17)250101(10)ABC123")."""

    CONTEXT = ("serial", "lot", "udi", "device", "implant", "pacemaker")
    PATTERNS = (
        GroupPattern(
            "device_cue",
            r"\b(?:serial|S/N|SN|lot|UDI|device(?:\s+id)?|implant\s+id|generator\s+serial|IMEI)\.?"
            r"\s*(?:#|no\.?|number|num\.?|id)?\s*[:#=\-]?\s*"
            r"(?P<phi>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,30}[A-Z0-9])\b",
            0.85,
            "DEVICE_ID",
            re.IGNORECASE,
        ),
        GroupPattern("gs1_udi", r"(?P<phi>\(01\)\d{14}(?:\(\d{2,4}\)[A-Z0-9]+)*)", 0.95, "DEVICE_ID"),
        GroupPattern("mac", r"\b(?P<phi>(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2})\b", 0.8, "DEVICE_ID"),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        # "lot 2" / "device 3" are counts; a real serial has some length and a digit.
        return pattern.name != "device_cue" or sum(ch.isdigit() for ch in value) >= 2
