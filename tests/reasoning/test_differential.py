"""Posterior updates against hand-computed Bayes, smoothing, findings, abstention and the real knowledge base."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clinfm.reasoning.answer_model import EXACT
from clinfm.reasoning.differential import contributions, differential, log_posterior, normalize, parse_answer
from clinfm.reasoning.knowledge import load_knowledge_base

from .conftest import write_toy_kb


def _answers(kb, **values):
    return [parse_answer(kb, eid, v) for eid, v in values.items()]


def test_posterior_matches_hand_computed_bayes(toy_kb):
    dx = differential(_answers(toy_kb, E_1=True, E_2="no"), kb=toy_kb, model=EXACT)
    # prior x P(E_1 yes) x P(E_2 no): Alpha .5*.9*.8 = .36, Beta .3*.1*.2 = .006, Gamma .2*.5*.5 = .05
    expected = {"Alpha": 0.36 / 0.416, "Beta": 0.006 / 0.416, "Gamma": 0.05 / 0.416}
    got = {c.pathology: c.probability for c in dx.candidates}
    assert got == pytest.approx(expected, abs=1e-6)
    assert dx.top.pathology == "Alpha" and dx.probability == pytest.approx(0.36 / 0.416, abs=1e-6)
    assert dx.kb_version == toy_kb.version and dx.kb_version.startswith("ddxplus-")


def test_no_single_answer_zeroes_a_pathology(toy_kb):
    # E_5 has P = 0 for every pathology and E_4 is 0 for Beta: clipped to eps, never zero.
    post = normalize(log_posterior(toy_kb, _answers(toy_kb, E_5=True), model=EXACT))
    assert (post > 0).all()
    post = normalize(log_posterior(toy_kb, _answers(toy_kb, E_4=["V_1"]), model=EXACT))
    eps = toy_kb.eps
    beta = 0.3 * eps / (0.5 * (1 - eps) + 0.3 * eps + 0.2 * (1 - eps))
    assert post[toy_kb.pathology_index["Beta"]] == pytest.approx(beta, rel=1e-9)


def test_categorical_default_value_counts_against_the_pathologies_listing_the_question(toy_kb):
    # E_4 ("where is the pain", default "nowhere") is listed by Alpha and Gamma: a pain that is somewhere for them
    eps = toy_kb.eps
    post = normalize(log_posterior(toy_kb, _answers(toy_kb, E_4="nowhere"), model=EXACT))
    z = 0.5 * eps + 0.3 * (1 - eps) + 0.2 * eps
    assert post == pytest.approx([0.5 * eps / z, 0.3 * (1 - eps) / z, 0.2 * eps / z], rel=1e-9)
    with pytest.raises(ValueError, match="E_4"):
        parse_answer(toy_kb, "E_4", ["V_9"])


def test_findings_for_and_against_are_log_likelihood_ratios(toy_kb):
    answers = _answers(toy_kb, E_1=True, E_2=False)
    lp = log_posterior(toy_kb, answers, model=EXACT)
    llr = contributions(toy_kb, answers, lp, toy_kb.pathology_index["Alpha"], EXACT)
    post = normalize(lp)
    w_beta, w_gamma = post[1] / (post[1] + post[2]), post[2] / (post[1] + post[2])
    assert llr[0] == pytest.approx(math.log(0.9) - math.log(w_beta * 0.1 + w_gamma * 0.5))
    alpha = differential(answers, kb=toy_kb, model=EXACT).candidates[0]
    assert alpha.findings_for[0].evidence_id == "E_1" and alpha.findings_for[0].log_likelihood_ratio > 0
    beta = next(c for c in differential(answers, kb=toy_kb, model=EXACT).candidates if c.pathology == "Beta")
    assert {f.evidence_id for f in beta.findings_against} == {"E_1", "E_2"}  # yes to 0.1, no to 0.8


def test_abstains_on_a_flat_posterior(tmp_path):
    flat = {name: {"E_1": 0.5, "E_2": 0.5, "E_3": 0.5, "E_145": 0.5, "E_4": 1.0, "E_5": 0.0}
            for name in ("Alpha", "Beta", "Gamma")}
    kb = load_knowledge_base(write_toy_kb(tmp_path / "flat", flat, {n: 100 for n in flat}))
    dx = differential(_answers(kb, E_1=True), kb=kb)
    assert dx.abstained and dx.top is None
    assert dx.abstention_reason.startswith("insufficient evidence") and dx.normalized_entropy == pytest.approx(1.0)
    assert differential([], kb=kb).abstention_reason.startswith("insufficient evidence: no findings")


def test_cant_miss_pathology_is_kept_below_the_top_k_and_flagged(toy_kb):
    dx = differential(_answers(toy_kb, E_1=True), kb=toy_kb, top_k=1)
    assert [c.pathology for c in dx.candidates] == ["Alpha", "Gamma"]  # Gamma has severity 1
    assert dx.candidates[1].cant_miss and not dx.candidates[0].cant_miss
    assert any("Gamma" in w for w in dx.warnings)


def test_female_only_answers_do_not_move_a_male_posterior(toy_kb):
    toy = {"E_145": True}
    male = normalize(log_posterior(toy_kb, _answers(toy_kb, **toy), sex="male"))
    assert male == pytest.approx(normalize(toy_kb.log_prior))
    assert any("E_145" in w for w in differential(_answers(toy_kb, **toy), sex="male", kb=toy_kb).warnings)


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_knowledge_base(tmp_path)


def test_real_knowledge_base_loads(real_kb):
    assert len(real_kb.pathologies) == 49 and len(real_kb.evidences) == 223
    assert real_kb.binary_mask.sum() == 208
    assert np.exp(real_kb.log_prior).sum() == pytest.approx(1.0)
    severe = {p.name for p in real_kb.pathologies if p.cant_miss}
    assert {"Anaphylaxis", "Pulmonary embolism", "Possible NSTEMI / STEMI", "Unstable angina"} <= severe
    assert "URTI" not in severe
    assert real_kb.evidence("E_91").question.startswith("Do you have a fever")
    assert load_knowledge_base().version == real_kb.version
