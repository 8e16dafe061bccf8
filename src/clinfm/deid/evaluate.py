"""Scoring PHI detection against gold spans: Safe Harbor character recall and precision, overall and per label.

Characters are the unit (whitespace is not counted), so a name found as two pieces or with its title scores
what it should. Gold labelled `NEUTRAL` is neither a miss when left nor a false alarm when removed (a state
in an address, a hospital's name); trap spans are look-alikes that must not be flagged, counted separately.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

NEUTRAL = "~"


@dataclass(frozen=True)
class LabelScore:
    """One Safe Harbor label. Recall is of the gold of this label (found under any label, and under this one);
    precision is of the characters predicted with this label (true when they are gold PHI of any label)."""

    gold_chars: int = 0
    gold_spans: int = 0
    char_recall: float | None = None
    char_recall_label_aware: float | None = None
    span_recall: float | None = None
    predicted_chars: int = 0
    char_precision: float | None = None


@dataclass(frozen=True)
class DeidScore:
    notes: int
    gold_chars: int
    predicted_chars: int
    char_recall: float | None
    char_recall_label_aware: float | None
    char_precision: float | None
    span_recall: float | None  # gold spans with every non-space character covered
    span_precision: float | None  # predicted spans with at least half their characters gold PHI
    trap_spans: int = 0
    traps_flagged: int = 0  # trap spans with any predicted character
    per_label: dict[str, LabelScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _triple(span: Any) -> tuple[int, int, str]:
    """(start, end, label) from a mapping or an object with those attributes (a `text.Span`)."""
    if isinstance(span, Mapping):
        start, end, label = span["start"], span["end"], span["label"]
    else:
        start, end, label = span.start, span.end, span.label
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
        raise ValueError(f"span offsets ({start!r}, {end!r}) must be integers with 0 <= start <= end")
    return start, end, label


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _chars(text: str, start: int, end: int) -> list[int]:
    if end > len(text):
        raise ValueError(f"span end {end} is past the end of a note of {len(text)} characters")
    return [i for i in range(start, end) if not text[i].isspace()]


def score_spans(
    texts: Sequence[str],
    gold: Sequence[Iterable[Any]],
    predicted: Sequence[Iterable[Any]],
    traps: Sequence[Iterable[Any]] | None = None,
) -> DeidScore:
    """Score `predicted` spans against `gold` spans, note by note (spans: mappings or objects with start, end,
    label). Overlapping predictions count each character once."""
    if not len(texts) == len(gold) == len(predicted):
        raise ValueError(f"{len(texts)} texts but {len(gold)} gold and {len(predicted)} predicted span lists")
    if traps is not None and len(traps) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(traps)} trap span lists")
    gold_chars, found_any, found_same = Counter(), Counter(), Counter()
    gold_spans, spans_found = Counter(), Counter()
    pred_chars, pred_true = Counter(), Counter()
    all_pred = all_true = 0
    pred_spans = pred_spans_true = 0
    trap_spans = traps_flagged = 0
    for n, text in enumerate(texts):
        predicted_at: dict[int, set[str]] = {}
        pred_list = [_triple(s) for s in predicted[n]]
        for start, end, label in pred_list:
            for i in _chars(text, start, end):
                predicted_at.setdefault(i, set()).add(label)
        gold_at: dict[int, str] = {}
        neutral: set[int] = set()
        for start, end, label in map(_triple, gold[n]):
            chars = _chars(text, start, end)
            if label == NEUTRAL:
                neutral.update(chars)
                continue
            gold_at.update(dict.fromkeys(chars, label))
            if chars:
                gold_spans[label] += 1
                spans_found[label] += all(i in predicted_at for i in chars)
        for i, label in gold_at.items():
            gold_chars[label] += 1
            found_any[label] += i in predicted_at
            found_same[label] += label in predicted_at.get(i, ())
        counted = {i: labels for i, labels in predicted_at.items() if i not in neutral}
        all_pred += len(counted)
        all_true += sum(i in gold_at for i in counted)
        for i, labels in counted.items():
            for label in labels:
                pred_chars[label] += 1
                pred_true[label] += i in gold_at
        for start, end, _ in pred_list:
            chars = [i for i in _chars(text, start, end) if i not in neutral]
            if chars:
                pred_spans += 1
                pred_spans_true += 2 * sum(i in gold_at for i in chars) >= len(chars)
        for start, end, _ in map(_triple, traps[n] if traps is not None else ()):
            trap_spans += 1
            traps_flagged += any(i in predicted_at for i in _chars(text, start, end))
    labels = sorted(set(gold_chars) | set(pred_chars))
    per_label = {
        label: LabelScore(
            gold_chars=gold_chars[label],
            gold_spans=gold_spans[label],
            char_recall=_ratio(found_any[label], gold_chars[label]),
            char_recall_label_aware=_ratio(found_same[label], gold_chars[label]),
            span_recall=_ratio(spans_found[label], gold_spans[label]),
            predicted_chars=pred_chars[label],
            char_precision=_ratio(pred_true[label], pred_chars[label]),
        )
        for label in labels
    }
    total = sum(gold_chars.values())
    return DeidScore(
        notes=len(texts),
        gold_chars=total,
        predicted_chars=all_pred,
        char_recall=_ratio(sum(found_any.values()), total),
        char_recall_label_aware=_ratio(sum(found_same.values()), total),
        char_precision=_ratio(all_true, all_pred),
        span_recall=_ratio(sum(spans_found.values()), sum(gold_spans.values())),
        span_precision=_ratio(pred_spans_true, pred_spans),
        trap_spans=trap_spans,
        traps_flagged=traps_flagged,
        per_label=per_label,
    )


def error_strings(
    texts: Sequence[str], gold: Sequence[Iterable[Any]], predicted: Sequence[Iterable[Any]]
) -> tuple[Counter, Counter]:
    """(missed, false alarms): Counters of (label, text) for gold spans not wholly covered and for predicted
    spans with no gold PHI character. For reading errors on evaluation corpora; never log them for real notes."""
    missed, false_alarms = Counter(), Counter()
    for text, g, p in zip(texts, gold, predicted):
        covered = {i for s, e, _ in map(_triple, p) for i in range(s, e)}
        phi, neutral = set(), set()
        for s, e, label in map(_triple, g):
            chars = _chars(text, s, e)
            (neutral if label == NEUTRAL else phi).update(chars)
            if label != NEUTRAL and not all(i in covered for i in chars):
                missed[(label, text[s:e])] += 1
        for s, e, label in map(_triple, p):
            chars = [i for i in _chars(text, s, e) if i not in neutral]
            if chars and not any(i in phi for i in chars):
                false_alarms[(label, text[s:e])] += 1
    return missed, false_alarms
