"""Rollouts (reproducible, batched, with outcome probabilities) and embeddings."""

from __future__ import annotations

import datetime as dt

import numpy as np

from clinfm.data.store import SubjectDatabase
from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.embed import embed, embed_tokens
from clinfm.model.generate import forecast, sample_futures, sample_points, wilson_interval


def test_wilson_interval():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9


def test_rollouts_are_reproducible_and_respect_the_horizon(tiny_run, tiny_meds):
    points = [(14, dt.datetime(2011, 6, 1)), (4, dt.datetime(2011, 1, 1))]
    kw = {"outcomes": ["death", "admission", "ICD10CM//I50*"], "horizon_days": 400, "n_samples": 8, "max_new_tokens": 40}
    a = forecast(tiny_run, tiny_meds, points, seed=3, **kw)
    b = forecast(tiny_run, tiny_meds, points, seed=3, **kw)
    assert a == b
    f = a[0]
    assert f.subject_id == 14 and f.samples == 8 and sum(f.stop_reasons.values()) == 8
    for o in f.outcomes:
        assert 0 <= o.ci_low <= o.probability <= o.ci_high <= 1 and o.samples == 8
    assert all(0 < d.probability <= 1 for d in f.next_diagnoses)


def test_kv_cache_and_recompute_sample_the_same_futures(tiny_run, tiny_meds):
    model, tok, _ = load_checkpoint(tiny_run)
    prompt = tok.transform(SubjectDatabase(tiny_meds).table(3), until=dt.datetime(2011, 1, 10), max_len=40)
    fast = sample_futures(model, tok, prompt, 8, 60, seed=1, use_cache=True)
    slow = sample_futures(model, tok, prompt, 8, 60, seed=1, use_cache=False)
    assert fast == slow  # tokens, simulated minutes, stop reasons and token counts, all of them
    assert max(len(t) for t in fast.tokens) == 64 - len(prompt)  # a future stops when the context is full
    assert sample_futures(model, tok, prompt, 8, 60, seed=2) != fast


def test_batched_points_sample_what_each_point_samples_alone(tiny_run, tiny_meds):
    model, tok, _ = load_checkpoint(tiny_run)
    db = SubjectDatabase(tiny_meds)
    prompts = [tok.transform(db.table(sid), until=dt.datetime(2014, 6, 1), max_len=n) for sid, n in ((3, 40), (8, 12), (20, 25))]
    assert len({len(p) for p in prompts}) == 3  # left padding is exercised
    horizons, seeds = [400 * 1440.0, 90 * 1440.0, float("inf")], [5, 6, 7]
    batched = sample_points(model, tok, prompts, 6, 30, horizons, seeds, max_rows=64)
    for p, h, s, f in zip(prompts, horizons, seeds, batched):
        assert f == sample_futures(model, tok, p, 6, 30, h, s, use_cache=False)
    assert {r for f in batched for r in f.stop_reasons} >= {"horizon", "budget"}
    # several batches (at most 7 futures each) and rounds change nothing
    assert sample_points(model, tok, prompts, 6, 30, horizons, seeds, max_rows=7) == batched


def test_sampling_stops_once_the_interval_is_narrow(tiny_run, tiny_meds):
    model, tok, _ = load_checkpoint(tiny_run)
    prompt = tok.transform(SubjectDatabase(tiny_meds).table(3), until=dt.datetime(2011, 1, 10), max_len=20)
    full = sample_points(model, tok, [prompt], 64, 20, [30 * 1440.0], [4], outcomes=["death"])[0]
    early = sample_points(model, tok, [prompt], 64, 20, [30 * 1440.0], [4], outcomes=["death"], ci_width=0.35, round_size=8)[0]
    n = len(early.tokens)
    assert n < 64 and n % 8 == 0
    assert early.tokens == full.tokens[:n]  # the first n samples, unchanged
    k = sum(tok.code_id("MEDS_DEATH") in t for t in early.tokens) if "MEDS_DEATH" in tok.token_to_id_ else 0
    lo, hi = wilson_interval(k, n)
    assert hi - lo <= 0.35
    lo8, hi8 = wilson_interval(sum(tok.vocab_[x] == "MEDS_DEATH" for t in full.tokens[: n - 8] for x in t), n - 8)
    assert hi8 - lo8 > 0.35 or n == 8


def test_embeddings_batching_and_cut(tiny_run, tiny_meds):
    points = [(1, dt.datetime(2011, 1, 1)), (2, dt.datetime(2013, 1, 1)), (3, dt.datetime(2010, 2, 1))]
    df = embed(tiny_run, tiny_meds, points, batch_size=2)
    assert df.columns == ["subject_id", "prediction_time", "n_tokens", "last", "mean"]
    assert df["subject_id"].to_list() == [1, 2, 3] and df.height == 3
    model, tok, _ = load_checkpoint(tiny_run)
    db = SubjectDatabase(tiny_meds)
    one = tok.transform(db.table(2), until=points[1][1], max_len=64)
    last, mean = embed_tokens(model, [one], tok.pad_id)
    np.testing.assert_allclose(df["last"][1].to_numpy(), last[0], atol=1e-5)
    np.testing.assert_allclose(df["mean"][1].to_numpy(), mean[0], atol=1e-5)
    # no event after the prediction time reaches the features
    later = tok.transform(db.table(2), until=points[1][1] + dt.timedelta(days=800), max_len=64)
    assert len(later) > len(one)
