"""The scoring of PHI detection: exact figures on a hand-made note."""

from __future__ import annotations

import pytest

from clinfm.deid.evaluate import NEUTRAL, error_strings, score_spans
from clinfm.deid.text import Span

#        0         1         2         3         4
#        0123456789012345678901234567890123456789012345
TEXT = "Pt John Smith seen 3/30 in Boston, MA. BP 132/84"
GOLD = [
    {"start": 3, "end": 13, "label": "NAME"},  # "John Smith": 9 non-space chars
    {"start": 19, "end": 23, "label": "DATE"},  # "3/30": 4
    {"start": 27, "end": 33, "label": "ADDRESS"},  # "Boston": 6
    {"start": 33, "end": 37, "label": NEUTRAL},  # ", MA"
]
TRAPS = [{"start": 39, "end": 48, "label": "TRAP"}]  # "BP 132/84"


def test_score_spans_counts_characters_labels_neutral_gold_and_traps() -> None:
    predicted = [
        Span(3, 7, "NAME", 0.9, "x"),  # "John": 4 of the name's 9 chars
        Span(19, 23, "PHONE", 0.5, "x"),  # the date found, under the wrong label
        Span(27, 37, "ADDRESS", 0.6, "x"),  # "Boston, MA": the neutral ", MA" counts neither way
        Span(42, 48, "DATE", 0.4, "x"),  # "132/84": a false alarm on a trap
    ]
    s = score_spans([TEXT], [GOLD], [predicted], [TRAPS])
    assert (s.gold_chars, s.predicted_chars) == (19, 4 + 4 + 6 + 6)
    assert s.char_recall == round(14 / 19, 4)
    assert s.char_recall_label_aware == round(10 / 19, 4)
    assert s.char_precision == round(14 / 20, 4)
    assert s.span_recall == round(2 / 3, 4)  # the date and Boston are whole, the name is not
    assert s.span_precision == 0.75
    assert (s.trap_spans, s.traps_flagged) == (1, 1)
    name, date, phone = s.per_label["NAME"], s.per_label["DATE"], s.per_label["PHONE"]
    assert (name.gold_chars, name.gold_spans, name.char_recall, name.span_recall) == (9, 1, 0.4444, 0.0)
    assert (date.char_recall, date.char_recall_label_aware, date.predicted_chars, date.char_precision) == (
        1.0,
        0.0,
        6,
        0.0,
    )
    assert (phone.gold_chars, phone.char_recall, phone.predicted_chars, phone.char_precision) == (
        0,
        None,
        4,
        1.0,
    )
    assert set(s.per_label) == {"NAME", "DATE", "ADDRESS", "PHONE"}


def test_overlapping_predictions_count_each_character_once() -> None:
    predicted = [{"start": 3, "end": 13, "label": "NAME"}, {"start": 8, "end": 13, "label": "NAME"}]
    s = score_spans([TEXT], [GOLD], [predicted])
    assert (s.predicted_chars, s.char_precision, s.span_precision) == (9, 1.0, 1.0)
    assert s.per_label["NAME"].span_recall == 1.0
    assert (s.trap_spans, s.traps_flagged) == (0, 0)


def test_nothing_predicted_has_no_precision() -> None:
    s = score_spans([TEXT], [GOLD], [[]])
    assert (s.char_recall, s.char_precision, s.span_precision) == (0.0, None, None)


def test_error_strings_name_misses_and_false_alarms() -> None:
    predicted = [{"start": 3, "end": 7, "label": "NAME"}, {"start": 42, "end": 48, "label": "DATE"}]
    missed, false_alarms = error_strings([TEXT], [GOLD], [predicted])
    assert set(missed) == {("NAME", "John Smith"), ("DATE", "3/30"), ("ADDRESS", "Boston")}
    assert dict(false_alarms) == {("DATE", "132/84"): 1}


def test_bad_spans_are_refused_with_the_values() -> None:
    with pytest.raises(ValueError, match=r"span end 99 is past the end of a note of 48"):
        score_spans([TEXT], [[{"start": 0, "end": 99, "label": "NAME"}]], [[]])
    with pytest.raises(ValueError, match=r"1 texts but 1 gold and 2 predicted"):
        score_spans([TEXT], [GOLD], [[], []])
