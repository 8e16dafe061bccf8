"""The MOTOR-style time-to-event head: targets and loss on hand-computed examples, and joint training."""

from __future__ import annotations

import math

import torch

from clinfm.model.checkpoint import load_checkpoint
from clinfm.model.train import pretrain
from clinfm.model.transformer import piecewise_exponential_nll, time_to_event_targets

from .test_train import _cfg


def test_piecewise_exponential_loss_by_hand():
    log_h = torch.tensor([[0.5, 0.2], [0.1, 0.2], [0.01, 0.2]]).log()  # (bins=3, K=2): per-day hazards
    t = torch.tensor([3.0, 10.0])  # task 0: event at 3 days; task 1: censored at 10 days
    event = torch.tensor([True, False])
    nll = piecewise_exponential_nll(log_h, t, event, (1.0, 7.0))
    # task 0: at risk 1 day in [0,1) and 2 in [1,7); event in [1,7): 0.5*1 + 0.1*2 - log 0.1
    # task 1: at risk 1, 6 and 3 days: 0.2 * 10, no event term
    torch.testing.assert_close(nll, torch.tensor([0.7 - math.log(0.1), 2.0]))
    same_time = piecewise_exponential_nll(log_h, torch.tensor([0.0, 0.0]), torch.tensor([True, True]), (1.0, 7.0))
    torch.testing.assert_close(same_time, torch.tensor([0.5 / 1440 - math.log(0.5), 0.2 / 1440 - math.log(0.2)]))


def test_time_to_event_targets_by_hand():
    # ids: 0 PAD, 1 BOS, 2 code A, 3 code B, 4 a 1-day gap, 5 a 10-day gap
    minutes = torch.tensor([0.0, 0.0, 0.0, 0.0, 1440.0, 14400.0], dtype=torch.float64)
    idx = torch.tensor([[1, 2, 4, 3, 5, 2, 1, 3, 4, 0]])  # two records packed in one row, then padding
    t, event = time_to_event_targets(idx, minutes, torch.tensor([2, 3]), bos_id=1)
    # record 1 spans days 0..11: A at day 0 and day 11, B at day 1; record 2: B at 0, ends at day 1
    expect_a = [(0, True), (11, True), (10, True), (10, True), (0, True), (0, False), (1, False), (1, False), (0, False), (0, False)]
    expect_b = [(1, True), (1, True), (0, True), (10, False), (0, False), (0, False), (0, True), (1, False), (0, False), (0, False)]
    for k, expect in enumerate((expect_a, expect_b)):
        assert t[0, :, k].tolist() == [float(d) for d, _ in expect], k
        assert event[0, :, k].tolist() == [e for _, e in expect], k


def test_joint_training_with_the_time_to_event_head(tiny_meds, tmp_path):
    cfg = _cfg(max_steps=4, eval_interval=100)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"tte_tasks": 3})})
    result = pretrain(tiny_meds, cfg, tmp_path / "tte")
    model, tok, _ = load_checkpoint(result.run_dir)
    assert model.config.tte_tasks == 3 and len(set(model.config.tte_codes)) == 3
    assert all(tok.token_kinds()[c] == 4 for c in model.config.tte_codes)
    assert model.tte_minutes.max() > 0  # the gap table travels with the weights
    plain = pretrain(tiny_meds, _cfg(max_steps=4, eval_interval=100), tmp_path / "plain")
    assert result.losses[0] > plain.losses[0]  # the joint loss adds the time-to-event term
    x = torch.tensor([[tok.bos_id, *model.config.tte_codes]])
    model.train()
    _, joint = model(x, x.clone())
    model.eval()
    _, next_token = model(x, x.clone())
    assert joint > next_token  # evaluation (perplexity) scores next-token loss alone
