"""A synthetic hospital over three years (2019-2021) for monitoring tests, and drift injected into it.

Each subject has one to three inpatient stays. ``SNOMED//RISK`` (recorded at admission) and a high creatinine
(``LOINC//2160-0``, recorded at admission) make a stay longer than seven days likely, so the repository's
``long_length_of_stay`` task (predicted 24 h into the stay) has signal. Every stay also records
``SNOMED//ROUTINE`` and a few background codes. Drift is injected with :func:`clinfm.monitor.inject.inject_drift`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from clinfm import schema
from tests.tasks.synthetic import write_dataset

T0 = dt.datetime(2019, 1, 1)
SPAN_DAYS = 3 * 365
CREATININE, RISK, ROUTINE = "LOINC//2160-0", "SNOMED//RISK", "SNOMED//ROUTINE"
BACKGROUND = [f"SNOMED//B{i:02d}" for i in range(25)]


def clinic(path: Path, n: int = 1200, seed: int = 0, shards: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for sid in range(1, n + 1):
        rows += [(sid, None, "GENDER//F" if sid % 2 else "GENDER//M"),
                 (sid, T0 - dt.timedelta(days=365 * int(25 + sid % 60)), schema.BIRTH)]  # fmt: skip
        for start in np.sort(rng.choice(SPAN_DAYS - 20, size=int(rng.integers(1, 4)), replace=False)):
            admit = T0 + dt.timedelta(days=int(start), hours=int(rng.integers(0, 24)))
            risky = rng.random() < 0.35
            creat = rng.normal(1.0, 0.25) + (0.5 if rng.random() < 0.5 else 0.0)
            p_long = 0.08 + 0.55 * risky + 0.3 * (creat > 1.3)
            days = int(rng.integers(8, 14)) if rng.random() < p_long else int(rng.integers(2, 7))
            rows += [(sid, admit, "VISIT//IP//START"), (sid, admit + dt.timedelta(days=days), "VISIT//IP//END"),
                     (sid, admit + dt.timedelta(hours=2), CREATININE, round(float(creat), 2)),
                     (sid, admit + dt.timedelta(hours=3), ROUTINE)]  # fmt: skip
            if risky:
                rows.append((sid, admit + dt.timedelta(hours=1), RISK))
            for code in rng.choice(BACKGROUND, size=3, replace=False):
                rows.append((sid, admit + dt.timedelta(hours=int(rng.integers(4, 20))), str(code)))
    ids = range(1, n + 1)
    splits = {s: "held_out" if s % 5 == 0 else "tuning" if s % 5 == 1 else "train" for s in ids}
    return write_dataset(path, rows, splits, name="clinic", shards=shards)
