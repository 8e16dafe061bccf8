"""Pretrain the foundation model on a MEDS dataset: next-token loss over patient timelines in fixed windows.

One function, :func:`pretrain`, runs single-process or as one rank of ``torchrun`` (it reads RANK /
WORLD_SIZE; gloo on CPU, nccl on GPU), and ``python -m clinfm.model.train DATASET --config C --out RUN``
is the entry point torchrun starts::

    torchrun --standalone --nproc_per_node 2 -m clinfm.model.train DATASET --config fm-small --out RUN

The loop is :func:`_build` (model, parallel wrapping, optimizer), :func:`_restore` (a checkpoint's optimizer,
scaler and RNG state) and :func:`_step` (one optimizer step over the global batch). The run folder it writes,
and how a trained model is read back, live in :mod:`clinfm.model.checkpoint`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from clinfm.engine import LOCAL, Engine
from clinfm.model.checkpoint import load_optimizer_state, load_training_state, restore_rng, save_checkpoint
from clinfm.model.config import FMConfig, load_config, save_config
from clinfm.model.corpus import is_prepared, prepare_corpus
from clinfm.model.tokenizer import ClinicalTokenizer
from clinfm.model.transformer import GPT, IGNORE_INDEX

TOP_K = (1, 5, 10)


@dataclass
class EvalMetrics:
    """Next-token loss and perplexity over all targets; top-k accuracy over targets that are codes."""

    loss: float
    perplexity: float
    tokens: int
    code_tokens: int
    top_k_accuracy: dict[int, float] = field(default_factory=dict)


@dataclass
class TrainProgress:
    """What the progress callback receives after each logged step (and after each evaluation)."""

    step: int
    max_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    elapsed_s: float
    evaluation: EvalMetrics | None = None


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    max_steps: int
    n_params: int
    vocab_size: int
    train_windows: int
    train_tokens_seen: int
    final_train_loss: float
    tuning: EvalMetrics | None
    tokens_per_s: float  # training steps only (no evaluation or checkpoint time)
    wall_s: float
    world_size: int
    parallel: str  # "single", "ddp" or "fsdp": how the model was spread over the processes
    param_bytes: int  # the whole model's parameters
    param_bytes_per_rank: int  # the parameters one process holds: all of them, or its shards under fsdp
    losses: list[float]
    tokenizer_stats: dict


ProgressFn = Callable[[TrainProgress], None]


# --- distributed set-up --------------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float], device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()


def _init_distributed(device_kind: str) -> _Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    d = _Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return d


def _pick_device(cfg: FMConfig, d: _Dist) -> torch.device:
    want = cfg.training.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def _shard(model: GPT, device: torch.device, world: int) -> None:
    """FSDP2 over all processes: each block, then the root (embedding with its tied lm_head, final norm).

    Parameters become DTensor shards, each group moved to ``device`` as it is sharded, so no process ever
    holds the whole model there; a group is gathered only for its own forward and backward.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _param_bytes(model: GPT) -> tuple[int, int]:
    """Bytes of the whole model's parameters, and of the part this process holds (its shards under FSDP)."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())  # a tied weight once
    local = [p.to_local() if isinstance(p, DTensor) else p for p in params]
    return sum(p.numel() * p.element_size() for p in params), sum(p.numel() * p.element_size() for p in local)


def _autocast(cfg: FMConfig, device: torch.device):
    """bf16/fp16 autocast on GPU only; on CPU training stays fp32."""
    if device.type != "cuda" or cfg.training.amp_dtype == "float32":
        return contextlib.nullcontext, None
    name = cfg.training.amp_dtype
    if name == "auto":
        name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    dtype = getattr(torch, name)
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


# --- data ----------------------------------------------------------------------------------------------
def no_loss_mask(tokenizer: ClinicalTokenizer) -> torch.Tensor:
    """Token ids that are never targets: PAD, BOS (a window start) and the static prefix (sex, age)."""
    kinds = tokenizer.token_kinds()
    mask = torch.from_numpy(kinds == 3)
    mask[tokenizer.pad_id] = mask[tokenizer.bos_id] = True
    return mask


def inputs_and_targets(rows: np.ndarray, no_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (B, T+1) -> inputs (B, T) and targets (B, T), targets that do not count set to IGNORE_INDEX."""
    t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    x, y = t[:, :-1], t[:, 1:].clone()
    y[no_loss[y]] = IGNORE_INDEX
    return x, y


