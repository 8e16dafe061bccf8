"""Biometric identifiers: fingerprint, voiceprint, retina/iris and face template ids written into a note."""

from __future__ import annotations

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer


class BiometricIdRecognizer(GroupPatternRecognizer):
    """An id after a biometric cue ("fingerprint ID: FP-88213", "voiceprint hash 9f8c...")."""

    CONTEXT = ("biometric", "fingerprint", "voiceprint", "retina", "iris")
    PATTERNS = (
        GroupPattern(
            "biometric_cue",
            r"\b(?i:biometric|finger\s?print|thumb\s?print|palm\s?print|voice\s?print|retina[l]?|iris|face|facial"
            r"|palm[\s-]?vein|finger[\s-]?vein|vein[\s-]?pattern|hand\s+geometry|gait)"
            r"\s*(?i:scan|template|signature|recognition|print|enrol(?:l)?ment)?\s*"
            r"(?i:id|identifier|#|no\.?|number|hash|code|template(?:\s+id)?|key)\s*[:#=\-]?\s*"
            r"(?P<phi>(?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{3,64}[A-Za-z0-9])\b",
            0.9,
            "BIOMETRIC_ID",
        ),
        # Identity-confirmation sentences: "identity confirmed by palm-vein scan, template PV-88213-A"
        GroupPattern(
            "biometric_sentence",
            r"\b(?i:biometric|finger\s?print|thumb\s?print|palm\s?print|voice\s?print|retina[l]?|iris|facial"
            r"|palm[\s-]?vein|finger[\s-]?vein|vein[\s-]?pattern|hand\s+geometry)"
            r"[^.\n]{0,40}?(?i:\bid\b|identifier|#|\bno\.|number|hash|code|template|key|ref(?:erence)?|record)"
            r"[ \t]*(?:(?i:id|no\.?|#|is|was))?[ \t]*[:#=\-]?[ \t]*"
            r"(?P<phi>(?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{3,64}[A-Za-z0-9])\b",
            0.85,
            "BIOMETRIC_ID",
        ),
    )

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        return sum(ch.isdigit() for ch in value) >= 3
