"""Metrics against hand-computed values and scikit-learn; the vectorized bootstrap against a per-resample loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from clinfm.validate import metrics as M

Y = np.array([0, 0, 1, 1, 0, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])


def test_hand_computed_values():
    # positives 0.35, 0.8, 0.4 vs negatives 0.1, 0.4, 0.4: wins 1+3+1 = 5, ties 0+0+2 -> (5 + 1) / 9
    assert M.auroc(Y, P) == pytest.approx(6 / 9)
    # descending thresholds 0.8 (tp1 fp0), 0.4 (tp2 fp2), 0.35 (tp3 fp2): 1/3*1 + 1/3*1/2 + 1/3*3/5
    assert M.auprc(Y, P) == pytest.approx(1 / 3 + 1 / 6 + 1 / 5)
    assert M.brier(Y, P) == pytest.approx(np.mean((P - Y) ** 2))
    # bins: [0.1]->b1 gap -0.1; [0.35, 0.4, 0.4, 0.4]->b3 and b4: 0.35 in b3 (gap .65); 0.4s in b4 (gap 1-1.2=-.2)
    assert M.ece(Y, P) == pytest.approx((0.1 + 0.65 + 0.2 + 0.2) / 6)
    assert M.calibration_intercept(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.0, abs=1e-9)


def test_against_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(np.clip(0.3 * y + 0.6 * rng.random(400), 0.01, 0.99), 2)
    assert M.auroc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert M.auprc(y, p) == pytest.approx(average_precision_score(y, p))
    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    z = np.log(p / (1 - p))
    lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(z[:, None], y)
    assert M.calibration_slope(y, p) == pytest.approx(lr.coef_[0, 0], rel=1e-4)


def test_vectorized_bootstrap_equals_the_loop():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)
    idx = M.bootstrap_indices(300, 100, seed=1)
    w = M.indices_to_weights(idx, 300)
    fast = M.auroc_w(y.astype(float), p, w)
    slow = np.array([roc_auc_score(y[i], p[i]) for i in idx])
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    fast_ap = M.auprc_w(y.astype(float), p, w)
    np.testing.assert_allclose(fast_ap, [average_precision_score(y[i], p[i]) for i in idx], atol=1e-12)
    est = M.estimate(y, p, M.auroc_w, n_resamples=500)
    assert est.ci[0] < est.value < est.ci[1] and est.resamples == 500


def test_paired_difference_and_cluster_bootstrap():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    good, noise = 0.5 * y + rng.random(500), rng.random(500)
    c = M.paired_difference(y, good, noise, "auroc", ("good", "noise"), n_resamples=300)
    assert c.difference > 0.2 and c.ci[0] > 0 and c.p_value < 0.01
    same = M.paired_difference(y, good, good, "auroc", n_resamples=100)
    assert same.difference == 0 and same.ci == (0.0, 0.0)
    # 10 copies of 50 subjects: resampling rows would pretend to 500 independent labels
    groups = np.repeat(np.arange(50), 10)
    yy, pp = np.repeat(y[:50], 10), np.repeat(good[:50], 10)
    wide = M.estimate(yy, pp, M.auroc_w, 400, groups=groups).ci
    narrow = M.estimate(yy, pp, M.auroc_w, 400).ci
    assert (wide[1] - wide[0]) > 2 * (narrow[1] - narrow[0])


def test_net_benefit_by_hand():
    nb = M.net_benefit(Y, P, np.array([0.2, 0.5]))
    # t=0.2: treat 5 (all but 0.1): tp 3, fp 2 -> 3/6 - 2/6 * 0.25
    assert nb["model"][0] == pytest.approx(3 / 6 - 2 / 6 * 0.25)
    assert nb["model"][1] == pytest.approx(1 / 6)  # only 0.8 treated, a true positive
    assert nb["treat_all"][1] == pytest.approx(0.5 - 0.5) and (nb["treat_none"] == 0).all()


def test_one_class_gives_no_auroc():
    assert np.isnan(M.auroc([1, 1, 1], [0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="only 0/1"):
        M.auroc([0, 2], [0.1, 0.2])
