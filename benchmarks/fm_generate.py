"""KV-cache rollouts vs recomputing the whole sequence for every new token (256 new tokens).

Both paths sample N futures in one batch from the same prompt with the same seed; the figure is new
tokens per second, and the ratio is cache / recompute measured in the same run.

    python benchmarks/fm_generate.py --run /tmp/fm-run-small
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.generate import sample_futures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("/tmp/fm-run-small"))
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, _ = load_checkpoint(args.run)
    prompt = [tok.bos_id, tok.id("GENDER//F"), tok.id("AGE//40-44")]  # a new patient: all 256 tokens sampled
    result = {"run": str(args.run), "samples": args.samples, "new_tokens": args.new_tokens, "threads": args.threads,
              "block_size": model.config.block_size, "params": model.num_params()}  # fmt: skip
    for name, cache in (("warmup", True), ("kv_cache", True), ("recompute", False)):
        t0 = time.perf_counter()
        f = sample_futures(model, tok, prompt, args.samples, args.new_tokens, seed=0, use_cache=cache)
        dt = time.perf_counter() - t0
        if name != "warmup":
            result[name] = {"seconds": dt, "new_tokens": f.new_tokens, "tokens_per_s": f.new_tokens / dt}
            print(f"{name:>9}: {f.new_tokens:,} new tokens in {dt:.2f}s = {f.new_tokens / dt:,.0f} tok/s")
    result["speedup"] = result["kv_cache"]["tokens_per_s"] / result["recompute"]["tokens_per_s"]
    print(f"KV-cache speedup: {result['speedup']:.1f}x (target >= 5x)")
    write_result("fm_generate", result)


if __name__ == "__main__":
    main()
