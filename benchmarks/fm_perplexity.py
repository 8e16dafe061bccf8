"""Held-out perplexity of the pretrained model vs unigram and bigram baselines on the same tokens.

All three are scored on exactly the same target tokens: the held-out split tokenized with the run's
tokenizer and packed into the run's windows (targets that never count - PAD, BOS, the sex/age prefix -
are excluded for all). Baselines are fitted on the train windows; the bigram's interpolation weight is
chosen on the tuning split.

    python benchmarks/fm_perplexity.py /tmp/fm-demo/eunomia-deid --run /tmp/run-small [--train]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from clinfm import schema
from clinfm.data.store import SubjectDatabase
from clinfm.defaults import packaged
from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.corpus import build_windows, split_ids
from clinfm.model.train import (
    IGNORE_INDEX,
    evaluate,
    inputs_and_targets,
    no_loss_mask,
    pretrain,
)

REPO = Path(__file__).resolve().parents[1]


def pairs(windows: np.ndarray, no_loss) -> tuple[np.ndarray, np.ndarray]:
    """(previous token, target) for every target that counts."""
    x, y = inputs_and_targets(windows, no_loss)
    keep = y != IGNORE_INDEX
    return x[keep].numpy(), y[keep].numpy()


def ppl(probs: np.ndarray) -> float:
    return math.exp(-np.log(probs).mean())


def baselines(train, tuning, held_out, vocab: int) -> dict:
    (xt, yt), (xv, yv), (xh, yh) = train, tuning, held_out
    uni = np.bincount(yt, minlength=vocab) + 1.0  # add-one unigram
    uni /= uni.sum()
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (xt, yt), 1)
    add_one = (counts + 1) / (counts + 1).sum(1, keepdims=True)
    row = counts.sum(1, keepdims=True)
    ml = np.divide(counts, row, out=np.zeros_like(counts), where=row > 0)

    def interp(lam):
        return np.where(row > 0, lam * ml + (1 - lam) * uni[None, :], uni[None, :])

    lam = min((0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99), key=lambda lam: ppl(interp(lam)[xv, yv]))
    return {
        "unigram": ppl(uni[yh]),
        "bigram_add_one": ppl(add_one[xh, yh]),
        "bigram_interpolated": ppl(interp(lam)[xh, yh]),
        "bigram_lambda": lam,
    }


def measure(dataset: Path, run: Path, train: bool, config: Path) -> dict:
    if train and not (run / "model.safetensors").exists():
        t0 = time.perf_counter()
        pretrain(dataset, config, run, progress=lambda p: print(f"  step {p.step}/{p.max_steps} loss {p.loss:.3f}", flush=True) if p.step % 20 == 0 else None)
        print(f"trained {run} in {time.perf_counter() - t0:.0f}s")
    model, tok, cfg = load_checkpoint(run)
    db = SubjectDatabase(dataset)
    length = cfg.model.block_size + 1
    no_loss = no_loss_mask(tok)
    train_w = np.load(run / "windows" / "train.npy")
    tuning_w = np.load(run / "windows" / "tuning.npy")
    held_w = build_windows(db, tok, split_ids(db, schema.HELD_OUT), length)
    base = baselines(pairs(train_w, no_loss), pairs(tuning_w, no_loss), pairs(held_w, no_loss), tok.vocab_size)
    torch.set_num_threads(1)
    m = evaluate(model, held_w, tok, batch_size=16)
    out = {
        "dataset": str(dataset), "run": str(run), "held_out_windows": len(held_w), "target_tokens": m.tokens,
        "model_perplexity": m.perplexity, "model_top_k_code_accuracy": m.top_k_accuracy, **base,
    }  # fmt: skip
    out["ratio_vs_unigram"] = out["unigram"] / m.perplexity
    out["ratio_vs_best_bigram"] = min(base["bigram_add_one"], base["bigram_interpolated"]) / m.perplexity
    print(
        f"{dataset.name}: held-out perplexity over {m.tokens:,} tokens: model {m.perplexity:.2f} | unigram "
        f"{base['unigram']:.2f} | bigram add-one {base['bigram_add_one']:.2f} | bigram interpolated "
        f"{base['bigram_interpolated']:.2f}  -> bigram/model = {out['ratio_vs_best_bigram']:.2f}x"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path, nargs="?", default=Path("/tmp/fm-demo/eunomia-deid"))
    ap.add_argument("--run", type=Path, default=Path("/tmp/fm-run-small"))
    ap.add_argument("--config", type=Path, default=packaged("models/fm-small.yaml"))
    ap.add_argument("--train", action="store_true", help="train the run first if it does not exist")
    ap.add_argument("--mimic", type=Path, default=None, help="also a MIMIC-IV demo MEDS dataset (trains its own run)")
    args = ap.parse_args()
    results = {"eunomia": measure(args.dataset, args.run, args.train, args.config)}
    if args.mimic and args.mimic.exists():
        results["mimic"] = measure(args.mimic, args.run.with_name(args.run.name + "-mimic"), True, args.config)
    write_result("fm_perplexity", results)


if __name__ == "__main__":
    main()
