"""Monitoring noise and detection (issue 22): a clean replay of the de-identified demo data 2012-2019 in 30-day
windows (target: at most 8 incidents in 8 years), against the pre-issue-22 design measured in the same run (the
whole history before the cutoff as reference, every code, every subject, a mean-noise margin); and drift drills,
which must be caught within 2 windows of their start: on the demo data the model's top key input renamed, on
the synthetic clinic of the tests creatinine x1.6 and a renamed code.

    python benchmarks/monitor_incidents.py [--dataset DEID_MEDS_DIR] [--drift-at 2016-01-01]

Without --dataset the embedded Eunomia data is ingested and de-identified into a temporary folder first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
from _common import write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic clinic lives in tests/monitor

from clinfm.monitor import drift as D
from clinfm.monitor.inject import inject_drift
from clinfm.monitor.policy import MonitoringPolicy, load_policy
from clinfm.monitor.replay import replay
from clinfm.monitor.report import MonitoringSummary, monitor_report
from clinfm.tasks.labelers import load_events


def demo_dataset(tmp: Path) -> Path:
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import omop
    from clinfm.deid.structured import create_secret, deidentify_dataset, read_secret

    raw, deid, secret = tmp / "eunomia-meds", tmp / "eunomia-deid", tmp / "deid.secret"
    build_dataset(omop.plan(), raw)
    create_secret(secret)
    deidentify_dataset(raw, deid, read_secret(secret), policy="shift")
    return deid


def legacy_code_alerts(dataset: Path, start: dt.datetime, end: dt.datetime, window: dt.timedelta) -> int:
    """Code-PSI alerts of the design before issue 22: every subject's whole history before ``start`` as the
    reference (top 20 codes + other over all codes), every subject's events per window, 0.2 + mean noise."""
    events = load_events(dataset)
    timed = events.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
    ref = D.build_reference(timed.filter(pl.col("time") < start), set(), [0.5])
    alerts, t = 0, start
    while t < end:
        w = timed.filter((pl.col("time") > t) & (pl.col("time") <= t + window))
        c = D.window_counts(w, ref, set())
        if c["n_events"] >= 200 and D.code_psi(ref, c) > 0.2 + D.chance_psi(21, c["n_events"]):
            alerts += 1
        t += window
    return alerts


def latency(s: MonitoringSummary, at: dt.datetime, kinds: set[str]) -> dict[str, int | None]:
    """Windows from the one holding ``at`` to the first incident of each kind (None: not detected)."""
    first = next(w.index for w in s.windows if w.end > at)
    out: dict[str, int | None] = {k: None for k in kinds}
    for inc in s.incidents:
        key = inc.title
        if inc.kind in kinds or key in kinds:
            k = key if key in kinds else inc.kind
            if inc.windows and inc.windows[0] >= first - 1 and out.get(k) is None:
                out[k] = inc.windows[0] - first
    return out


def _summary(s: MonitoringSummary) -> dict:
    return {"windows": len(s.windows), "alerts": len(s.alerts), "incidents": len(s.incidents),
            "incident_kinds": dict(Counter(i.title for i in s.incidents)), **s.budget.as_dict()}  # fmt: skip


