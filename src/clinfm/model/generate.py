"""Simulate patients' futures with the foundation model and read outcome probabilities off the samples.

From a history cut at a prediction time, N futures are sampled (batched, with a KV cache) until the
simulated time (the sum of time-gap tokens) passes the horizon, death is sampled, or the token budget runs
out. P(outcome within horizon) is the share of futures in which the outcome occurs, with a 95% Wilson
interval; the expected next diagnoses are the diagnosis codes new to the patient, by the share of futures
in which they appear. A fixed seed gives the same futures.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clinfm import schema
from clinfm.model.tokenizer import ClinicalTokenizer
from clinfm.model.transformer import GPT, KVCache

OUTCOME_ALIASES = {
    "death": schema.DEATH,
    "admission": schema.visit_code("IP", "START"),
    "inpatient": schema.visit_code("IP", "START"),
}
DIAGNOSIS_VOCABULARIES = ("ICD10CM", "ICD9CM", "SNOMED")


@dataclass
class Futures:
    """N sampled continuations of one history: tokens, simulated minutes at each token, why each stopped."""

    tokens: list[list[int]]
    minutes: list[list[float]]
    stop_reasons: list[str]  # "death", "horizon" or "budget"
    new_tokens: int  # tokens generated over all samples


@dataclass
class OutcomeEstimate:
    outcome: str
    probability: float
    ci_low: float
    ci_high: float
    events: int  # futures in which the outcome occurred
    samples: int


@dataclass
class DiagnosisForecast:
    code: str
    probability: float
    description: str | None = None


@dataclass
class Forecast:
    subject_id: int
    prediction_time: dt.datetime
    horizon_days: float
    samples: int
    outcomes: list[OutcomeEstimate]
    next_diagnoses: list[DiagnosisForecast]
    stop_reasons: dict[str, int] = field(default_factory=dict)
    history_tokens: int = 0
    mean_new_tokens: float = 0.0


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (well-behaved at 0 and n)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def outcome_pattern(spec: str) -> str:
    """``death`` / ``admission`` (``inpatient``) or a code glob such as ``ICD10CM//I50*``."""
    return OUTCOME_ALIASES.get(spec.strip().lower(), spec.strip())


def sampling_mask(tokenizer: ClinicalTokenizer) -> torch.Tensor:
    """Token ids a future may not contain: PAD, BOS, UNK, the static prefix, and EOS (the end of the
    record is censoring, not an event: futures run until the horizon, death or the token budget)."""
    kinds = tokenizer.token_kinds()
    banned = torch.from_numpy((kinds == 0) | (kinds == 3))
    return banned