def batch_indices(step: int, n_windows: int, batch_size: int, seed: int) -> np.ndarray:
    """The global batch of window indices at ``step``: epochs are seeded permutations laid end to end,
    so the batch depends only on (seed, step) and a resumed run sees exactly the same data."""
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_windows)
        perm = np.random.default_rng([seed, epoch]).permutation(n_windows)
        out.extend(perm[offset : offset + batch_size - len(out)].tolist())
    return np.asarray(out)


def lr_at(step: int, cfg: FMConfig, max_steps: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``max_steps``."""
    t = cfg.training
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(max_steps - t.warmup_steps, 1)
    ratio = min(max((step - t.warmup_steps) / span, 0.0), 1.0)
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t.lr - t.min_lr)


# --- evaluation ----------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: GPT,
    windows: np.ndarray,
    tokenizer: ClinicalTokenizer,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    d: _Dist | None = None,
    autocast=contextlib.nullcontext,
) -> EvalMetrics:
    """Loss, perplexity and top-k next-code accuracy of ``model`` over ``windows`` (rows of T+1 tokens).

    Every process calls this with the same ``windows`` and scores its share; all run the same number of
    forward passes, since under FSDP each one gathers parameters from every process.
    """
    d = d or _Dist()
    was_training = model.training
    model.eval()
    no_loss = no_loss_mask(tokenizer)
    is_code = torch.from_numpy(tokenizer.token_kinds() == 4).to(device)
    loss_sum, n, n_code = 0.0, 0, 0
    hits = {k: 0 for k in TOP_K}
    mine = np.arange(d.rank, len(windows), d.world)
    most = math.ceil(len(windows) / d.world)  # the largest share
    for i in range(0, most, batch_size):
        rows = mine[i : i + batch_size]
        x, y = inputs_and_targets(windows[rows if len(rows) else [0]], no_loss)
        x, y = x.to(device), y.to(device)
        with autocast():
            logits, loss = model(x, y, reduction="sum")
        if not len(rows):  # this share is used up: the forward pass above only kept in step with the others
            continue
        loss_sum += float(loss)
        valid = y != IGNORE_INDEX
        n += int(valid.sum())
        code_pos = valid & is_code[y.clamp(min=0)]
        if code_pos.any():
            code_logits = logits[code_pos].float().masked_fill(~is_code, -math.inf)  # (N, V)
            top = code_logits.topk(max(TOP_K), dim=-1).indices  # (N, kmax)
            match = top == y[code_pos].unsqueeze(-1)
            for k in TOP_K:
                hits[k] += int(match[:, :k].any(-1).sum())
            n_code += int(code_pos.sum())
    totals = d.sum([loss_sum, n, n_code, *hits.values()], device)
    loss_sum, n, n_code = totals[0], int(totals[1]), int(totals[2])
    model.train(was_training)
    mean = loss_sum / max(n, 1)
    return EvalMetrics(
        loss=mean, perplexity=math.exp(min(mean, 50.0)), tokens=n, code_tokens=n_code,
        top_k_accuracy={k: totals[3 + j] / max(n_code, 1) for j, k in enumerate(TOP_K)},
    )  # fmt: skip


# --- the training loop ---------------------------------------------------------------------------------
def _corpus(dataset_dir: Path, cfg: FMConfig, run_dir: Path, resume: bool, engine: Engine, init: Path | None) -> dict:
    """The run's tokenizer and windows, reused when resuming or already prepared for this dataset and config
    (``clinfm pretrain --prepare-only``); returns the tokenizer statistics."""
    stats_file = run_dir / "tokenizer_stats.json"
    have = (run_dir / "tokenizer.json").exists() and (run_dir / "windows" / "train.npy").exists()
    if have and (resume or is_prepared(dataset_dir, cfg, run_dir, init)):
        return json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return prepare_corpus(dataset_dir, cfg, run_dir, engine=engine, tokenizer_from=init)


def continued_config(cfg: FMConfig, init: Path) -> FMConfig:
    """``cfg`` with the architecture and tokenizer settings of the run at ``init`` (its weights must fit)."""
    if not (init / "model.safetensors").exists() or not (init / "tokenizer.json").exists():
        raise FileNotFoundError(f"--init {init} is not a trained ClinFM run folder (expected model.safetensors and tokenizer.json)")
    base = load_config(init / "fm-config.yaml") if (init / "fm-config.yaml").exists() else cfg
    arch = json.loads((init / "config.json").read_text())["model"]
    keys = ("n_layer", "n_head", "n_embd", "block_size", "bias", "tte_tasks", "tte_bin_days")
    model = base.model.model_copy(update={k: arch[k] for k in keys if k in arch})
    return cfg.model_copy(update={"model": model, "tokenizer": base.tokenizer})


@dataclass
class _Trainer:
    """What :func:`_build` makes: the model (whole or FSDP shards), the module the loop calls (compiled, DDP),
    the optimizer and loss scaler, and how the global batch splits over processes."""

    model: GPT
    train_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    parallel: str  # single, ddp or fsdp
    per_rank: int  # windows per micro-batch in each process
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]


def tte_codes(train_w: np.ndarray, tokenizer: ClinicalTokenizer, k: int) -> tuple[int, ...]:
    """The ``k`` code tokens most frequent in the train windows (ties by id): the time-to-event tasks."""
    counts = np.bincount(np.asarray(train_w).ravel(), minlength=tokenizer.vocab_size)[: tokenizer.vocab_size]
    counts[tokenizer.token_kinds() != 4] = -1
    order = np.lexsort((np.arange(len(counts)), -counts))
    return tuple(int(i) for i in order[:k] if counts[i] > 0)


def _build(cfg: FMConfig, tokenizer: ClinicalTokenizer, d: _Dist, weights: Path | None = None,
           train_w: np.ndarray | None = None) -> _Trainer:  # fmt: skip
    """Model, parallel wrapping and optimizer for this process; ``weights`` (a run's model.safetensors) are
    loaded before sharding so every layout starts from the same whole tensors."""
    t = cfg.training
    per_rank, rem = divmod(t.batch_size, d.world * t.grad_accum_steps)
    if rem or per_rank == 0:
        raise ValueError(
            f"batch_size {t.batch_size} must be a multiple of processes x grad_accum_steps = {d.world * t.grad_accum_steps}"
        )
    device = _pick_device(cfg, d)
    autocast, amp_dtype = _autocast(cfg, device)
    fsdp = t.parallel == "fsdp" and d.world > 1
    parallel = "fsdp" if fsdp else "ddp" if d.world > 1 else "single"
    torch.manual_seed(t.seed)  # the same initial weights in every process
    home = torch.device("cpu") if fsdp else device  # under FSDP only shards reach the device
    gpt_cfg = cfg.model.gpt_config(tokenizer.vocab_size)
    if gpt_cfg.tte_tasks:
        codes = tte_codes(train_w, tokenizer, gpt_cfg.tte_tasks) if train_w is not None else ()
        gpt_cfg = replace(gpt_cfg, tte_tasks=len(codes), tte_codes=codes, tte_record_start=tokenizer.bos_id)
    model = GPT(gpt_cfg).to(home)
    if gpt_cfg.tte_tasks:
        model.tte_minutes.copy_(torch.from_numpy(tokenizer.time_minutes()))
    if weights is not None:
        from safetensors.torch import load_model

        load_model(model, str(weights), device=str(home))
    if fsdp:
        _shard(model, device, d.world)
    # Built after sharding, so that it holds the shards and not the whole parameters they replaced.
    optimizer = model.configure_optimizer(t.lr, t.weight_decay, (t.beta1, t.beta2), fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    train_model: torch.nn.Module = model
    if t.compile:
        train_model = torch.compile(model)  # type: ignore[assignment]
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[d.local_rank] if device.type == "cuda" else None)
    return _Trainer(model, train_model, optimizer, scaler, parallel, per_rank, device, autocast)


def _restore(trainer: _Trainer, run_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    """Optimizer, loss scaler and RNG state from the run's last checkpoint; returns (step, history)."""
    state = load_training_state(run_dir)
    load_optimizer_state(trainer.model, trainer.optimizer, state["optimizer"])
    if trainer.scaler is not None and state["scaler"]:
        trainer.scaler.load_state_dict(state["scaler"])
    restore_rng(state)
    return state["step"], state["history"]


def _step(trainer: _Trainer, cfg: FMConfig, d: _Dist, step: int, max_steps: int, train_w: np.ndarray,
          no_loss: torch.Tensor) -> tuple[float, float]:  # fmt: skip
    """One optimizer step over this process's share of the global batch; returns (mean loss per target, lr)."""
    t, model, optimizer, scaler, device = cfg.training, trainer.model, trainer.optimizer, trainer.scaler, trainer.device
    per_rank = trainer.per_rank
    # Seeded per step and rank, so dropout masks are the same after a resume.
    torch.manual_seed(t.seed * 1_000_003 + step * 7919 + d.rank)
    lr = lr_at(step, cfg, max_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    idx = batch_indices(step, len(train_w), t.batch_size, t.seed)
    idx = np.sort(idx[d.rank * per_rank * t.grad_accum_steps : (d.rank + 1) * per_rank * t.grad_accum_steps])
    micro = [inputs_and_targets(train_w[idx[i : i + per_rank]], no_loss) for i in range(0, len(idx), per_rank)]
    # Normalise by the target count of the whole global batch: the same gradient in any process layout.
    n_local = sum(int((y != IGNORE_INDEX).sum()) for _, y in micro)
    n_global = d.sum([n_local], device)[0]
    loss_sum = 0.0
    for i, (x, y) in enumerate(micro):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        # Gradients are all-reduced (DDP) or reduce-scattered (FSDP) after the last micro-batch only.
        last = i == len(micro) - 1
        if trainer.parallel == "fsdp":
            model.set_requires_gradient_sync(last)  # type: ignore[operator]
        no_sync = (
            trainer.train_model.no_sync()  # type: ignore[operator]  # a DDP module under ddp
            if trainer.parallel == "ddp" and not last
            else contextlib.nullcontext()
        )
        with no_sync, trainer.autocast():
            _, loss = trainer.train_model(x, y, reduction="sum")
        loss_sum += loss.item()
        scaled = loss * (d.world / max(n_global, 1))
        (scaler.scale(scaled) if scaler else scaled).backward()
    if scaler:
        scaler.unscale_(optimizer)
    if t.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return d.sum([loss_sum], device)[0] / max(n_global, 1), lr


def pretrain(
    dataset_dir: str | Path,
    config: str | Path | FMConfig | dict | None,
    out_dir: str | Path,
    progress: ProgressFn | None = None,
    resume: bool = False,
    stop_at_step: int | None = None,
    engine: Engine = LOCAL,
    init: str | Path | None = None,
) -> TrainResult:
    """Pretrain a model on the train split of a MEDS dataset and write a run folder to ``out_dir``.

    ``resume`` continues from ``out_dir``'s last checkpoint with the same batches, schedule and losses as
    an uninterrupted run. ``stop_at_step`` ends early (after checkpointing), as an interruption would.
    Under torchrun each process calls this; only rank 0 writes files and reports progress. Tokenization
    runs first, on ``engine`` (local processes or Ray), unless the run folder already holds windows
    prepared for this dataset and config (:func:`clinfm.model.corpus.prepare_corpus`).

    ``init`` (a trained run folder) is continued pretraining: the new run starts from that run's weights,
    tokenizer and architecture, and trains on ``dataset_dir`` with ``config``'s training settings (a fresh
    optimizer and schedule); the path by which one site's model helps another's.
    """
    cfg = load_config(config)
    init = Path(init) if init else None
    if init is not None:
        cfg = continued_config(cfg, init)
    t = cfg.training
    dataset_dir, run_dir = Path(dataset_dir), Path(out_dir)
    d = _init_distributed("cuda" if t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available()) else "cpu")
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if resume and not (run_dir / "train_state.pt").exists():
        raise FileNotFoundError(f"cannot resume: {run_dir / 'train_state.pt'} does not exist")
    wall0 = time.perf_counter()

    stats: dict = {}
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        stats = _corpus(dataset_dir, cfg, run_dir, resume, engine, init)
        if not resume:
            save_config(cfg, run_dir / "fm-config.yaml")
    d.barrier()
    tok = ClinicalTokenizer.load(run_dir / "tokenizer.json")
    train_w = np.load(run_dir / "windows" / "train.npy", mmap_mode="r")
    tuning_w = np.load(run_dir / "windows" / "tuning.npy", mmap_mode="r")
    if t.eval_windows:
        tuning_w = tuning_w[: t.eval_windows]
    no_loss = no_loss_mask(tok)
    max_steps = t.max_steps or max(1, math.ceil(t.epochs * len(train_w) / t.batch_size))

    weights = run_dir / "model.safetensors" if resume else (init / "model.safetensors" if init else None)
    trainer = _build(cfg, tok, d, weights, train_w)
    start_step, history = _restore(trainer, run_dir) if resume else (0, [])
    model = trainer.model
    model.train()
    losses = [h["loss"] for h in history if "loss" in h]
    tokens_per_step = t.batch_size * cfg.model.block_size
    train_time, last_eval, step = 0.0, None, start_step
    last_loss = losses[-1] if losses else float("nan")
    for step in range(start_step, max_steps):
        t0 = time.perf_counter()
        last_loss, lr = _step(trainer, cfg, d, step, max_steps, train_w, no_loss)
        train_time += time.perf_counter() - t0
        losses.append(last_loss)
        history.append({"step": step + 1, "loss": last_loss, "lr": lr})

        done = step + 1
        evaluation = None
        if (done % t.eval_interval == 0 or done == max_steps) and len(tuning_w):
            evaluation = evaluate(model, tuning_w, tok, trainer.per_rank, trainer.device, d, trainer.autocast)
            last_eval = evaluation
            history.append({"step": done, "tuning": asdict(evaluation)})
        if d.main and progress and (done % t.log_interval == 0 or evaluation or done == max_steps):
            tps = (done - start_step) * tokens_per_step / max(train_time, 1e-9)
            progress(TrainProgress(done, max_steps, last_loss, lr, tps, time.perf_counter() - wall0, evaluation))
        stop = stop_at_step is not None and done >= stop_at_step
        if done % t.checkpoint_interval == 0 or done == max_steps or stop:
            save_checkpoint(run_dir, model, trainer.optimizer, trainer.scaler, done, max_steps, history, cfg,
                            lr_at(done, cfg, max_steps), main=d.main)  # fmt: skip
        if stop:
            break
    d.barrier()
    steps_run = max(step + 1 - start_step, 0) if max_steps > start_step else 0
    param_bytes, param_bytes_per_rank = _param_bytes(model)
    return TrainResult(
        run_dir=run_dir, steps=len(losses), max_steps=max_steps, n_params=model.num_params(),
        vocab_size=tok.vocab_size, train_windows=len(train_w), train_tokens_seen=len(losses) * tokens_per_step,
        final_train_loss=last_loss, tuning=last_eval,
        tokens_per_s=steps_run * tokens_per_step / max(train_time, 1e-9), wall_s=time.perf_counter() - wall0,
        world_size=d.world, parallel=trainer.parallel, param_bytes=param_bytes, param_bytes_per_rank=param_bytes_per_rank,
        losses=losses, tokenizer_stats=stats,
    )  # fmt: skip


# --- command line (what torchrun starts) ---------------------------------------------------------------
def _print_progress(p: TrainProgress) -> None:
    line = f"step {p.step}/{p.max_steps} loss {p.loss:.4f} lr {p.lr:.2e} {p.tokens_per_s:,.0f} tok/s {p.elapsed_s:.0f}s"
    if p.evaluation:
        e = p.evaluation
        line += f" | tuning loss {e.loss:.4f} ppl {e.perplexity:.2f} top1 {e.top_k_accuracy[1]:.3f} top10 {e.top_k_accuracy[10]:.3f}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clinfm.model.train", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="MEDS dataset folder")
    parser.add_argument("--config", default=None, help="YAML path or packaged size (fm-tiny, fm-small, fm-medium)")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-at-step", type=int, default=None)
    parser.add_argument("--init", type=Path, default=None, help="continue pretraining from this run folder's weights")
    parser.add_argument("--losses-json", type=Path, default=None, help="write the per-step losses here (rank 0)")
    args = parser.parse_args(argv)
    result = pretrain(args.dataset, args.config, args.out, _print_progress, args.resume, args.stop_at_step, init=args.init)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "losses"}
        print(json.dumps(summary, default=str), flush=True)
        if args.losses_json:
            args.losses_json.write_text(json.dumps(result.losses))
    if dist.is_initialized():
        # gloo can abort at interpreter exit after a clean run; leave without running exit handlers.
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
