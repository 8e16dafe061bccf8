"""Account numbers: billing/hospital/bank accounts after an account cue ("Acct #", "account no.")."""

from __future__ import annotations

import re

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer


class AccountNumberRecognizer(GroupPatternRecognizer):
    """An id after "acct", "account", "billing #", "invoice #", "HAR"."""

    CONTEXT = ("account", "acct", "billing", "invoice")
    PATTERNS = (
        GroupPattern(
            "account_cue",
            r"\b(?:acct|acc't|account|billing(?:\s+account)?|invoice|HAR|patient\s+account|bank\s+account)\.?"
            r"\s*(?:#|no\.?|number|num\.?)?\s*[:#=\-]?\s*(?:ending\s+in\s+)?(?P<phi>[A-Z]{0,4}-?\d[\d-]{3,18}\d)\b",
            0.9,
            "ACCOUNT_NUMBER",
            re.IGNORECASE,
        ),
    )
