"""Simulate patients' futures with the foundation model and read outcome probabilities off the samples.

From a history cut at a prediction time, N futures are sampled until the simulated time (the sum of
time-gap tokens) passes the horizon, death is sampled, or the token budget (or the model's context) runs
out. P(outcome within horizon) is the share of futures in which the outcome occurs, with a 95% Wilson
interval; the expected next diagnoses are the diagnosis codes new to the patient, by the share of futures
in which they appear.

Rollouts of many prediction points share one batch (left-padded prompts, one position counter); each
history is prefilled once, computing only the last position's logits, and its KV cache is repeated for
its samples; sampling can stop once the estimates' intervals are narrow enough. Every sample draws from
its own uniforms (inverse-CDF sampling), so a fixed seed gives the same futures whatever the batching,
and the same as the slow reference path that recomputes the whole sequence for every token.
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
from clinfm.model.transformer import GPT, SharedPrefixCache

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


def rollout_uniforms(seed: int, n_samples: int, max_new_tokens: int) -> torch.Tensor:
    """The uniform draws of a point's futures: row j, column t decides sample j's t-th new token (n, T).

    Each sample's randomness is its own, so which samples share a batch, how many rounds are drawn and
    whether a cache is used cannot change a sample."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.rand((n_samples, max(max_new_tokens, 1)), generator=gen, dtype=torch.float64)


