"""Health plan beneficiary numbers: member/subscriber/policy/group ids, Medicare (MBI) and Medicaid ids."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

# Medicare Beneficiary Identifier: 11 characters, letters exclude S, L, O, I, B, Z.
_A = "[AC-HJKMNP-RT-Y]"
_AN = "[AC-HJKMNP-RT-Y0-9]"
MBI = rf"[1-9]{_A}{_AN}\d-?{_A}{_AN}\d-?{_A}{_A}\d\d"


class HealthPlanIdRecognizer(GroupPatternRecognizer):
    """An id (with at least one digit) after a plan cue, and MBIs anywhere."""

    CONTEXT = ("member", "subscriber", "policy", "insurance", "medicare", "medicaid", "plan", "group")
    PATTERNS = (
        GroupPattern(
            "plan_cue",
            r"\b(?:member|subscriber|policy(?:holder)?|insurance|insurer|beneficiary|health\s+plan|plan|group"
            r"|medicaid|medicare|MBI|HICN|Medi-Cal|BCBS|Aetna|Cigna|Humana|UHC|Tricare)"
            r"\s*(?:id|#|no\.?|number|num\.?|identifier)?\s*(?:is)?\s*[:#=\-]?\s*"
            r"(?P<phi>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,20}[A-Z0-9])\b",
            0.85,
            "HEALTH_PLAN_ID",
            re.IGNORECASE,
        ),
        GroupPattern("mbi", rf"\b(?P<phi>{MBI})\b", 0.75, "HEALTH_PLAN_ID"),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        # "plan 2" or "group 12" are list items, not ids; a year ("Medicare 2019") is not one either.
        digits = sum(ch.isdigit() for ch in value)
        return not (value.isdigit() and len(value) == 4) and digits >= 3
