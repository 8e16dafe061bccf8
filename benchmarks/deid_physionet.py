"""Clinical-note de-identification on real nursing notes: ClinFM's detector scored on the PhysioNet `deid`
development half (MIMIC-II ICU nursing notes with surrogate PHI), split by patient into a tuning part and a
check part, character-level recall and precision overall and per label, and notes/s against plain batched
Presidio with its default recognizers on the same notes in the same run.

Safe Harbor labels: HCPName, RelativeProxyName, PTName, PTNameInitial -> NAME; Date -> DATE; Phone -> PHONE;
Age -> AGE_OVER_89; Other -> OTHER_ID. Location (hospitals and wards, which Safe Harbor does not cover, mixed
with towns, which it does) and DateYear (a year alone is not PHI) are neutral: neither a miss when left nor a
false alarm when removed; their recall is printed on its own. Nothing of the notes' text is printed.

Run: .venv/bin/python benchmarks/deid_physionet.py [--data PATH] [--tune-max-patient 60] [--speed-notes 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result
from deid_text import NEUTRAL, notes_per_second, plain_presidio, print_scores, score

from clinfm.deid.text import NoteDeidentifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "physionet-deid" / "dev.jsonl"
SAFE_HARBOR = {
    "HCPName": "NAME", "RelativeProxyName": "NAME", "PTName": "NAME", "PTNameInitial": "NAME", "Date": "DATE",
    "Phone": "PHONE", "Age": "AGE_OVER_89", "Other": "OTHER_ID",
}  # fmt: skip
REPORTED_NEUTRAL = ("Location", "DateYear")


def load(path: Path) -> list[dict]:
    """Rows with `patient` (int), `text` and `spans` relabelled to Safe Harbor labels (or neutral)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        spans = [
            {"start": s["start"], "end": s["end"], "label": SAFE_HARBOR.get(s["label"], NEUTRAL), "raw": s["label"]}
            for s in item["spans"]
        ]
        rows.append({"patient": int(item["id"].split("-")[0]), "text": item["text"], "spans": spans})
    return rows


def extra_scores(rows: list[dict], predictions: list[list]) -> dict:
    """Recall per source label (neutral ones included) and precision per predicted label."""
    gold, hit = Counter(), Counter()
    pred, true = Counter(), Counter()
    for row, preds in zip(rows, predictions):
        text = row["text"]
        covered = {i for p in preds for i in range(p.start, p.end)}
        phi, neutral = set(), set()
        for g in row["spans"]:
            chars = [i for i in range(g["start"], g["end"]) if not text[i].isspace()]
            (neutral if g["label"] == NEUTRAL else phi).update(chars)
            gold[g["raw"]] += len(chars)
            hit[g["raw"]] += sum(i in covered for i in chars)
        for p in preds:
            chars = [i for i in range(p.start, p.end) if not text[i].isspace() and i not in neutral]
            pred[p.label] += len(chars)
            true[p.label] += sum(i in phi for i in chars)
    return {
        "recall_by_source_label": {k: round(hit[k] / gold[k], 4) for k in sorted(gold) if gold[k]},
        "precision_by_predicted_label": {
            k: {"chars": pred[k], "precision": round(true[k] / pred[k], 4)} for k in sorted(pred) if pred[k]
        },
    }


def print_extra(extra: dict) -> None:
    recall = extra["recall_by_source_label"]
    print("recall by source label: " + ", ".join(f"{k} {v:.3f}" for k, v in recall.items()))
    print("precision by predicted label: " + ", ".join(
        f"{k} {v['precision']:.3f} ({v['chars']} chars)" for k, v in extra["precision_by_predicted_label"].items()
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tune-max-patient", type=int, default=60, help="patients 1..N tune, the rest check")
    parser.add_argument("--speed-notes", type=int, default=300, help="notes timed against plain Presidio (0: skip)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no PhysioNet deid development file at {args.data}: pass --data")

    rows = load(args.data)
    engine = NoteDeidentifier()
    start = time.perf_counter()
    predictions = engine.detect_many([r["text"] for r in rows])
    elapsed = time.perf_counter() - start
    result: dict = {"data": str(args.data), "detect_seconds": round(elapsed, 1)}
    parts = {
        f"tune (patients 1-{args.tune_max_patient})": lambda r: r["patient"] <= args.tune_max_patient,
        f"check (patients {args.tune_max_patient + 1}+)": lambda r: r["patient"] > args.tune_max_patient,
        "whole development half": lambda r: True,
    }
    for name, keep in parts.items():
        chosen = [(r, p) for r, p in zip(rows, predictions) if keep(r)]
        part_rows, part_preds = [r for r, _ in chosen], [p for _, p in chosen]
        scores = score(part_rows, part_preds) | extra_scores(part_rows, part_preds)
        result[name] = scores
        print_scores(f"PhysioNet deid, {name}", scores)
        print_extra(scores)

    if args.speed_notes:
        texts = [r["text"] for r in rows[: args.speed_notes]]
        _, plain_batch = plain_presidio()
        speed = {
            "notes": len(texts),
            "mean_chars": round(sum(map(len, texts)) / len(texts)),
            "clinfm_batched": notes_per_second(engine.detect_many, texts, args.repeat),
            "presidio_default_batched": notes_per_second(
                lambda ts: list(plain_batch.analyze_iterator(ts, language="en", batch_size=32)), texts, args.repeat
            ),
        }
        speed["ratio_vs_presidio_batched"] = speed["clinfm_batched"] / speed["presidio_default_batched"]
        result["speed"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in speed.items()}
        print(f"\n== speed on {speed['notes']} PhysioNet notes (~{speed['mean_chars']} chars): clinfm "
              f"{speed['clinfm_batched']:.1f} notes/s, presidio default batched "
              f"{speed['presidio_default_batched']:.1f} notes/s, ratio {speed['ratio_vs_presidio_batched']:.2f}x")  # fmt: skip
    write_result("deid_physionet", result)


if __name__ == "__main__":
    main()
