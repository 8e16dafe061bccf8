"""Any other unique identifying number: accession, specimen, encounter, study/subject, claim and passport ids."""

from __future__ import annotations

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_ID = r"(?P<phi>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{2,24}[A-Z0-9])\b"


class OtherIdRecognizer(GroupPatternRecognizer):
    """An id after a cue that names an identifier: "Accession #", "Specimen ID", "CSN", "Study ID", ..."""

    CONTEXT = ("accession", "specimen", "encounter", "study", "claim", "passport")
    PATTERNS = (
        GroupPattern(
            "id_cue_bare",
            r"\b(?i:accession|acc\s?#|path(?:ology)?\s+req(?:uisition)?|req(?:uisition)?\s*#|CSN|FIN|claim|passport|requisition|prior\s+auth(?:orization)?|PA\s+#|Rx\s*#"
            r"|prescription\s*#|badge|employee\s+id|student\s+id|confirmation|barcode|MPI|EMPI|enterprise\s+id)"
            rf"\s*(?i:#|no\.?|number|num\.?|id|code)?\s*[:#=\-]?\s*{_ID}",
            0.85,
            "OTHER_ID",
        ),
        GroupPattern(
            "id_cue",
            r"\b(?i:specimen|sample|encounter|visit|case|study|subject|participant|trial|order|reference|ref|ticket"
            r"|control|record|patient|pt|registry|tracking|pathology|path|report|exam|lab)"
            rf"\s*(?i:#|no\.?|number|num\.?|id)\s*[:#=\-]?\s*{_ID}",
            0.85,
            "OTHER_ID",
        ),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        return sum(ch.isdigit() for ch in value) >= 3