def main(dataset: Path | None, drift_at: dt.datetime, task: str = "new_stroke") -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    dataset = dataset or demo_dataset(tmp)
    start, end, every = dt.datetime(2012, 1, 1), dt.datetime(2019, 12, 31), "30d"
    policy = load_policy()
    out: dict = {
        "dataset": str(dataset),
        "task": task,
        "window": f"{policy.window.days} days",
        "drift_at": drift_at.isoformat(),
    }

    legacy = legacy_code_alerts(dataset, start, end, policy.window)
    clean = replay(dataset, None, task, start, end, every, tmp / "clean.db", policy=policy)
    s = monitor_report(clean.model_version, tmp / "clean.db", policy)
    out["clean"] = _summary(s) | {"legacy_code_alerts": legacy}
    out["clean"]["ratio_legacy_alerts_to_incidents"] = round(legacy / max(len(s.incidents), 1), 1)

    # a task the design was not developed on, same data and policy
    other = replay(dataset, None, "new_coronary_disease", start, end, every, tmp / "other.db", policy=policy)
    out["clean_new_coronary_disease"] = _summary(
        monitor_report(other.model_version, tmp / "other.db", policy)
    )

    # the drill renames the model's most important code (its first key input), else its most frequent one
    key_inputs = list(s.reference.get("missing") or {})
    key = key_inputs[0] if key_inputs else next(c for c in s.reference["codes"] if c != D.OTHER)
    drill = inject_drift(dataset, tmp / "drill", drift_at, rename={key: f"{key}-V2"})
    drifted = replay(drill, None, task, start, end, every, tmp / "drill.db", policy=policy)
    d = monitor_report(drifted.model_version, tmp / "drill.db", policy)
    out["demo_drill"] = {"renamed": key, **_summary(d),
                         "latency_windows": latency(d, drift_at, {"input_drift.unknown_codes", "input_drift.codes"})}  # fmt: skip

    from clinfm.monitor.scorer import train_scorer
    from clinfm.tasks.config import load_task
    from tests.monitor.synthetic import CREATININE, ROUTINE, clinic

    clinic_dir = clinic(tmp / "clinic")
    at = dt.datetime(2020, 7, 1)
    drifted_clinic = inject_drift(clinic_dir, tmp / "clinic-drift", at, lab_scale=1.6, lab_code=CREATININE,
                                  rename={ROUTINE: "SNOMED//ROUTINE_V2"})  # fmt: skip
    los = load_task("long_length_of_stay")
    scorer = train_scorer(clinic_dir, los, before=dt.datetime(2020, 1, 1))
    monthly = MonitoringPolicy(window=dt.timedelta(days=30))
    for name, ds in (("clinic_clean", clinic_dir), ("clinic_drift", drifted_clinic)):
        scorer.name = name
        replay(
            ds,
            scorer,
            los,
            dt.datetime(2020, 1, 1),
            dt.datetime(2021, 1, 1),
            "7d",
            tmp / "clinic.db",
            policy=monthly,
        )
        r = monitor_report(name, tmp / "clinic.db", monthly)
        out[name] = _summary(r)
        if name == "clinic_drift":
            out[name]["latency_windows"] = latency(
                r, at, {f"input_drift.lab {CREATININE}", "input_drift.unknown_codes", "input_drift.codes"}
            )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dataset", type=Path, default=None, help="de-identified MEDS dataset (default: build Eunomia)"
    )
    ap.add_argument("--drift-at", default="2016-01-01", help="start of the demo drift drill")
    args = ap.parse_args()
    result = main(args.dataset, dt.datetime.fromisoformat(args.drift_at))
    path = write_result("monitor_incidents", result)
    c, dd, cd = result["clean"], result["demo_drill"], result["clinic_drift"]
    print(
        f"clean demo replay, {c['windows']} windows of {result['window']}: {c['incidents']} incident(s) from "
        f"{c['alerts']} alert(s) (target <= 8); pre-#22 design in the same run: {c['legacy_code_alerts']} code "
        f"alerts ({c['ratio_legacy_alerts_to_incidents']}x the incidents)"
    )
    o = result["clean_new_coronary_disease"]
    print(
        f"clean demo replay of new_coronary_disease (not used to develop the design): {o['incidents']} incident(s)"
    )
    print(
        f"demo drill ({dd['renamed']} renamed from {result['drift_at'][:10]}): latency in windows {dd['latency_windows']}"
    )
    print(
        f"synthetic clinic, creatinine x1.6 + renamed code: latency in windows {cd['latency_windows']}; "
        f"clean clinic: {result['clinic_clean']['incidents']} incident(s)"
    )
    print(f"wrote {path}")
