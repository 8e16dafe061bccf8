"""Web addresses: a real scheme ("https://..."), "www.", or a host under a known top-level domain written in
lower case or after a web cue. "TODAY.FI", "BEDSIDE.AM" and "380CC.NO" are sentence ends without a space."""

from __future__ import annotations

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

# Generic and the commonest country domains; two-letter codes that are English words or clinical shorthand when
# a space is missing ("AM", "NO", "IN", "IS", "ME", "OR", "PT", "MD", "CO", "FI") are left out of the bare form.
TLDS = (
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "io", "health", "care", "clinic", "hospital",
    "app", "dev", "online", "site", "us", "uk", "ca", "au", "de", "fr", "nl", "es", "it", "ch", "se", "jp", "cn",
    "br", "mx", "nz", "ie", "eu", "ru", "pl", "za", "tv", "ly",
)  # fmt: skip
_TLD = "(?:" + "|".join(sorted(TLDS, key=len, reverse=True)) + ")"
_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PATH = r"(?:[/?#][^\s<>\"'()\[\]{}]*[^\s<>\"'()\[\]{}.,;:!?])?"
_CUE = r"(?i:website|web\s+site|site|portal|url|link|page|visit|go\s+to|see|at|online|homepage|blog)"


class WebAddressRecognizer(GroupPatternRecognizer):
    """Addresses with a scheme or "www." in any case; bare hosts ("mychart.example.org") in lower case, or in any
    case after a web cue ("website: EXAMPLE.COM"); e-mail addresses spelled out ("JSMITH AT YAHOO DOT COM")."""

    CONTEXT = ("url", "website", "www", "http", "portal", "link")
    PATTERNS = (
        GroupPattern(
            "scheme",
            r"(?i)(?<![\w@])(?P<phi>(?:https?|ftp|sftp)://[^\s<>\"'()\[\]{}]+[^\s<>\"'()\[\]{}.,;:!?])",
            0.9,
            "URL",
        ),
        GroupPattern(
            "www",
            rf"(?i)(?<![\w@./])(?P<phi>www\d?\.(?:{_HOST_LABEL}\.)+[a-z]{{2,24}}(?![\w-]){_PATH})",
            0.9,
            "URL",
        ),
        GroupPattern(
            "bare_host",
            rf"(?<![\w@./-])(?P<phi>(?:{_HOST_LABEL}\.)+{_TLD}(?![\w@-]){_PATH})",
            0.75,
            "URL",
        ),
        # "JSMITH AT YAHOO DOT COM", "j.smith (at) gmail (dot) com": an e-mail spelled out, any case
        GroupPattern(
            "spelled_email",
            rf"(?i)(?<![\w.@-])(?P<phi>[a-z0-9][a-z0-9._%+-]*[ \t]*(?:\(at\)|\[at\]|(?<=[ \t])at(?=[ \t]))[ \t]*"
            rf"{_HOST_LABEL}(?:[ \t]*(?:\(dot\)|\[dot\]|(?<=[ \t])dot(?=[ \t])|\.)[ \t]*{_HOST_LABEL})*"
            rf"[ \t]*(?:\(dot\)|\[dot\]|(?<=[ \t])dot(?=[ \t]))[ \t]*{_TLD})(?![\w-])",
            0.85,
            "EMAIL",
        ),
        GroupPattern(
            "cued_host",
            rf"{_CUE}\s*[:\-]?\s*(?P<phi>(?i:(?:{_HOST_LABEL}\.)+{_TLD})(?![\w@-]){_PATH})",
            0.85,
            "URL",
        ),
    )