@torch.no_grad()
def sample_futures(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    prompt: Sequence[int],
    n_samples: int,
    max_new_tokens: int,
    horizon_minutes: float = math.inf,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    use_cache: bool = True,
) -> Futures:
    """Sample ``n_samples`` continuations of ``prompt`` in one batch.

    With ``use_cache`` the prompt is encoded once and each new token costs one position per sample; when
    the context is full it is re-encoded from the prefix and the most recent half. ``use_cache=False``
    recomputes the whole sequence for every token (the baseline the benchmark compares against).
    """
    device = model.wte.weight.device
    block = model.config.block_size
    prompt = list(prompt)
    if len(prompt) >= block:
        raise ValueError(f"prompt of {len(prompt)} tokens does not fit the context of {block}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    banned = sampling_mask(tokenizer).to(device)
    minutes_of = torch.from_numpy(tokenizer.time_minutes()).to(device)
    death = tokenizer.code_id(schema.DEATH) if schema.DEATH in tokenizer.token_to_id_ else -1
    prefix = prompt[:3]

    seqs = torch.tensor(prompt, device=device).unsqueeze(0).repeat(n_samples, 1)  # (N, P)
    active = torch.arange(n_samples, device=device)  # rows of the full batch still running
    elapsed = torch.zeros(n_samples, dtype=torch.float64, device=device)
    out_tokens: list[list[int]] = [[] for _ in range(n_samples)]
    out_minutes: list[list[float]] = [[] for _ in range(n_samples)]
    reasons = ["budget"] * n_samples
    cache: KVCache | None = None
    pos = 0
    if use_cache:
        cache = model.new_kv_cache(1)
        logits, _ = model(seqs[:1], kv_cache=cache, start_pos=0)
        cache, pos = cache.expand(n_samples), seqs.size(1)
        logits = logits[:, -1].expand(n_samples, -1)  # (N, V)
    generated = 0
    for _ in range(max_new_tokens):
        if not use_cache:
            ctx = seqs[active] if seqs.size(1) <= block else _recent(seqs[active], prefix, block)
            logits = model(ctx)[0][:, -1]  # (n, V)
        logits = logits.float() / max(temperature, 1e-6)
        logits = logits.masked_fill(banned, -math.inf)
        if top_k:
            kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        probs = torch.softmax(logits, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(device).squeeze(1)  # (n,)
        generated += nxt.numel()
        elapsed[active] += minutes_of[nxt].double()
        full = torch.full((n_samples,), tokenizer.pad_id, device=device, dtype=seqs.dtype)
        full[active] = nxt
        seqs = torch.cat([seqs, full.unsqueeze(1)], dim=1)  # (N, P + t)
        keep = []
        for j, (row, tok) in enumerate(zip(active.tolist(), nxt.tolist())):
            if elapsed[row] > horizon_minutes:
                reasons[row] = "horizon"  # this time gap crosses the horizon: nothing after it counts
                continue
            out_tokens[row].append(tok)
            out_minutes[row].append(float(elapsed[row]))
            if tok == death:
                reasons[row] = "death"
                continue
            keep.append(j)
        if not keep:
            break
        keep_t = torch.tensor(keep, device=device)
        active, nxt = active[keep_t], nxt[keep_t]
        if cache is not None:
            cache = cache.select(keep_t)
            if pos + 1 > cache.max_len:  # context full: restart from the prefix and the recent half
                ctx = _recent(seqs[active], prefix, block // 2)
                cache = model.new_kv_cache(len(active))
                logits, _ = model(ctx, kv_cache=cache, start_pos=0)
                logits, pos = logits[:, -1], ctx.size(1)
            else:
                logits, _ = model(nxt.unsqueeze(1), kv_cache=cache, start_pos=pos)
                logits, pos = logits[:, -1], pos + 1
    return Futures(out_tokens, out_minutes, reasons, generated)


def _recent(seqs: torch.Tensor, prefix: list[int], length: int) -> torch.Tensor:
    """The static prefix followed by the most recent tokens: (n, length)."""
    head = torch.tensor(prefix, device=seqs.device).unsqueeze(0).expand(seqs.size(0), -1)
    return torch.cat([head, seqs[:, -(length - len(prefix)) :]], dim=1)


def summarize_futures(
    futures: Futures,
    tokenizer: ClinicalTokenizer,
    outcomes: Sequence[str],
    history: Sequence[int] = (),
    descriptions: dict[str, str] | None = None,
    top_diagnoses: int = 10,
) -> tuple[list[OutcomeEstimate], list[DiagnosisForecast]]:
    """Outcome probabilities (Wilson 95% CI) and the new diagnoses most often sampled."""
    n = len(futures.tokens)
    sampled = [{tokenizer.vocab_[t] for t in toks} for toks in futures.tokens]
    estimates = []
    for spec in outcomes:
        pattern = outcome_pattern(spec)
        k = sum(any(fnmatch.fnmatchcase(c, pattern) for c in codes) for codes in sampled)
        lo, hi = wilson_interval(k, n)
        estimates.append(OutcomeEstimate(spec, k / n if n else 0.0, lo, hi, k, n))
    known = {tokenizer.vocab_[t] for t in history}
    counts: Counter[str] = Counter()
    for codes in sampled:
        counts.update(c for c in codes if schema.vocabulary_of(c) in DIAGNOSIS_VOCABULARIES and c not in known)
    descriptions = descriptions or {}
    diagnoses = [
        DiagnosisForecast(code, k / n, descriptions.get(code)) for code, k in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    ][:top_diagnoses]
    return estimates, diagnoses


def forecast_subject(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    subject_table,
    prediction_time: dt.datetime,
    outcomes: Sequence[str] = ("death", "admission"),
    horizon_days: float = 365.0,
    n_samples: int = 32,
    max_new_tokens: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    descriptions: dict[str, str] | None = None,
) -> Forecast:
    """Forecast one subject from the events at or before ``prediction_time``."""
    block = model.config.block_size
    history = tokenizer.transform(subject_table, until=prediction_time, max_len=max(block // 2, block - max_new_tokens))
    enc = tokenizer.encode(subject_table, until=prediction_time)
    # Futures start at the last known event; nothing happened between it and the prediction time.
    gap = (prediction_time - enc.times[-1]).total_seconds() / 60.0 if enc.times else 0.0
    sid = enc.subject_id
    patient_seed = int(np.random.SeedSequence([seed, sid & 0xFFFFFFFF, sid >> 32 & 0xFFFFFFFF]).generate_state(1)[0])
    futures = sample_futures(
        model, tokenizer, history, n_samples, max_new_tokens, gap + horizon_days * 1440.0, patient_seed, temperature, top_k
    )
    estimates, diagnoses = summarize_futures(futures, tokenizer, outcomes, history, descriptions)
    return Forecast(
        subject_id=sid, prediction_time=prediction_time, horizon_days=horizon_days, samples=n_samples,
        outcomes=estimates, next_diagnoses=diagnoses, stop_reasons=dict(Counter(futures.stop_reasons)),
        history_tokens=len(history), mean_new_tokens=sum(map(len, futures.tokens)) / max(n_samples, 1),
    )  # fmt: skip


def forecast(
    run_dir: str | Path,
    dataset_dir: str | Path,
    points: Sequence[tuple[int, dt.datetime]],
    outcomes: Sequence[str] = ("death", "admission"),
    horizon_days: float = 365.0,
    n_samples: int = 32,
    max_new_tokens: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> list[Forecast]:
    """Forecasts for (subject_id, prediction_time) points with a trained run folder."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir, device=device)
    db = SubjectDatabase(dataset_dir)
    descriptions = db.descriptions()
    out = []
    for i, (sid, when) in enumerate(points):
        f = forecast_subject(
            model, tokenizer, db.table(sid), when, outcomes, horizon_days, n_samples, max_new_tokens,
            seed, temperature, top_k, descriptions,
        )  # fmt: skip
        out.append(f)
        if progress:
            progress(i + 1, len(points))
    return out


def sample_rollout(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    subject_table,
    prediction_time: dt.datetime,
    max_new_tokens: int = 48,
    seed: int = 0,
) -> list[tuple[dt.datetime, str]]:
    """One sampled future of a subject, decoded as readable (simulated time, code) events."""
    block = model.config.block_size
    history = tokenizer.transform(subject_table, until=prediction_time, max_len=max(block // 2, block - max_new_tokens))
    enc = tokenizer.encode(subject_table, until=prediction_time)
    start = enc.times[-1] if enc.times else prediction_time
    futures = sample_futures(model, tokenizer, history, 1, max_new_tokens, seed=seed)
    return [(start + e.elapsed, e.code) for e in tokenizer.decode(futures.tokens[0])]
