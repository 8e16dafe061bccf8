"""Pretraining: the run folder, exact resume, DDP and FSDP under torchrun, loading without ClinFM's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.config import load_config
from clinfm.model.train import pretrain

from .conftest import REPO, TINY_CONFIG


def _cfg(**training):
    cfg = load_config(TINY_CONFIG)
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=training)})


def _torchrun(dataset, cfg, out, tmp_path, *args: str) -> tuple[list[float], str]:
    """Train with 2 processes under torchrun (gloo on CPU); the per-step losses and rank 0's output."""
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(json.dumps(cfg.model_dump()))  # JSON is YAML
    losses = tmp_path / "losses.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "clinfm.model.train", str(dataset), "--config", str(cfg_file), "--out", str(out),
        "--losses-json", str(losses), *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(losses.read_text()), proc.stdout


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
    ddp, stdout = _torchrun(tiny_meds, cfg, tmp_path / "ddp", tmp_path)
    assert '"world_size": 2' in stdout and '"parallel": "ddp"' in stdout
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
    resumed, _ = _torchrun(tiny_meds, cfg, tmp_path / "run", tmp_path, "--resume")
    assert len(resumed) == 8
    np.testing.assert_allclose(resumed, full.losses, rtol=1e-4, atol=1e-4)


def test_torchrun_fsdp_matches_single_process(tiny_meds, tmp_path):
    """Sharded over 2 processes, with gradient accumulation and an odd number of tuning windows (one
    process runs a forward pass that does not count): the same losses, evaluation and weights as 1 process."""
    cfg = _cfg(
        max_steps=6, grad_accum_steps=2, eval_interval=3, eval_windows=5, checkpoint_interval=100, parallel="fsdp"
    )
    single = pretrain(tiny_meds, cfg, tmp_path / "single")
    assert single.parallel == "single" and single.param_bytes_per_rank == single.param_bytes
    fsdp, stdout = _torchrun(tiny_meds, cfg, tmp_path / "fsdp", tmp_path)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["parallel"] == "fsdp" and summary["world_size"] == 2
    assert summary["param_bytes"] == single.param_bytes
    assert summary["param_bytes"] / 2 <= summary["param_bytes_per_rank"] < 0.55 * summary["param_bytes"]
    np.testing.assert_allclose(fsdp, single.losses, rtol=1e-5, atol=0)
    np.testing.assert_allclose(summary["tuning"]["loss"], single.tuning.loss, rtol=1e-5)
    assert summary["tuning"]["tokens"] == single.tuning.tokens
    sharded, _, _ = load_checkpoint(tmp_path / "fsdp")
    whole, _, _ = load_checkpoint(tmp_path / "single")
    assert sharded.lm_head.weight is sharded.wte.weight
    for name, w in whole.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[name], w, rtol=0, atol=1e-5)


def test_fsdp_resumes_across_process_layouts(tiny_meds, tmp_path):
    """1 process writes step 4, FSDP over 2 processes continues to step 6, 1 process finishes: the losses of
    an uninterrupted run."""
    cfg = _cfg(max_steps=8, checkpoint_interval=4, eval_interval=100, parallel="fsdp")
    full = pretrain(tiny_meds, cfg, tmp_path / "full")
    pretrain(tiny_meds, cfg, tmp_path / "run", stop_at_step=4)
    sharded, _ = _torchrun(tiny_meds, cfg, tmp_path / "run", tmp_path, "--resume", "--stop-at-step", "6")
    assert len(sharded) == 6
    finished = pretrain(tiny_meds, cfg, tmp_path / "run", resume=True)
    np.testing.assert_allclose(finished.losses, full.losses, rtol=1e-5, atol=0)


def test_resume_reads_optimizer_state_saved_by_position(tiny_meds, tmp_path):
    """train_state.pt files from before FSDP hold optimizer.state_dict() (parameters by position)."""
    cfg = _cfg(max_steps=6, checkpoint_interval=3, eval_interval=100)
    full = pretrain(tiny_meds, cfg, tmp_path / "full")
    pretrain(tiny_meds, cfg, tmp_path / "run", stop_at_step=3)
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)
    groups = state["optimizer"]["param_groups"]
    position = {name: i for i, name in enumerate(n for g in groups for n in g["params"])}
    state["optimizer"] = {
        "state": {position[name]: s for name, s in state["optimizer"]["state"].items()},
        "param_groups": [{**g, "params": [position[n] for n in g["params"]]} for g in groups],
    }
    torch.save(state, tmp_path / "run" / "train_state.pt")
    resumed = pretrain(tiny_meds, cfg, tmp_path / "run", resume=True)
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=0, atol=1e-6)


def test_continued_pretraining_starts_from_the_given_weights(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from clinfm.cli import app

    from .conftest import write_tiny_meds

    site_b = write_tiny_meds(tmp_path / "site_b", n_subjects=30)  # another site's (overlapping-code) data
    cfg = _cfg(max_steps=1, lr=1e-12, min_lr=0.0, warmup_steps=0, eval_interval=100)
    # a different width in the config: the architecture comes from the run being continued
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"n_embd": 64}), "name": "site-b"})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(json.dumps(cfg.model_dump()))
    out = tmp_path / "continued"
    r = CliRunner().invoke(app, ["pretrain", str(site_b), "--config", str(cfg_file), "--out", str(out), "--init", str(tiny_run)])
    assert r.exit_code == 0, r.output
    base, base_tok, _ = load_checkpoint(tiny_run)
    cont, cont_tok, cont_cfg = load_checkpoint(out)
    assert cont_tok.vocab_ == base_tok.vocab_ and cont_cfg.model.n_embd == 32
    for (name, a), (_, b) in zip(base.state_dict().items(), cont.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # one step at lr 1e-12: the same weights
    scratch = pretrain(site_b, _cfg(max_steps=1, lr=1e-12, min_lr=0.0, warmup_steps=0, eval_interval=100), tmp_path / "scratch")
    fresh, _, _ = load_checkpoint(scratch.run_dir)
    assert not torch.allclose(fresh.wte.weight, base.wte.weight[: fresh.wte.weight.size(0)], atol=1e-3)
    bad = CliRunner().invoke(app, ["pretrain", str(site_b), "--out", str(tmp_path / "x"), "--init", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "not a trained ClinFM run folder" in bad.output
