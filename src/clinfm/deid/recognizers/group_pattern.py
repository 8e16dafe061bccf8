"""A Presidio recognizer whose PHI is a named group of a regex, so context words can sit in the pattern.

Presidio's `PatternRecognizer` reports the whole match; clinical identifiers need their cue ("MRN:", "wife")
in the pattern but not in the span, and Python's `re` has no variable-width look-behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts


@dataclass(frozen=True)
class GroupPattern:
    """One regex; every group named `phi` or `phi<n>` that matched is reported as `entity`."""

    name: str
    regex: str
    score: float
    entity: str
    flags: int = 0


class GroupPatternRecognizer(EntityRecognizer):
    """Base class: subclasses set PATTERNS (and CONTEXT), and may override `validate` / `refine`."""

    PATTERNS: tuple[GroupPattern, ...] = ()
    CONTEXT: tuple[str, ...] = ()
    name: str  # set by EntityRecognizer.__init__ (the class name), whose code mypy cannot infer it from

    def __init__(self) -> None:
        entities = sorted({p.entity for p in self.PATTERNS})
        super().__init__(supported_entities=entities, supported_language="en", context=list(self.CONTEXT))

    def load(self) -> None:
        self._compiled = [(p, re.compile(p.regex, p.flags)) for p in self.PATTERNS]

    def validate(self, value: str, pattern: GroupPattern) -> bool:
        """Whether a matched value is really PHI (checksums, word lists). Default: yes."""
        return True

    def refine(self, text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
        """Adjust a span (trim, relabel) or drop it (None). Default: keep as is."""
        return start, end, pattern.entity

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for pattern, rx in self._compiled:
            for match in rx.finditer(text):
                for group, value in match.groupdict().items():
                    if value is None or not group.startswith("phi"):
                        continue
                    start, end = match.span(group)
                    if not self.validate(value, pattern):
                        continue
                    refined = self.refine(text, start, end, pattern)
                    if refined is None or refined[0] >= refined[1]:
                        continue
                    results.append(self._result(*refined, pattern))
        return results

    def _result(self, start: int, end: int, entity: str, pattern: GroupPattern) -> RecognizerResult:
        return RecognizerResult(
            entity_type=entity,
            start=start,
            end=end,
            score=pattern.score,
            analysis_explanation=AnalysisExplanation(
                recognizer=self.name, original_score=pattern.score, pattern_name=pattern.name
            ),
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                "pattern": pattern.name,
            },
        )
