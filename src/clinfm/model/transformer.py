"""The clinical foundation model: a decoder-only transformer over patient-timeline tokens.

One readable file in the spirit of nanoGPT: pre-LayerNorm blocks, rotary positions, tied input/output
embeddings, ``F.scaled_dot_product_attention`` and a key/value cache for generation. It depends on torch
(and safetensors for the weights) only, so a checkpoint (``model.safetensors`` + ``config.json``) loads without
the rest of ClinFM:

    cfg = GPTConfig(**json.load(open("run/config.json"))["model"])
    model = GPT(cfg); safetensors.torch.load_model(model, "run/model.safetensors")
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
"""Targets with this value (padding, window starts) do not count in the loss."""


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    block_size: int = 256  # longest sequence the model sees (training windows and rollout context)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm; off is slightly better and faster
    rope_base: float = 10000.0
    # MOTOR-style time-to-event head (0: off): piecewise-exponential hazards of the next occurrence of each
    # of ``tte_codes`` (token ids) in the bins ``tte_bin_days`` cut, trained jointly with next-token loss.
    tte_tasks: int = 0
    tte_weight: float = 1.0
    tte_bin_days: tuple[float, ...] = (1.0, 7.0, 30.0, 90.0, 365.0)
    tte_codes: tuple[int, ...] = ()
    tte_record_start: int = 1  # the BOS token id: records packed in one row never share a time line

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class KVCache:
    """Pre-allocated keys and values for every layer: (n_layer, B, n_head, max_len, head_dim) each."""

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32) -> None:
        shape = (cfg.n_layer, batch_size, cfg.n_head, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len

    def expand(self, batch_size: int) -> KVCache:
        """Repeat a batch-1 cache (a shared prompt) into ``batch_size`` independent rows."""
        assert self.k.size(1) == 1, "expand() is for a cache filled with one prompt"
        out = KVCache.__new__(KVCache)
        out.k = self.k.expand(-1, batch_size, -1, -1, -1).contiguous()
        out.v = self.v.expand(-1, batch_size, -1, -1, -1).contiguous()
        out.max_len = self.max_len
        return out

    def select(self, rows: torch.Tensor) -> KVCache:
        """Keep (or repeat) some batch rows (samples that are still running)."""
        out = KVCache.__new__(KVCache)
        out.k, out.v, out.max_len = self.k[:, rows], self.v[:, rows], self.max_len
        return out


class SharedPrefixCache:
    """One-token decoding of many samples of a few prompts: each prompt's keys/values are held once and read
    by all of its samples; only the tokens a sample generates are its own.

    ``prefix`` holds P left-padded prompts of length L (``prefix_mask`` (P, L) marks real tokens); row i of
    the batch is a sample of prompt ``owner[i]`` (rows sorted by owner). Generated tokens sit at positions
    L, L+1, ... for every row, so rotary angles stay relative."""

    def __init__(self, prefix: KVCache, prefix_mask: torch.Tensor, owner: torch.Tensor, room: int) -> None:
        self.pk, self.pv, self.pmask = prefix.k, prefix.v, prefix_mask  # (n_layer, P, nh, L, hd), (P, L)
        self.prefix_len = prefix.k.size(3)
        self._set_rows(owner, room)
        n_layer, _, nh, _, hd = prefix.k.shape
        self.gk = prefix.k.new_zeros((n_layer, owner.numel(), nh, room, hd))
        self.gv = prefix.v.new_zeros((n_layer, owner.numel(), nh, room, hd))

    def _set_rows(self, owner: torch.Tensor, room: int) -> None:
        counts = torch.bincount(owner, minlength=self.pk.size(1))
        starts = counts.cumsum(0) - counts
        self.owner, self.slot = owner, torch.arange(owner.numel(), device=owner.device) - starts[owner]
        self.n_slots = int(counts.max())
        self.max_len = self.prefix_len + room

    def select(self, rows: torch.Tensor, room: int, used: int) -> SharedPrefixCache:
        """Keep some rows (in order) with ``room`` generated positions, the first ``used`` copied."""
        out = SharedPrefixCache.__new__(SharedPrefixCache)
        out.pk, out.pv, out.pmask, out.prefix_len = self.pk, self.pv, self.pmask, self.prefix_len
        out._set_rows(self.owner[rows], room)
        shape = (self.gk.size(0), rows.numel(), self.gk.size(2), room, self.gk.size(4))
        out.gk, out.gv = self.gk.new_zeros(shape), self.gv.new_zeros(shape)
        out.gk[:, :, :, :used] = self.gk[:, rows, :, :used]
        out.gv[:, :, :, :used] = self.gv[:, rows, :, :used]
        return out

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Attention of one new token per row: q, k, v (b, nh, 1, hd) -> (b, nh, 1, hd)."""
        t = start_pos - self.prefix_len
        self.gk[layer, :, :, t] = k[:, :, 0]
        self.gv[layer, :, :, t] = v[:, :, 0]
        gk, gv = self.gk[layer, :, :, : t + 1], self.gv[layer, :, :, : t + 1]  # (b, nh, t+1, hd)
        P, nh, L, hd = self.pk.shape[1:]
        owner, slot, scale = self.owner, self.slot, 1.0 / math.sqrt(hd)
        qp = q.new_zeros((P, nh, self.n_slots, hd))  # the rows of each prompt, side by side
        qp[owner, :, slot] = q[:, :, 0]
        sp = (qp @ self.pk[layer].transpose(-1, -2))[owner, :, slot] * scale  # (b, nh, L)
        sp = sp.masked_fill(~self.pmask[owner].unsqueeze(1), -math.inf)
        sg = (q @ gk.transpose(-1, -2)).squeeze(2) * scale  # (b, nh, t+1)
        w = torch.softmax(torch.cat([sp, sg], dim=-1), dim=-1)  # (b, nh, L+t+1)
        wp = q.new_zeros((P, nh, self.n_slots, L))
        wp[owner, :, slot] = w[..., :L]
        yp = (wp @ self.pv[layer])[owner, :, slot]  # (b, nh, hd)
        yg = (w[..., L:].unsqueeze(2) @ gv).squeeze(2)  # (b, nh, hd)
        return (yp + yg).unsqueeze(2)


