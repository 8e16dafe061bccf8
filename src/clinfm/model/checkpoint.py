"""Run folders: what a training run writes and how a trained model is read back, apart from the training loop,
so serving, evidence and batch jobs load a model without importing DDP/FSDP training code.

A run folder holds everything needed to use or continue the model::

    RUN/model.safetensors  RUN/config.json   weights and architecture: transformer.py alone can load them
    RUN/tokenizer.json     RUN/fm-config.yaml
    RUN/train_state.pt     optimizer, schedule position, RNG state and the loss log, for exact resume
    RUN/metrics.jsonl      one line per logged step / evaluation
    RUN/windows/*.npy      the tokenized train/tuning windows every rank memory-maps
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinfm.model.config import FMConfig, load_config
from clinfm.model.tokenizer import ClinicalTokenizer
from clinfm.model.transformer import GPT, load_pretrained, save_pretrained


def load_checkpoint(run_dir: str | Path, device: str = "cpu") -> tuple[GPT, ClinicalTokenizer, FMConfig]:
    """The trained model (eval mode), its tokenizer and its run configuration from a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").exists():
        raise FileNotFoundError(f"{run_dir} holds no model.safetensors: not a trained ClinFM run folder")
    model = load_pretrained(run_dir, device=device)
    tokenizer = ClinicalTokenizer.load(run_dir / "tokenizer.json")
    cfg = load_config(run_dir / "fm-config.yaml") if (run_dir / "fm-config.yaml").exists() else FMConfig()
    return model, tokenizer, cfg


def save_checkpoint(
    run_dir: Path, model: GPT, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, step: int,
    max_steps: int, history: list[dict[str, Any]], cfg: FMConfig, lr: float, main: bool = True,
) -> None:  # fmt: skip
    """Weights (safetensors) + JSON config, and the training state in a separate ``train_state.pt``.

    Every process calls this (gathering FSDP shards is collective); only ``main`` writes. Weights and
    optimizer state are stored whole, the optimizer's keyed by parameter name, so any process layout
    (single, DDP, FSDP over any number of processes) can resume from them.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)  # on the CPU of the main process only
    weights = get_model_state_dict(model, options=whole)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=whole)
    if not main:
        return
    with torch.device("meta"):
        unsharded = GPT(model.config)
    # Copies, as gathered weights can be views of one buffer (safetensors refuses those); then tie lm_head to
    # wte again, since assign set the tied weight twice.
    tensors = {name: w for name, w in weights.items() if isinstance(w, torch.Tensor)}  # every entry is one
    unsharded.load_state_dict({name: w.clone() for name, w in tensors.items()}, assign=True)
    unsharded.lm_head.weight = unsharded.wte.weight
    tmp = run_dir / ".ckpt-tmp"
    tmp.mkdir(exist_ok=True)
    extra = {"step": step, "max_steps": max_steps, "name": cfg.name, "tokenizer": "tokenizer.json"}
    save_pretrained(unsharded, tmp, extra=extra)
    state = {
        "step": step,
        "max_steps": max_steps,
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "schedule": {"step": step, "lr": lr},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "history": history,
    }
    torch.save(state, tmp / "train_state.pt")
    for name in ("model.safetensors", "config.json", "train_state.pt"):
        os.replace(tmp / name, run_dir / name)
    tmp.rmdir()
    with open(run_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)


def load_optimizer_state(model: GPT, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load whole, name-keyed optimizer state into this process's optimizer (its shards under FSDP).

    Older train_state.pt files hold ``optimizer.state_dict()``, keyed by position; positions follow
    ``configure_optimizer``'s parameter order in any layout, so they are renamed first.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if any(isinstance(i, int) for group in saved["param_groups"] for i in group["params"]):
        names = {id(p): name for name, p in model.named_parameters()}
        name_at = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        groups = [{**g, "params": [name_at[i] for i in g["params"]]} for g in saved["param_groups"]]
        saved = {"state": {name_at[i]: s for i, s in saved["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, saved, options=StateDictOptions(full_state_dict=True))


def load_training_state(run_dir: Path) -> dict[str, Any]:
    """``RUN/train_state.pt`` as written by :func:`save_checkpoint`."""
    path = run_dir / "train_state.pt"
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put torch, numpy and Python's random generators back where the checkpoint left them."""
    torch.set_rng_state(state["rng"]["torch"].cpu())
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])


__all__ = ["load_checkpoint", "load_optimizer_state", "load_training_state", "restore_rng", "save_checkpoint"]
