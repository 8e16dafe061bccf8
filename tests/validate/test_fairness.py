"""Subgroups: CIs only where a group is large enough, gaps, and the four-fifths flag."""

from __future__ import annotations

import numpy as np
import polars as pl

from clinfm.validate.fairness import fairness_summary, operating_threshold, subgroup_table


def test_small_group_flagged_and_four_fifths_rule():
    rng = np.random.default_rng(0)
    n = 400
    sex = np.where(np.arange(n) < 380, "F", "M")  # M: 20 people, too few for a CI
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.5 * rng.random(n) + np.where(sex == "F", 0.2, 0.0), 0, 1)
    attrs = pl.DataFrame(
        {
            "sex": sex,
            "age_band": ["45-64"] * n,
            "race": np.where(np.arange(n) % 2, "A", "B"),
            "ethnicity": ["x"] * n,
        }
    )
    thr = operating_threshold(None, p, float(y.mean()))
    rows, summary = subgroup_table("m", y, p, attrs, thr, n_resamples=200)
    by = {(r.attribute, r.group): r for r in rows}
    assert by[("sex", "M")].too_small and by[("sex", "M")].auroc is None
    assert not by[("sex", "F")].too_small and by[("sex", "F")].auroc.ci is not None
    assert summary["sex"]["four_fifths_flag"]  # M is rarely selected: shifted scores
    assert not summary["race"]["four_fifths_flag"] and summary["race"]["auroc_gap"] is not None
    assert "too small" in by[("sex", "M")].as_dict()["status"]
    fs = fairness_summary({"m": summary})
    assert fs["four_fifths_flag"] and fs["worst_gap"]["attribute"] == "race"
