"""Training throughput of ``pretrain`` vs a bare PyTorch loop over the same model and batches, and the
peak memory of demo training.

``pretrain`` runs once in a child process for its peak RSS. For throughput, ``pretrain`` (in this process)
and the bare loop (same initial weights, batches, optimizer and clipping, on the window file pretrain
wrote) alternate: bare, pretrain, bare, pretrain, bare. Each pretrain run is compared with the mean of
the bare runs on either side and the median ratio is reported, which evens out load from other processes.

    python benchmarks/fm_trainer.py /tmp/fm-demo/eunomia-deid --steps 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_result

from clinfm.defaults import packaged
from clinfm.model.config import load_config
from clinfm.model.tokenizer import ClinicalTokenizer
from clinfm.model.train import batch_indices, inputs_and_targets, no_loss_mask, pretrain
from clinfm.model.transformer import GPT

REPO = Path(__file__).resolve().parents[1]


def bare_loop(run: Path, cfg, steps: int) -> float:
    """Plain forward/backward/clip/step over the same batches; returns tokens per second."""
    t = cfg.training
    torch.set_num_threads(t.num_threads or torch.get_num_threads())
    tok = ClinicalTokenizer.load(run / "tokenizer.json")
    windows = np.load(run / "windows" / "train.npy", mmap_mode="r")
    no_loss = no_loss_mask(tok)
    torch.manual_seed(t.seed)
    model = GPT(cfg.model.gpt_config(tok.vocab_size))
    opt = model.configure_optimizer(t.lr, t.weight_decay, (t.beta1, t.beta2))
    batches = [inputs_and_targets(windows[np.sort(batch_indices(s, len(windows), t.batch_size, t.seed))], no_loss) for s in range(steps)]
    t0 = time.perf_counter()
    for x, y in batches:
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * t.batch_size * cfg.model.block_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path, nargs="?", default=Path("/tmp/fm-demo/eunomia-deid"))
    ap.add_argument("--config", type=Path, default=packaged("models/fm-small.yaml"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = load_config(args.config)
    cfg = base.model_copy(update={"training": base.training.model_copy(
        update={"max_steps": args.steps, "eval_interval": 10**6, "checkpoint_interval": 10**6, "log_interval": 10**6})})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg_file = Path(tmp) / "cfg.yaml"
        cfg_file.write_text(json.dumps(cfg.model_dump()))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "clinfm.model.train", str(args.dataset), "--config", str(cfg_file),
                               "--out", str(run)], capture_output=True, text=True, check=True)  # fmt: skip
        wall = time.perf_counter() - t0
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        rss = peak_rss_mb(children=True)
        bares, pres = [bare_loop(run, cfg, args.steps)], []
        for i in range(args.rounds):
            pres.append(pretrain(args.dataset, cfg, Path(tmp) / f"again-{i}").tokens_per_s)
            bares.append(bare_loop(run, cfg, args.steps))
    ratios = [p / ((a + b) / 2) for p, a, b in zip(pres, bares, bares[1:])]
    bare = float(np.median(bares))
    result = {
        "dataset": str(args.dataset), "config": str(args.config), "steps": args.steps, "threads": cfg.training.num_threads,
        "pretrain_tokens_per_s": float(np.median(pres)), "bare_loop_tokens_per_s": bare,
        "pretrain_runs": [summary["tokens_per_s"], *pres], "bare_loop_runs": bares, "ratio": float(np.median(ratios)),
        "pretrain_wall_s_including_tokenization": wall, "pretrain_peak_rss_mb": rss,
    }  # fmt: skip
    print(f"pretrain {result['pretrain_tokens_per_s']:,.0f} tok/s vs bare loop {bare:,.0f} tok/s -> ratio {result['ratio']:.2f} (target >= 0.9)")
    print(f"peak RSS of demo training {rss:,.0f} MiB; {args.steps} steps + tokenization in {wall:.0f}s")
    write_result("fm_trainer", result)


if __name__ == "__main__":
    main()
