"""Patient-record reasoning on a tiny MEDS dataset with a planted rule: death always follows ICD10CM//R57.0
a day later. The fm-tiny model is trained once for the module (a few seconds)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from clinfm import schema
from clinfm.defaults import packaged
from clinfm.model.config import load_config
from clinfm.reasoning.evidence import RecordReasoning, explain_forecast, group_key, load_model

torch.set_num_threads(1)  # a shared 2-core machine

TINY_CONFIG = packaged("models/fm-tiny.yaml")
TRIGGER, DISTRACTOR = "ICD10CM//R57.0", "ICD10CM//J45.9"  # cardiogenic shock (always fatal here), asthma (never)
SHORT, UNKNOWN = 51, 52  # a two-event record; a record of codes no train subject has
FAST = {"n_samples": 8, "max_new_tokens": 16}  # rollouts kept small: the tests are about the evidence


def _visits(sid: int, start: dt.datetime, n: int) -> list[tuple]:
    """Yearly encounters. Records vary (a third have no visit markers, a quarter of the other events are
    missing at random) so that a record with one group removed still looks like records the model learned from."""
    rng, ev = random.Random(sid), []
    for year in range(n):
        t = start + dt.timedelta(days=365 * year)
        kind = "IP" if sid % 5 == 0 else "OP"
        ev += [
            (t, f"VISIT//{kind}//START", None),
            (t, "LOINC//2160-0", 0.6 + (sid % 7) * 0.2),
            (t + dt.timedelta(hours=2), "ICD10CM//I10" if sid % 4 else "ICD10CM//E11.9", None),
            (t + dt.timedelta(hours=2), "RxNorm//860975", None),
            (t + dt.timedelta(days=1), f"VISIT//{kind}//END", None),
        ]
    return [e for e in ev if (sid % 3 if e[1].startswith("VISIT//") else rng.random() > 0.25)]


def trigger_time(sid: int) -> dt.datetime:
    return dt.datetime(2012, 1, 1) + dt.timedelta(days=sid * 5 + 2 * 365 + 30)


def n_visits(sid: int) -> int:
    return 2 if sid in (46, 47) else 1 + sid % 3  # the subjects under test have enough events not to abstain


def subject_events(sid: int) -> list[tuple]:
    """Two yearly visits, then for even subjects the trigger and death a day later, for odd ones asthma and a
    third visit. Subject 47 also has visits after its trigger would be: events the evidence must never cite."""
    start = dt.datetime(2012, 1, 1) + dt.timedelta(days=sid * 5)
    birth = start - dt.timedelta(days=365 * 50)
    ev = [(None, "GENDER//F" if sid % 2 else "GENDER//M", None), (birth, schema.BIRTH, None)]
    if sid == SHORT:
        return ev + [(start, "VISIT//OP//START", None), (start, "LOINC//2160-0", 1.0)]
    if sid == UNKNOWN:
        return ev + [(start + dt.timedelta(days=i), f"LOCAL//X{i}", None) for i in range(8)]
    ev += _visits(sid, start, n_visits(sid))
    t = trigger_time(sid)
    if sid % 2 == 0:
        ev += [(t, TRIGGER, None), (t + dt.timedelta(days=1), schema.DEATH, None)]
    else:
        ev += [(t, DISTRACTOR, None)] + _visits(sid, t + dt.timedelta(days=60), 1)
    return ev


def write_meds(out: Path, subject_ids: range) -> Path:
    rows = {c: [] for c in schema.EVENT_COLUMNS}
    for sid in subject_ids:
        for t, code, value in sorted(subject_events(sid), key=lambda e: (e[0] is not None, e[0] or dt.datetime.min)):
            unit = "mg/dL" if value is not None else None
            for col, v in zip(schema.EVENT_COLUMNS, (sid, t, code, value, None, unit)):
                rows[col].append(v)
    (out / "data").mkdir(parents=True)
    (out / "metadata").mkdir()
    pq.write_table(schema.events_table(rows), out / "data" / "0.parquet")
    splits = {sid: "train" if sid <= 40 else ("tuning" if sid <= 44 else "held_out") for sid in subject_ids}
    pq.write_table(pa.table({"subject_id": list(splits), "split": list(splits.values())}, schema=schema.SPLITS_SCHEMA),
                   out / schema.SPLITS_FILE)  # fmt: skip
    codes = sorted(set(rows[schema.CODE]))
    parents = [[p] if (p := schema.parent_code(c)) else [] for c in codes]
    pq.write_table(pa.table({"code": codes, "description": [f"desc of {c}" for c in codes], "parent_codes": parents},
                            schema=schema.CODES_SCHEMA), out / schema.CODES_FILE)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """The dataset and an fm-tiny run trained long enough (a few seconds) to learn the planted rule."""
    from clinfm.model.train import pretrain

    root = tmp_path_factory.mktemp("evidence")
    meds = write_meds(root / "meds", range(1, 53))
    cfg = load_config(TINY_CONFIG).model_dump()
    cfg["training"] |= {"max_steps": 300, "batch_size": 8, "eval_interval": 300, "checkpoint_interval": 300,
                        "log_interval": 100, "lr": 1e-2, "warmup_steps": 10}  # fmt: skip
    pretrain(meds, cfg, root / "run")
    return meds, root / "run"


def _record(meds: Path, sid: int) -> set[tuple[dt.datetime, str]]:
    t = pq.read_table(meds / "data" / "0.parquet").filter(pc.equal(pc.field("subject_id"), sid))
    return set(zip(t.column("time").to_pylist(), t.column("code").to_pylist()))


def test_planted_trigger_is_the_top_evidence_for_death(planted):
    meds, run = planted
    sid = 46  # held out, even: the trigger is its last event before the prediction time
    r = explain_forecast(run, meds, sid, trigger_time(sid), outcomes=("death", "admission"), **FAST)
    assert isinstance(r, RecordReasoning) and not r.abstained, r.abstention_reason
    death = next(f for f in r.forecasts if f.outcome == "death")
    top = death.evidence[0]
    assert top.group == group_key(TRIGGER) == "ICD10CM//R57"
    assert top.direction == "raises" and top.delta > 0.2, death.evidence
    assert all(top.delta > 2 * e.delta for e in death.evidence[1:])  # not a near tie
    assert top.codes == [TRIGGER] and top.events[0].time == trigger_time(sid)
    assert top.events[0].description == f"desc of {TRIGGER}"
    assert death.proxy is not None and death.proxy > 0.5 and death.probability > 0.5  # the rollouts die too
    assert r.model_version == "run" and r.groups_tested >= 5 and r.seconds > 0

    odd = explain_forecast(run, meds, 47, trigger_time(47), outcomes=("death",), **FAST)  # asthma, not the trigger
    odd_death = odd.forecasts[0]
    assert odd_death.proxy < death.proxy and all(e.group != "ICD10CM//R57" for e in odd_death.evidence)


def test_cites_only_events_in_the_record_at_or_before_the_prediction_time(planted):
    meds, run = planted
    sid = 47  # odd: asthma, then a visit 60 days later that lies after the prediction time
    when = trigger_time(sid) + dt.timedelta(days=1)
    r = explain_forecast(run, meds, sid, when, top_n=50, **FAST)
    record = _record(meds, sid)
    cited = [(e.time, e.code) for f in r.forecasts for item in f.evidence for e in item.events]
    cited += [(e.time, e.code) for d in r.expected_next_diagnoses for item in d.evidence for e in item.events]
    assert cited and all(c in record for c in cited)
    assert all(t <= when for t, _ in cited)
    later = {c for t, c in record if t is not None and t > when}
    tested = {item.group for f in r.forecasts for item in f.evidence}
    assert any(t > when for t, _ in record if t is not None) and later  # the record does go on after `when`
    assert ("VISIT//OP" in tested or "VISIT//IP" in tested) and max(t for t, _ in cited) <= when


@pytest.mark.parametrize(("sid", "why"), [(SHORT, "2 timed events"), (UNKNOWN, "unknown to the model")])
def test_abstains_on_a_thin_record(planted, sid, why):
    meds, run = planted
    r = explain_forecast(run, meds, sid, dt.datetime(2020, 1, 1), **FAST)
    assert r.abstained and r.abstention_reason.startswith("insufficient evidence")
    assert why in r.abstention_reason
    assert r.forecasts == [] and r.expected_next_diagnoses == []


def test_abstains_when_the_model_has_learned_nothing(planted):
    from clinfm.model.transformer import GPT

    meds, run = planted
    trained, tokenizer = load_model(run)
    torch.manual_seed(0)
    untrained = GPT(trained.config).eval()  # near-uniform next-event distribution
    r = explain_forecast((untrained, tokenizer), meds, 46, trigger_time(46), **FAST)
    assert r.abstained and "near uniform" in r.abstention_reason
    assert r.model_version.startswith("cfg-")


def test_the_model_is_loaded_once_per_run_folder(planted):
    _, run = planted
    assert load_model(run) is load_model(Path(str(run) + "/"))
