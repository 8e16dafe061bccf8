"""The answer-noise model against hand-computed Bayes, categorical answers as derived, calibration figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clinfm.reasoning.answer_model import (
    EXACT,
    AnswerModel,
    AnswerProfile,
    descriptor_theta,
    load_answer_model,
    parse_answer_model,
)
from clinfm.reasoning.calibration import reliability
from clinfm.reasoning.differential import differential, log_posterior, normalize, parse_answer
from clinfm.reasoning.session import answer, start_session
from clinfm.reasoning.simulator import run_interviews, sample_cases

NOISY = AnswerModel((AnswerProfile("p", 1.0, false_denial=0.1, false_claim=0.05, dont_know_present=0.2,
                                   dont_know_absent=0.02),))
PRIOR = np.array([0.5, 0.3, 0.2])  # toy Alpha, Beta, Gamma
E1 = np.array([0.9, 0.1, 0.5])  # toy P(E_1 | d)


def _post(kb, model, **values):
    return normalize(log_posterior(kb, [parse_answer(kb, e, v) for e, v in values.items()], model=model))


def test_noise_likelihood_matches_a_hand_computed_example(toy_kb):
    # P(yes | d) = p (1 - 0.1 - 0.2) + (1 - p) 0.05: Alpha .635, Beta .115, Gamma .375
    yes = PRIOR * (E1 * 0.7 + (1 - E1) * 0.05)
    assert _post(toy_kb, NOISY, E_1="yes") == pytest.approx(yes / yes.sum(), rel=1e-9)
    # P(no | d) = p 0.1 + (1 - p)(1 - 0.05 - 0.02)
    no = PRIOR * (E1 * 0.1 + (1 - E1) * 0.93)
    assert _post(toy_kb, NOISY, E_1="no") == pytest.approx(no / no.sum(), rel=1e-9)
    # P(don't know | d) = p 0.2 + (1 - p) 0.02: Alpha .182, Beta .038, Gamma .11 -- "don't know" hints "present"
    dk = PRIOR * (E1 * 0.2 + (1 - E1) * 0.02)
    assert _post(toy_kb, NOISY, E_1="don't know") == pytest.approx(dk / dk.sum(), rel=1e-9)
    # without noise the same "yes" is the plain table likelihood
    assert _post(toy_kb, EXACT, E_1="yes") == pytest.approx(PRIOR * E1 / (PRIOR * E1).sum(), rel=1e-6)


def test_a_mixture_of_answer_profiles_sums_them_out(toy_kb):
    mix = AnswerModel((AnswerProfile("reliable", 3.0), AnswerProfile("liar", 1.0, 0.5, 0.5)))
    # P(yes, no | d) = 3/4 p(1 - p)... reliable: E_1 yes, E_2 no; liar: every answer 1/2
    e2 = np.array([0.2, 0.8, 0.5])
    joint = PRIOR * (0.75 * E1 * (1 - e2) + 0.25 * 0.5 * 0.5)
    assert _post(toy_kb, mix, E_1="yes", E_2="no") == pytest.approx(joint / joint.sum(), rel=1e-5)


def test_chief_complaint_and_clinician_answers_are_taken_as_true(toy_kb):
    state = start_session(None, None, "E_1", toy_kb, model=NOISY)
    assert state.differential.probability == pytest.approx((PRIOR * E1 / (PRIOR * E1).sum())[0], abs=1e-5)
    patient = answer(state, "E_2", "no", toy_kb, model=NOISY)
    clinician = answer(state, "E_2", "no", toy_kb, model=NOISY, source="clinician")
    e2 = np.array([0.2, 0.8, 0.5])
    said = PRIOR * E1 * (e2 * 0.1 + (1 - e2) * 0.93)
    true = PRIOR * E1 * (1 - e2)
    assert patient.differential.probability == pytest.approx(said[0] / said.sum(), abs=1e-5)
    assert clinician.differential.probability == pytest.approx(true[0] / true.sum(), abs=1e-5)


def test_categorical_answer_changes_the_posterior_as_derived(toy_kb):
    # E_4 (multi-choice, default "nowhere" = absent, theta 1) is listed by Alpha and Gamma, not Beta:
    # q = (1 - eps, eps, 1 - eps); a non-default value is "yes" to q, the default is "no"; the specific value
    # (chest vs head) is equally likely under every pathology and must not matter.
    eps = toy_kb.eps
    q = np.array([1 - eps, eps, 1 - eps])
    some = PRIOR * (q * 0.7 + (1 - q) * 0.05)
    assert _post(toy_kb, NOISY, E_4=["chest"]) == pytest.approx(some / some.sum(), rel=1e-9)
    assert _post(toy_kb, NOISY, E_4=["V_2"]) == pytest.approx(some / some.sum(), rel=1e-9)
    assert _post(toy_kb, NOISY, E_4=["chest", "head"]) == pytest.approx(some / some.sum(), rel=1e-9)
    none = PRIOR * (q * 0.1 + (1 - q) * 0.93)
    assert _post(toy_kb, NOISY, E_4="nowhere") == pytest.approx(none / none.sum(), rel=1e-9)
    dx = differential([parse_answer(toy_kb, "E_4", ["chest"])], kb=toy_kb, model=NOISY)
    assert dx.evidence[0].display == "chest" and any("categorical" in a for a in dx.assumptions)


def test_descriptor_theta_follows_the_default_values_meaning(real_kb):
    theta = dict(zip([e.id for e in real_kb.evidences], descriptor_theta(real_kb)))
    assert theta["E_55"] == 1.0 and theta["E_54"] == 1.0 and theta["E_56"] == 1.0  # nowhere / NA / 0 on a scale
    assert theta["E_135"] == 0.5 and theta["E_204"] == 0.5  # default "N": an ordinary answer


def test_a_descriptor_counts_only_under_its_present_parent(real_kb):
    # the pain location only moves the posterior once pain is present; given pain, every pain pathology
    # lists it, so a located pain adds (almost) nothing: the derived model's honest consequence
    somewhere = str(real_kb.evidence("E_55").possible_values[1])
    pain = [parse_answer(real_kb, "E_53", True)]
    located = pain + [parse_answer(real_kb, "E_55", [somewhere])]
    a = normalize(log_posterior(real_kb, pain, model=EXACT))
    b = normalize(log_posterior(real_kb, located, model=EXACT))
    assert np.abs(a - b).max() < 0.01
    alone = differential([parse_answer(real_kb, "E_55", [somewhere])], kb=real_kb, model=EXACT)
    assert any("E_55" in w and "parent" in w for w in alone.warnings)


def test_answer_model_file_round_trip_and_errors(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    path.write_text(NOISY.to_json())
    loaded = load_answer_model(path)
    assert loaded.profiles == NOISY.profiles and loaded.version.startswith("am-") and loaded.source == str(path)
    monkeypatch.setenv("CLINFM_DDX_ANSWER_MODEL", str(path))
    assert load_answer_model().version == loaded.version
    with pytest.raises(ValueError, match="rates"):
        AnswerProfile("bad", 1.0, false_denial=0.7, dont_know_present=0.4)
    with pytest.raises(ValueError, match="not valid"):
        parse_answer_model(json.dumps({"temperature": 1}), "x.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_answer_model(tmp_path / "nope.json")
    monkeypatch.delenv("CLINFM_DDX_ANSWER_MODEL")
    packaged = load_answer_model()
    assert packaged.source.startswith("packaged:") and packaged.fitted_on["tune_seeds"]


def test_reliability_and_ece_by_hand():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    ok = np.array([1, 1, 1, 0, 1, 0])
    r = reliability(conf, ok)
    assert r.count == [2, 4] and r.accuracy == [0.5, 0.75]
    assert r.ece == pytest.approx(2 / 6 * 0.05 + 4 / 6 * 0.2)
    with pytest.raises(ValueError, match="non-empty"):
        reliability(np.array([]), np.array([]))


def test_the_noise_model_beats_certain_answers_on_noisy_cases(real_kb):
    cases = sample_cases(real_kb, 300, seed=99, kind="noisy")
    model = load_answer_model()
    engine = run_interviews(real_kb, cases, model)
    baseline = run_interviews(real_kb, cases, AnswerModel(EXACT.profiles, threshold=0.9))
    assert engine.correct.mean() > baseline.correct.mean() + 0.04
    assert reliability(engine.confidence, engine.correct).ece < reliability(baseline.confidence, baseline.correct).ece