def rotary_tables(cfg: GPTConfig, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles for positions 0..length-1: (length, head_dim // 2) each."""
    inv_freq = 1.0 / (cfg.rope_base ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(length, device=device).float(), inv_freq)  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of x (B, nh, T, hd) by position-dependent angles (T, hd/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, nh, T, hd/2) each
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hd/2, 2)
    return out.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, f"n_embd {cfg.n_embd} is not a multiple of n_head {cfg.n_head}"
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout

    def forward(self, x, cos, sin, layer: int, cache: KVCache | SharedPrefixCache | None, start_pos: int, key_mask=None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        mask, causal = None, True
        if isinstance(cache, SharedPrefixCache):
            y = cache.attend(layer, q, k, v, start_pos)  # (B, nh, 1, hd)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        if cache is not None:
            end = start_pos + T
            cache.k[layer, :, :, start_pos:end] = k
            cache.v[layer, :, :, start_pos:end] = v
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]  # (B, nh, end, hd)
            if T == 1:  # one new token attends to everything before it
                causal = False
            elif start_pos > 0:  # a chunk after a cached prefix: causal within the chunk, all of the prefix
                causal = False
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start_pos)
        if key_mask is not None:  # (B, >= end): keys that exist (left padding and dropped history are False)
            end = k.size(2)
            allowed = key_mask[:, None, None, :end]  # (B, 1, 1, end)
            if T > 1:
                causal_mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=end - T)
                # a query always sees itself, so a padding query's softmax stays finite (its output is unused)
                self_mask = torch.zeros(T, end, dtype=torch.bool, device=x.device).diagonal_scatter(
                    torch.ones(T, dtype=torch.bool, device=x.device), offset=end - T)
                allowed = (allowed & causal_mask) | self_mask
            mask, causal = allowed, False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, layer: int, cache: KVCache | SharedPrefixCache | None, start_pos: int, key_mask=None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin, layer, cache, start_pos, key_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: save with safetensors' save_model, not save_file
        self.tte_head: nn.Linear | None = None
        self.tte_minutes: torch.Tensor  # (V,) minutes each token stands for, a buffer when the head is on
        if cfg.tte_tasks:
            if len(cfg.tte_codes) != cfg.tte_tasks:
                raise ValueError(f"tte_tasks {cfg.tte_tasks} needs as many tte_codes (got {len(cfg.tte_codes)})")
            self.tte_head = nn.Linear(cfg.n_embd, (len(cfg.tte_bin_days) + 1) * cfg.tte_tasks)
            self.register_buffer("tte_minutes", torch.zeros(cfg.vocab_size, dtype=torch.float64))  # minutes per token
        cos, sin = rotary_tables(cfg, cfg.block_size)
        self.rope_cos: torch.Tensor  # (block_size, head_dim // 2) buffers, moved with the module
        self.rope_sin: torch.Tensor
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if self.tte_head is not None:  # start at one occurrence a year: the loss starts on the scale of the next-token loss
            nn.init.constant_(self.tte_head.bias, -math.log(365.0))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights count once

    def hidden_states(
        self, idx: torch.Tensor, kv_cache: KVCache | SharedPrefixCache | None = None, start_pos: int = 0, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final (layer-normed) hidden states for token ids idx (B, T): (B, T, C).

        ``key_mask`` (B, >= start_pos + T) bool marks the positions that exist in each row (False: left
        padding), so rows of different lengths share one batch and one position counter (rotary attention
        depends on relative positions only, so a left-padded row computes what it would alone)."""
        end = start_pos + idx.size(1)  # idx is (B, T)
        limit = kv_cache.max_len if kv_cache is not None else self.config.block_size
        if end > limit:
            raise ValueError(f"positions up to {end} exceed the context of {limit} tokens")
        if end > self.rope_cos.size(0):  # a cache longer than block_size: extend the rotary tables
            cos, sin = rotary_tables(self.config, end, device=idx.device)
        else:
            cos, sin = self.rope_cos, self.rope_sin
        cos, sin = cos[start_pos:end], sin[start_pos:end]  # (T, hd/2)
        x = self.drop(self.wte(idx))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, layer, kv_cache, start_pos, key_mask)
        return self.ln_f(x)  # (B, T, C)

    def last_logits(
        self, idx: torch.Tensor, kv_cache: KVCache | SharedPrefixCache | None = None, start_pos: int = 0, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the last position only (B, V): a prefill need not project every position onto the vocabulary."""
        return self.lm_head(self.hidden_states(idx, kv_cache, start_pos, key_mask)[:, -1])  # (B, V)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | SharedPrefixCache | None = None,
        start_pos: int = 0,
        reduction: str = "mean",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V) and, given targets (B, T), the cross-entropy loss.

        With ``kv_cache`` the keys/values of positions start_pos..start_pos+T-1 are written to the cache and
        attention also reads the cached positions before start_pos (incremental decoding).
        """
        x = self.hidden_states(idx, kv_cache, start_pos)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
        )
        if self.tte_head is not None and self.training:  # evaluation (perplexity) scores next-token loss only
            nll, n = self.tte_loss(x, idx, targets != IGNORE_INDEX)
            loss = loss + self.config.tte_weight * (nll if reduction == "sum" else nll / max(n, 1))
        return logits, loss

    def tte_loss(self, x: torch.Tensor, idx: torch.Tensor, counted: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed piecewise-exponential NLL (mean over tasks) at the ``counted`` positions, and their count.

        x (B, T, C) hidden states of idx (B, T); see :func:`time_to_event_targets` for the targets."""
        cfg, head = self.config, self.tte_head
        if head is None:
            raise RuntimeError("this model has no time-to-event head (model.tte_tasks is 0)")
        bins = len(cfg.tte_bin_days) + 1
        log_h = head(x).float().view(*x.shape[:2], bins, cfg.tte_tasks)  # (B, T, bins, K)
        codes = torch.tensor(cfg.tte_codes, device=idx.device)
        t, event = time_to_event_targets(idx, self.tte_minutes, codes, cfg.tte_record_start)  # (B, T, K) days, bool
        nll = piecewise_exponential_nll(log_h, t, event, cfg.tte_bin_days)  # (B, T, K)
        return (nll.mean(-1) * counted).sum(), int(counted.sum())

    def new_kv_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        p = self.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, device=p.device, dtype=p.dtype)

    def configure_optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float], fused: bool = False):
        """AdamW with weight decay on matrices only (not on LayerNorm weights or biases)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def time_to_event_targets(
    idx: torch.Tensor, minutes: torch.Tensor, codes: torch.Tensor, bos_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position and task code: days to the code's next occurrence after the position, or to the end of
    the position's record (censored). idx (B, T), minutes (V,) per token, codes (K,) -> (B, T, K) twice.

    Time is the running sum of time-gap tokens. A packed row holds several records, each starting with
    ``bos_id``: times never cross a record boundary."""
    B, T = idx.shape
    elapsed = minutes.to(idx.device)[idx].double().cumsum(dim=1)  # (B, T) minutes
    seg = (idx == bos_id).long().cumsum(dim=1) if bos_id is not None else torch.zeros_like(idx)
    big = 1e12  # minutes: records further apart than any record is long
    shifted = elapsed + seg * big  # (B, T)
    occ = idx.unsqueeze(-1) == codes.view(1, 1, -1)  # (B, T, K)
    when = torch.where(occ, shifted.unsqueeze(-1), torch.full_like(shifted, math.inf).unsqueeze(-1))
    at_or_after = when.flip(1).cummin(dim=1).values.flip(1)  # (B, T, K)
    after = torch.cat([at_or_after[:, 1:], torch.full_like(at_or_after[:, :1], math.inf)], dim=1)
    seg_end = torch.zeros(B, int(seg.max()) + 1, dtype=shifted.dtype, device=idx.device).scatter_reduce(
        1, seg, shifted, reduce="amax", include_self=False)  # (B, S): each record's last time
    end = seg_end.gather(1, seg)  # (B, T)
    event = after <= end.unsqueeze(-1)  # the next occurrence is in this record
    t = torch.where(event, after, end.unsqueeze(-1)) - shifted.unsqueeze(-1)
    return (t / 1440.0).float(), event


