"""Pretraining: the run folder, exact resume, DDP under torchrun, and loading without ClinFM's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from clinfm.model.config import load_config
from clinfm.model.train import load_checkpoint, pretrain

from .conftest import REPO, TINY_CONFIG


def _cfg(**training):
    cfg = load_config(TINY_CONFIG)
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=training)})


def test_run_folder_and_metrics(tiny_run):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "train_state.pt", "fm-config.yaml", "metrics.jsonl"):
        assert (tiny_run / name).exists(), name
    model, tok, cfg = load_checkpoint(tiny_run)
    assert model.config.vocab_size == tok.vocab_size and cfg.model.n_embd == 32
    lines = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert len(losses) == 12 and losses[-1] < losses[0]
    evals = [x["tuning"] for x in lines if "tuning" in x]
    assert evals and evals[-1]["perplexity"] > 1 and 0 <= evals[-1]["top_k_accuracy"]["1"] <= 1


def test_resume_continues_with_the_same_losses(tiny_meds, tmp_path):
    cfg = _cfg(max_steps=8, checkpoint_interval=4, eval_interval=100)
    full = pretrain(tiny_meds, cfg, tmp_path / "full")
    first = pretrain(tiny_meds, cfg, tmp_path / "cut", stop_at_step=4)
    assert len(first.losses) == 4
    resumed = pretrain(tiny_meds, cfg, tmp_path / "cut", resume=True)
    assert len(resumed.losses) == 8
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=0, atol=1e-6)


def test_torchrun_ddp_matches_single_process(tiny_meds, tmp_path):
    cfg = _cfg(max_steps=6, eval_interval=100, checkpoint_interval=100)
    single = pretrain(tiny_meds, cfg, tmp_path / "single")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(json.dumps(cfg.model_dump()))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "clinfm.model.train", str(tiny_meds), "--config", str(cfg_file), "--out", str(tmp_path / "ddp"),
        "--losses-json", str(tmp_path / "losses.json"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ddp = json.loads((tmp_path / "losses.json").read_text())
    assert '"world_size": 2' in proc.stdout
    np.testing.assert_allclose(ddp, single.losses, rtol=1e-4, atol=1e-4)
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_checkpoint_loads_in_a_fresh_process_with_only_transformer_py(tiny_run, tmp_path):
    standalone = tmp_path / "standalone"
    standalone.mkdir()
    (standalone / "transformer.py").write_text((REPO / "src/clinfm/model/transformer.py").read_text())
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(standalone)!r})
        from safetensors.torch import load_model
        from transformer import GPT, GPTConfig
        cfg = GPTConfig(**json.load(open({str(tiny_run / "config.json")!r}))["model"])
        model = GPT(cfg).eval()
        load_model(model, {str(tiny_run / "model.safetensors")!r})
        assert "clinfm" not in sys.modules
        x = torch.arange(10).unsqueeze(0) % cfg.vocab_size
        print(json.dumps(model(x)[0][0, -1, :5].tolist()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=False)
    assert out.returncode == 0, out.stderr
    import torch

    model, _, _ = load_checkpoint(tiny_run)
    with torch.no_grad():
        here = model(torch.arange(10).unsqueeze(0) % model.config.vocab_size)[0][0, -1, :5]
    np.testing.assert_allclose(json.loads(out.stdout), here.numpy(), atol=1e-5)


def test_torchrun_resumes_a_checkpoint_written_with_a_different_world_size(tiny_meds, tmp_path):
    """Scale out mid-run: 1 process writes the checkpoint at step 4, 2 processes under torchrun finish it."""
    cfg = _cfg(max_steps=8, checkpoint_interval=4, eval_interval=100)
    full = pretrain(tiny_meds, cfg, tmp_path / "full")
    pretrain(tiny_meds, cfg, tmp_path / "run", stop_at_step=4)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(json.dumps(cfg.model_dump()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "clinfm.model.train", str(tiny_meds), "--config", str(cfg_file), "--out", str(tmp_path / "run"),
        "--resume", "--losses-json", str(tmp_path / "losses.json"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    resumed = json.loads((tmp_path / "losses.json").read_text())
    assert len(resumed) == 8
    np.testing.assert_allclose(resumed, full.losses, rtol=1e-4, atol=1e-4)
