"""The de-identification evaluation corpora (benchmarks/deid_corpora) and their harness (benchmarks/deid_eval.py):
deterministic for a seed, committed as generated, gold offsets that hold, and a harness run on a few notes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clinfm.deid.evaluate import NEUTRAL
from clinfm.deid.text import LABELS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from deid_corpora import CORPORA, DATA, read_jsonl
from deid_corpora.builder import TRAP, NoteBuilder

TITLES = ("dr ", "dr. ", "mr. ", "mrs. ", "ms. ")
CREDENTIALS = (" md", " rn", ", md", ", rn", " do", " np")


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_the_same_seed_gives_the_same_corpus_and_another_seed_another(name: str) -> None:
    generate = CORPORA[name]
    first, again, other = list(generate(40, seed=7)), list(generate(40, seed=7)), list(generate(40, seed=8))
    assert first == again
    assert [n["text"] for n in first] != [n["text"] for n in other]


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_the_committed_corpus_is_what_the_generator_writes(name: str) -> None:
    committed = read_jsonl(DATA / f"{name}.jsonl")
    regenerated = json.loads(json.dumps(list(CORPORA[name]()), ensure_ascii=False))
    assert len(committed) >= 300
    assert committed == regenerated


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_gold_spans_hold_their_values_and_cover_every_label(name: str) -> None:
    notes = read_jsonl(DATA / f"{name}.jsonl")
    labels = set()
    for note in notes:
        text = note["text"]
        spans = sorted(note["spans"] + note["traps"], key=lambda s: s["start"])
        for span in spans:
            value = text[span["start"] : span["end"]]
            assert 0 <= span["start"] < span["end"] <= len(text), (note["id"], span)
            assert span["label"] in (*LABELS, NEUTRAL, TRAP), (note["id"], span)
            if span["label"] in LABELS:
                assert value == value.strip() and value[0] not in ",;:" and value[-1] not in ",;:", (
                    note["id"],
                    value,
                )
                assert any(ch.isalnum() for ch in value), (note["id"], value)
                labels.add(span["label"])
            if span["label"] == "NAME":
                assert not value.lower().startswith(TITLES) and not value.lower().endswith(CREDENTIALS), value
                assert not any(ch.isdigit() for ch in value), value
            if span["label"] in ("DATE", "PHONE", "FAX", "SSN", "MRN", "IP_ADDRESS", "ACCOUNT_NUMBER"):
                assert any(ch.isdigit() for ch in value), (span["label"], value)
        for a, b in itertools.pairwise(spans):
            assert a["end"] <= b["start"], (
                note["id"],
                a,
                b,
            )  # no gold, neutral or trap span overlaps another
    assert labels == set(LABELS)


def test_the_builder_records_offsets_after_changing_case() -> None:
    b = NoteBuilder("upper").fill(
        "pt {n} seen {d}; {t}", n=("NAME", "Straße Ó Súilleabháin"), d=("DATE", "3/30"), t=(TRAP, "foley")
    )
    text = b.text()
    assert text == "PT STRASSE Ó SÚILLEABHÁIN SEEN 3/30; FOLEY"
    assert [text[s["start"] : s["end"]] for s in b.spans] == ["STRASSE Ó SÚILLEABHÁIN", "3/30"]
    assert [text[s["start"] : s["end"]] for s in b.traps] == ["FOLEY"]
    with pytest.raises(KeyError, match="'d' has no value"):
        NoteBuilder().fill("{d}")


def test_the_harness_scores_a_few_notes_of_each_generated_corpus(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "deid_eval.py"),
            "--corpus",
            "hospital",
            "--corpus",
            "freetext",
            "--limit",
            "3",
            "--baseline",
            "none",
            "--results-dir",
            str(tmp_path),
            "--out",
            "smoke",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "smoke.json").read_text())
    for name in ("hospital", "freetext"):
        notes = read_jsonl(DATA / f"{name}.jsonl")[:3]
        gold_chars = sum(
            sum(not n["text"][i].isspace() for i in range(s["start"], s["end"]))
            for n in notes
            for s in n["spans"]
            if s["label"] != NEUTRAL
        )
        score = result["corpora"][name]["detectors"]["clinfm"]
        assert (score["notes"], score["gold_chars"]) == (3, gold_chars)
        assert 0.0 < score["char_recall"] <= 1.0 and 0.0 < score["char_precision"] <= 1.0
        assert f"{name} / clinfm" in run.stdout
