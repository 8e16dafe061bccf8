"""Clinical-note de-identification: recall/precision per Safe Harbor label on Presidio's synthetic PHI sentences
and on ClinFM's clinical note fixture, and notes/s against plain Presidio measured in the same run.

Run: .venv/bin/python benchmarks/deid_text.py [--synth PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result

from clinfm.deid.text import LABELS, SPACY_MODEL, NoteDeidentifier

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT.parent / "shared" / "data" / "phi" / "presidio_synth_dataset_v2.json"
NOTES = ROOT / "tests" / "fixtures" / "notes" / "clinical_notes.jsonl"
NEUTRAL = "~"  # gold entities that are not Safe Harbor PHI (organisations, titles, nationalities, states...)

# presidio-research labels -> ours. GPE mixes cities (PHI) with states and countries (not PHI), so it is neutral:
# neither a miss when left nor a false positive when removed. Ages under 90 are neutral too.
SYNTH_LABELS = {
    "PERSON": "NAME", "STREET_ADDRESS": "ADDRESS", "ZIP_CODE": "ADDRESS", "GPE": NEUTRAL,
    "ORGANIZATION": NEUTRAL, "TITLE": NEUTRAL, "NRP": NEUTRAL, "CREDIT_CARD": "ACCOUNT_NUMBER",
    "IBAN_CODE": "ACCOUNT_NUMBER", "DATE_TIME": "DATE", "PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL",
    "DOMAIN_NAME": "URL", "US_SSN": "SSN", "IP_ADDRESS": "IP_ADDRESS", "US_DRIVER_LICENSE": "LICENSE_NUMBER",
}  # fmt: skip


def load_synth(path: Path) -> list[dict]:
    rows = []
    for item in json.loads(path.read_text()):
        spans = []
        for s in item["spans"]:
            label = SYNTH_LABELS.get(s["entity_type"], NEUTRAL)
            if s["entity_type"] == "AGE":
                digits = re.findall(r"\d+", s["entity_value"])
                label = "AGE_OVER_89" if digits and int(digits[0]) > 89 else NEUTRAL
            spans.append({"start": s["start_position"], "end": s["end_position"], "label": label})
        rows.append({"text": item["full_text"], "spans": spans})
    return rows


def load_notes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(rows: list[dict], predictions: list[list]) -> dict:
    """Character-level (non-space characters) and span-level recall per label, any-label and label-aware."""
    char_gold, char_any, char_same = Counter(), Counter(), Counter()
    span_gold, span_any, span_same = Counter(), Counter(), Counter()
    pred_chars = pred_true = 0
    pred_spans = pred_spans_true = 0
    for row, preds in zip(rows, predictions):
        text = row["text"]
        covered = {i: p.label for p in preds for i in range(p.start, p.end)}
        gold_at, neutral = {}, set()
        for g in row["spans"]:
            chars = [i for i in range(g["start"], g["end"]) if not text[i].isspace()]
            if g["label"] == NEUTRAL:
                neutral.update(chars)
                continue
            gold_at.update({i: g["label"] for i in chars})
            label = g["label"]
            span_gold[label] += 1
            if chars:
                span_any[label] += sum(i in covered for i in chars) / len(chars) >= 0.9
                span_same[label] += sum(covered.get(i) == label for i in chars) / len(chars) >= 0.9
        for i, label in gold_at.items():
            char_gold[label] += 1
            char_any[label] += i in covered
            char_same[label] += covered.get(i) == label
        for p in preds:
            chars = [i for i in range(p.start, p.end) if not text[i].isspace() and i not in neutral]
            if not chars:
                continue
            hits = sum(i in gold_at for i in chars)
            pred_chars += len(chars)
            pred_true += hits
            pred_spans += 1
            pred_spans_true += hits / len(chars) >= 0.5
    per_label = {
        label: {
            "gold_chars": char_gold[label],
            "char_recall": round(char_any[label] / char_gold[label], 4),
            "char_recall_label_aware": round(char_same[label] / char_gold[label], 4),
            "gold_spans": span_gold[label],
            "span_recall": round(span_any[label] / span_gold[label], 4),
            "span_recall_label_aware": round(span_same[label] / span_gold[label], 4),
        }
        for label in LABELS
        if char_gold[label]
    }
    total = sum(char_gold.values())
    return {
        "notes": len(rows),
        "char_recall": round(sum(char_any.values()) / total, 4),
        "char_recall_label_aware": round(sum(char_same.values()) / total, 4),
        "char_precision": round(pred_true / pred_chars, 4) if pred_chars else None,
        "span_recall": round(sum(span_any.values()) / sum(span_gold.values()), 4),
        "span_precision": round(pred_spans_true / pred_spans, 4) if pred_spans else None,
        "per_label": per_label,
    }


def print_scores(name: str, s: dict) -> None:
    print(f"\n== {name}: {s['notes']} notes | char recall {s['char_recall']:.3f} (label-aware "
          f"{s['char_recall_label_aware']:.3f}) precision {s['char_precision']:.3f} | span recall {s['span_recall']:.3f}"
          f" precision {s['span_precision']:.3f}")  # fmt: skip
    print(f"{'label':16} {'chars':>6} {'recall':>7} {'aware':>7} {'spans':>6} {'recall':>7} {'aware':>7}")
    for label, v in s["per_label"].items():
        print(f"{label:16} {v['gold_chars']:6d} {v['char_recall']:7.3f} {v['char_recall_label_aware']:7.3f} "
              f"{v['gold_spans']:6d} {v['span_recall']:7.3f} {v['span_recall_label_aware']:7.3f}")  # fmt: skip


def plain_presidio():
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    ).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return engine, BatchAnalyzerEngine(analyzer_engine=engine)


def notes_per_second(fn, texts: list[str], repeat: int) -> float:
    fn(texts[:8])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synth", type=Path, default=SYNTH)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    engine = NoteDeidentifier()
    result: dict = {}
    notes = load_notes(NOTES)
    result["clinical_notes"] = score(notes, engine.detect_many([r["text"] for r in notes]))
    print_scores(f"clinical notes fixture ({NOTES.name})", result["clinical_notes"])
    if args.synth.is_file():
        synth = load_synth(args.synth)
        result["presidio_synth"] = score(synth, engine.detect_many([r["text"] for r in synth]))
        print_scores(
            f"presidio synth ({args.synth.name}; GPE/ORG/TITLE/NRP/age<90 neutral)", result["presidio_synth"]
        )
    else:
        print(f"\n(skipping the presidio synth set: {args.synth} not found)")

    # Speed: the clinical notes x6 (about 200 notes, 1 KB each), our batched engine vs plain Presidio.
    texts = [r["text"] for r in notes] * 6
    plain, plain_batch = plain_presidio()
    speed = {
        "notes": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "clinfm_batched": notes_per_second(engine.detect_many, texts, args.repeat),
        "presidio_default_loop": notes_per_second(
            lambda ts: [plain.analyze(t, language="en") for t in ts], texts, args.repeat
        ),
        "presidio_default_batched": notes_per_second(
            lambda ts: list(plain_batch.analyze_iterator(ts, language="en", batch_size=32)),
            texts,
            args.repeat,
        ),
    }
    two = NoteDeidentifier(n_process=2)
    speed["clinfm_batched_2_processes"] = notes_per_second(two.detect_many, texts, 1)
    speed["ratio_vs_presidio_loop"] = speed["clinfm_batched"] / speed["presidio_default_loop"]
    speed["ratio_vs_presidio_batched"] = speed["clinfm_batched"] / speed["presidio_default_batched"]
    speed = {k: round(v, 2) if isinstance(v, float) else v for k, v in speed.items()}
    speed["cpu_count"] = os.cpu_count()
    result["speed"] = speed
    print(f"\n== speed on {speed['notes']} notes (~{speed['mean_chars']} chars), {speed['cpu_count']} CPUs")
    print(f"clinfm batched            {speed['clinfm_batched']:8.1f} notes/s")
    print(f"clinfm batched, 2 procs   {speed['clinfm_batched_2_processes']:8.1f} notes/s")
    print(f"presidio default, loop    {speed['presidio_default_loop']:8.1f} notes/s")
    print(f"presidio default, batched {speed['presidio_default_batched']:8.1f} notes/s")
    print(f"ratio clinfm / presidio: {speed['ratio_vs_presidio_batched']:.2f}x (batched), "
          f"{speed['ratio_vs_presidio_loop']:.2f}x (loop)")  # fmt: skip
    write_result("deid_text", result)


if __name__ == "__main__":
    main()
