"""Rollouts (reproducible, batched, with outcome probabilities) and embeddings."""

from __future__ import annotations

import datetime as dt

import numpy as np

from clinfm.data.store import SubjectDatabase
from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.embed import embed, embed_tokens
from clinfm.model.generate import forecast, sample_futures, wilson_interval


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
    for a, b in zip(fast.tokens, slow.tokens):  # identical while the 64-token context is not full
        assert a[:20] == b[:20]
    assert max(len(t) for t in fast.tokens) > 64 - len(prompt)  # and the cache restarts when it is


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
