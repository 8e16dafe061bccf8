"""Monitoring fixtures: the synthetic clinic (clean and with drift from 1 July 2020), a count model trained on
2019, and both replays of 2020 in one prediction store, built once per session."""

from __future__ import annotations

import datetime as dt

import pytest

from clinfm.monitor.inject import inject_drift
from tests.monitor.synthetic import CREATININE, RISK, ROUTINE, clinic

START, END, DRIFT_AT = dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1), dt.datetime(2020, 7, 1)
RENAMED = "SNOMED//ROUTINE_V2"


@pytest.fixture(scope="session")
def clinic_dir(tmp_path_factory):
    return clinic(tmp_path_factory.mktemp("clinic") / "meds")


@pytest.fixture(scope="session")
def drifted_dir(clinic_dir, tmp_path_factory):
    """A lab changes assay (creatinine x1.6) and the routine code is renamed from 1 July 2020."""
    return inject_drift(clinic_dir, tmp_path_factory.mktemp("drift") / "meds", DRIFT_AT, lab_scale=1.6, lab_code=CREATININE,
                        rename={ROUTINE: RENAMED})  # fmt: skip


@pytest.fixture(scope="session")
def recoded_dir(clinic_dir, tmp_path_factory):
    """The risk code is renamed from 1 July 2020: a model trained before it loses its strongest feature."""
    return inject_drift(
        clinic_dir, tmp_path_factory.mktemp("recoded") / "meds", DRIFT_AT, rename={RISK: "SNOMED//RISK_V2"}
    )


@pytest.fixture(scope="session")
def task():
    from clinfm.tasks.config import load_task

    return load_task("long_length_of_stay")


@pytest.fixture(scope="session")
def scorer(clinic_dir, task):
    from clinfm.monitor.scorer import train_scorer

    return train_scorer(clinic_dir, task, before=START)


@pytest.fixture(scope="session")
def policy():
    from clinfm.monitor.policy import MonitoringPolicy

    return MonitoringPolicy(window=dt.timedelta(days=91))


@pytest.fixture(scope="session")
def replays(tmp_path_factory, clinic_dir, drifted_dir, scorer, task, policy):
    """{"clean": ReplaySummary, "drift": ReplaySummary, "store": PredictionStore}."""
    from clinfm.monitor.replay import replay
    from clinfm.monitor.store import PredictionStore

    store = PredictionStore(tmp_path_factory.mktemp("store") / "monitoring.db")
    out = {"store": store}
    for name, ds in (("clean", clinic_dir), ("drift", drifted_dir)):
        scorer.name = name
        out[name] = replay(ds, scorer, task, START, END, "7d", store, policy=policy)
    return out


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('govern') / 'registry.db'}"


__all__ = ["CREATININE", "DRIFT_AT", "END", "RENAMED", "START"]