def piecewise_exponential_nll(
    log_hazard: torch.Tensor, t: torch.Tensor, event: torch.Tensor, bin_days: tuple[float, ...]
) -> torch.Tensor:
    """Negative log-likelihood of event (or censoring) time t (days) under a hazard constant within bins.

    log_hazard (..., bins, K) per day in the bins [0, b1), [b1, b2), ... [b_last, inf); t, event (..., K).
    NLL = sum_b h_b * (time at risk in bin b) - [event] * log h_(bin of t). An event at t = 0 (the same
    timestamp) is counted at one minute, so its likelihood stays bounded."""
    edges = torch.tensor((0.0, *bin_days), device=t.device, dtype=t.dtype)  # (bins,)
    upper = torch.cat([edges[1:], edges.new_tensor([math.inf])])
    t = t.clamp(min=1.0 / 1440.0).unsqueeze(-2)  # (..., 1, K)
    exposure = (torch.minimum(t, upper.view(-1, 1)) - edges.view(-1, 1)).clamp(min=0)  # (..., bins, K)
    in_bin = (t >= edges.view(-1, 1)) & (t < upper.view(-1, 1))  # (..., bins, K)
    log_h = log_hazard.float()
    return (log_h.exp() * exposure).sum(-2) - (event.unsqueeze(-2) & in_bin).float().mul(log_h).sum(-2)


def save_pretrained(model: GPT, run_dir: str | Path, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` (tied weights kept once) and ``config.json`` to run_dir."""
    from safetensors.torch import save_model

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(run_dir / "model.safetensors"), metadata={"format": "pt", "clinfm": "gpt-v1"})
    (run_dir / "config.json").write_text(json.dumps({"model": asdict(model.config), **(extra or {})}, indent=2))


def load_pretrained(run_dir: str | Path, device: str = "cpu") -> GPT:
    """Rebuild the model from ``config.json`` + ``model.safetensors`` alone (no ClinFM code needed)."""
    from safetensors.torch import load_model

    run_dir = Path(run_dir)
    fields: dict[str, Any] = json.loads((run_dir / "config.json").read_text())["model"]
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}  # JSON lists: tuples
    cfg = GPTConfig(**kwargs)
    model = GPT(cfg)
    load_model(model, str(run_dir / "model.safetensors"), device=device)
    return model.to(device).eval()