def _draw(logits: torch.Tensor, u: torch.Tensor, banned: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """One token per row by inverse-CDF sampling: logits (n, V), u (n,) in [0, 1) -> ids (n,)."""
    logits = logits.float() / max(temperature, 1e-6)
    logits = logits.masked_fill(banned, -math.inf)
    if top_k:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    cdf = torch.softmax(logits, dim=-1).double().cumsum(dim=-1)  # (n, V)
    ids = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return ids.clamp_(max=logits.size(-1) - 1)


@dataclass
class _Sampler:
    """What every rollout step needs from the tokenizer, computed once."""

    banned: torch.Tensor  # (V,) bool
    minutes: torch.Tensor  # (V,) float64 simulated minutes of each token
    death: int
    pad: int
    temperature: float
    top_k: int | None

    @classmethod
    def of(cls, model: GPT, tokenizer: ClinicalTokenizer, temperature: float, top_k: int | None) -> _Sampler:
        device = model.wte.weight.device
        death = tokenizer.code_id(schema.DEATH) if schema.DEATH in tokenizer.token_to_id_ else -1
        minutes = torch.from_numpy(tokenizer.time_minutes()).to(device).double()
        return cls(sampling_mask(tokenizer).to(device), minutes, death, tokenizer.pad_id, temperature, top_k)


def _budget(model: GPT, prompt: Sequence[int], max_new_tokens: int) -> int:
    """New tokens a future of ``prompt`` may hold: the budget, and never past the model's context."""
    block = model.config.block_size
    if len(prompt) >= block:
        raise ValueError(f"prompt of {len(prompt)} tokens does not fit the context of {block}")
    if not prompt:
        raise ValueError("an empty prompt has nothing to condition on (expected at least the BOS token)")
    return min(max_new_tokens, block - len(prompt))


_GROW = 16
"""Generated positions a rollout cache holds at first (doubled when full): most futures are short."""


def _futures_of(out: torch.Tensor, minutes: torch.Tensor, length: torch.Tensor, reason: torch.Tensor, rows) -> Futures:
    names = ("budget", "horizon", "death")
    toks = [out[r, : length[r]].tolist() for r in rows]
    return Futures(toks, [minutes[r, : length[r]].tolist() for r in rows], [names[int(reason[r])] for r in rows],
                   int(sum(length[r] + (reason[r] == 1) for r in rows)))  # fmt: skip


@torch.no_grad()
def _rollout_batch(
    model: GPT, sampler: _Sampler, prompts: Sequence[Sequence[int]], uniforms: Sequence[torch.Tensor],
    horizons: Sequence[float], budgets: Sequence[int],
) -> list[Futures]:  # fmt: skip
    """Roll out the futures of several points in one batch; ``uniforms[p]`` (n_p, >= budget_p) picks point p's.

    Prompts are left-padded to one length and prefilled once (logits of the last position only); each point's
    cache is then repeated for its samples. Every step feeds one token per running row; rows that stop stay
    in the batch (their draws ignored) until a quarter of it has stopped, then the batch is compacted.
    """
    device = model.wte.weight.device
    P, L = len(prompts), max(len(p) for p in prompts)
    steps = max(budgets)
    idx = torch.full((P, L), sampler.pad, dtype=torch.long, device=device)
    valid = torch.zeros(P, L, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        idx[i, L - len(p) :] = torch.tensor(list(p), device=device)
        valid[i, L - len(p) : L] = True
    prefill = model.new_kv_cache(P, L)
    logits = model.last_logits(idx, kv_cache=prefill, key_mask=valid)  # (P, V)
    owner = torch.repeat_interleave(torch.arange(P, device=device), torch.tensor([u.size(0) for u in uniforms], device=device))
    R = owner.numel()
    u_all = torch.zeros(R, steps, dtype=torch.float64)
    for i, (a, u) in enumerate(zip(torch.tensor([0] + [u.size(0) for u in uniforms]).cumsum(0).tolist(), uniforms)):
        u_all[a : a + u.size(0), : budgets[i]] = u[:, : budgets[i]]
    horizon = torch.tensor(list(horizons), dtype=torch.float64, device=device)[owner]
    budget = torch.tensor(list(budgets), device=device)[owner]
    out = torch.full((R, steps), sampler.pad, dtype=torch.long, device=device)
    out_min = torch.zeros(R, steps, dtype=torch.float64, device=device)
    length = torch.zeros(R, dtype=torch.long, device=device)
    reason = torch.zeros(R, dtype=torch.long, device=device)  # 0 budget, 1 horizon, 2 death
    elapsed = torch.zeros(R, dtype=torch.float64, device=device)

    rows = torch.arange(R, device=device)  # the batch's rows, as indices into the R futures
    room = min(steps, _GROW)  # generated positions the cache holds now; it grows (and compacts) when full
    cache, logits = SharedPrefixCache(prefill, valid, owner, room), logits[owner]
    alive = torch.ones(R, dtype=torch.bool, device=device)  # over the batch's rows
    for t in range(steps):
        nxt = _draw(logits, u_all[rows.cpu(), t], sampler.banned, sampler.temperature, sampler.top_k)  # (b,)
        live = rows[alive]
        tok = nxt[alive]
        el = elapsed[live] + sampler.minutes[tok]
        elapsed[live] = el
        over = el > horizon[live]  # this time gap crosses the horizon: nothing after it counts
        kept = live[~over]
        out[kept, t], out_min[kept, t], length[kept] = tok[~over], el[~over], t + 1
        dead = ~over & (tok == sampler.death)
        reason[live[over]], reason[live[dead]] = 1, 2
        go = ~over & ~dead & (t + 1 < budget[live])
        alive[alive.clone()] = go
        n_alive = int(alive.sum())
        if n_alive == 0:
            break
        full = t >= room
        if full or n_alive < 0.5 * alive.numel():  # one copy: drop stopped rows and/or make room
            keep = alive.nonzero().squeeze(1)
            if full:
                room = min(steps, 2 * room)
            rows, nxt = rows[keep], nxt[keep]
            cache = cache.select(keep, room, t)
            alive = torch.ones(rows.numel(), dtype=torch.bool, device=device)
        logits = model.last_logits(nxt.unsqueeze(1), kv_cache=cache, start_pos=L + t)
    bounds = torch.tensor([0] + [u.size(0) for u in uniforms]).cumsum(0).tolist()
    return [_futures_of(out, out_min, length, reason, range(a, b)) for a, b in zip(bounds, bounds[1:])]


@torch.no_grad()
def _rollout_reference(
    model: GPT, sampler: _Sampler, prompt: Sequence[int], uniforms: torch.Tensor, horizon: float, budget: int
) -> Futures:
    """The slow path the fast one must match: one point, no cache, the whole sequence recomputed per token."""
    device = model.wte.weight.device
    n = uniforms.size(0)
    seqs = torch.tensor(list(prompt), device=device).unsqueeze(0).repeat(n, 1)
    toks: list[list[int]] = [[] for _ in range(n)]
    mins: list[list[float]] = [[] for _ in range(n)]
    reasons = ["budget"] * n
    elapsed = [0.0] * n
    active = list(range(n))
    generated = 0
    for t in range(budget):
        logits = model(seqs[active])[0][:, -1]
        nxt = _draw(logits, uniforms[active, t], sampler.banned, sampler.temperature, sampler.top_k).tolist()
        generated += len(nxt)
        keep = []
        for row, tok in zip(active, nxt):
            elapsed[row] += float(sampler.minutes[tok])
            if elapsed[row] > horizon:
                reasons[row] = "horizon"
                continue
            toks[row].append(tok)
            mins[row].append(elapsed[row])
            if tok == sampler.death:
                reasons[row] = "death"
            elif t + 1 < budget:
                keep.append(row)
        if not keep:
            break
        col = torch.full((n, 1), sampler.pad, dtype=seqs.dtype, device=device)
        col[keep, 0] = torch.tensor([toks[r][-1] for r in keep], device=device)
        seqs = torch.cat([seqs, col], dim=1)
        active = keep
    return Futures(toks, mins, reasons, generated)


def sample_points(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    prompts: Sequence[Sequence[int]],
    n_samples: int,
    max_new_tokens: int,
    horizons: Sequence[float],
    seeds: Sequence[int],
    temperature: float = 1.0,
    top_k: int | None = None,
    outcomes: Sequence[str] = (),
    ci_width: float | None = None,
    round_size: int = 16,
    max_rows: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> list[Futures]:
    """Futures of many prediction points, batched across points (at most ``max_rows`` futures per batch).

    With ``ci_width`` the samples are drawn in rounds of ``round_size`` and a point stops once every one of
    its ``outcomes`` has a 95% interval no wider than ``ci_width`` (at most ``n_samples`` in all). Point p's
    sample j is the same whatever the batching or rounds: it depends on ``seeds[p]`` and j only.
    """
    if not (len(prompts) == len(horizons) == len(seeds)):
        raise ValueError(f"{len(prompts)} prompts, {len(horizons)} horizons and {len(seeds)} seeds: expected one each per point")
    sampler = _Sampler.of(model, tokenizer, temperature, top_k)
    budgets = [_budget(model, p, max_new_tokens) for p in prompts]
    uniforms = [rollout_uniforms(s, n_samples, max_new_tokens) for s in seeds]
    patterns = [outcome_pattern(o) for o in outcomes]
    hits = [np.array([fnmatch.fnmatchcase(c, pat) for c in tokenizer.vocab_]) for pat in patterns]
    step = n_samples if ci_width is None else max(1, round_size)
    drawn = [Futures([], [], [], 0) for _ in prompts]
    todo = list(range(len(prompts)))
    while todo:
        work = [(p, len(drawn[p].tokens), min(n_samples, len(drawn[p].tokens) + step)) for p in todo]
        batch: list[tuple[int, int, int]] = []
        for i, item in enumerate(work):
            batch.append(item)
            rows = sum(b - a for _, a, b in batch)
            nxt_rows = work[i + 1][2] - work[i + 1][1] if i + 1 < len(work) else 0
            if i + 1 == len(work) or rows + nxt_rows > max_rows:
                got = _rollout_batch(model, sampler, [prompts[p] for p, _, _ in batch], [uniforms[p][a:b] for p, a, b in batch],
                                     [horizons[p] for p, _, _ in batch], [budgets[p] for p, _, _ in batch])  # fmt: skip
                for (p, _, _), f in zip(batch, got):
                    d = drawn[p]
                    d.tokens += f.tokens
                    d.minutes += f.minutes
                    d.stop_reasons += f.stop_reasons
                    d.new_tokens += f.new_tokens
                batch = []
        todo = [p for p in todo if len(drawn[p].tokens) < n_samples and not _narrow(drawn[p], hits, ci_width)]
        if progress:
            progress(len(prompts) - len(todo), len(prompts))
    return drawn


def _narrow(futures: Futures, hits: list[np.ndarray], ci_width: float | None) -> bool:
    """Whether every outcome's 95% interval is already no wider than ``ci_width``."""
    if ci_width is None:
        return False
    n = len(futures.tokens)
    for hit in hits:
        k = sum(bool(hit[toks].any()) if toks else False for toks in futures.tokens)
        lo, hi = wilson_interval(k, n)
        if hi - lo > ci_width:
            return False
    return True


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
    """Sample ``n_samples`` continuations of ``prompt`` in one batch (at most until the context is full).

    With ``use_cache`` the prompt is encoded once, its cache shared by all samples, and each new token costs
    one position per sample. ``use_cache=False`` recomputes the whole sequence for every token (the slow
    reference path; it samples the same futures for the same seed).
    """
    if not use_cache:
        sampler = _Sampler.of(model, tokenizer, temperature, top_k)
        budget = _budget(model, prompt, max_new_tokens)
        return _rollout_reference(model, sampler, prompt, rollout_uniforms(seed, n_samples, max_new_tokens), horizon_minutes, budget)
    return sample_points(model, tokenizer, [prompt], n_samples, max_new_tokens, [horizon_minutes], [seed],
                         temperature, top_k, max_rows=max(n_samples, 1))[0]  # fmt: skip


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


@dataclass
class _Point:
    subject_id: int
    prediction_time: dt.datetime
    history: list[int]
    horizon_minutes: float  # from the last known event: the gap to the prediction time plus the horizon
    seed: int


def _point(model: GPT, tokenizer: ClinicalTokenizer, subject_table, prediction_time: dt.datetime, horizon_days: float,
           max_new_tokens: int, seed: int) -> _Point:  # fmt: skip
    block = model.config.block_size
    history = tokenizer.transform(subject_table, until=prediction_time, max_len=max(block // 2, block - max_new_tokens))
    enc = tokenizer.encode(subject_table, until=prediction_time)
    # Futures start at the last known event; nothing happened between it and the prediction time.
    gap = (prediction_time - enc.times[-1]).total_seconds() / 60.0 if enc.times else 0.0
    sid = enc.subject_id
    patient_seed = int(np.random.SeedSequence([seed, sid & 0xFFFFFFFF, sid >> 32 & 0xFFFFFFFF]).generate_state(1)[0])
    return _Point(sid, prediction_time, list(history), gap + horizon_days * 1440.0, patient_seed)


def forecast_points(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    points: Sequence[tuple[object, dt.datetime]],
    outcomes: Sequence[str] = ("death", "admission"),
    horizon_days: float = 365.0,
    n_samples: int = 32,
    max_new_tokens: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    descriptions: dict[str, str] | None = None,
    ci_width: float | None = None,
    max_rows: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> list[Forecast]:
    """Forecasts of (subject table, prediction time) points, their rollouts batched across points.

    ``ci_width``: stop sampling a point once every outcome's 95% interval is at most this wide (rounds of
    16 samples, at most ``n_samples``); None draws all ``n_samples``."""
    pts = [_point(model, tokenizer, table, when, horizon_days, max_new_tokens, seed) for table, when in points]
    futures = sample_points(
        model, tokenizer, [p.history for p in pts], n_samples, max_new_tokens, [p.horizon_minutes for p in pts],
        [p.seed for p in pts], temperature, top_k, outcomes, ci_width, max_rows=max_rows, progress=progress,
    )  # fmt: skip
    out = []
    for p, f in zip(pts, futures):
        estimates, diagnoses = summarize_futures(f, tokenizer, outcomes, p.history, descriptions)
        n = len(f.tokens)
        out.append(Forecast(
            subject_id=p.subject_id, prediction_time=p.prediction_time, horizon_days=horizon_days, samples=n,
            outcomes=estimates, next_diagnoses=diagnoses, stop_reasons=dict(Counter(f.stop_reasons)),
            history_tokens=len(p.history), mean_new_tokens=sum(map(len, f.tokens)) / max(n, 1),
        ))  # fmt: skip
    return out


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
    ci_width: float | None = None,
) -> Forecast:
    """Forecast one subject from the events at or before ``prediction_time``."""
    [f] = forecast_points(model, tokenizer, [(subject_table, prediction_time)], outcomes, horizon_days, n_samples,
                          max_new_tokens, seed, temperature, top_k, descriptions, ci_width)  # fmt: skip
    return f


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
    ci_width: float | None = None,
) -> list[Forecast]:
    """Forecasts for (subject_id, prediction_time) points with a trained run folder (batched across points)."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir, device=device)
    db = SubjectDatabase(dataset_dir)
    return forecast_points(
        model, tokenizer, [(db.table(sid), when) for sid, when in points], outcomes, horizon_days, n_samples,
        max_new_tokens, seed, temperature, top_k, db.descriptions(), ci_width, progress=progress,
    )  # fmt: skip


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
