"""Information gain, the interview session and its JSON round trip, the simulator's reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from clinfm.reasoning.answer_model import EXACT
from clinfm.reasoning.differential import joint_log_posterior, normalize, parse_answer
from clinfm.reasoning.models import DifferentialResult, Explanation, SessionState
from clinfm.reasoning.questions import askable_mask, expected_information_gain, options
from clinfm.reasoning.session import answer, explain, run_terminal, start_session
from clinfm.reasoning.simulator import full_profile_ranks, run_interviews, sample_cases


def test_information_gain_picks_the_discriminating_question(toy_kb):
    post = normalize(toy_kb.log_prior)[None, :]  # one exact profile
    askable = askable_mask(toy_kb, [], None)
    gain = expected_information_gain(toy_kb, post, askable, EXACT)
    ids = [e.id for e in toy_kb.evidences]
    assert gain[ids.index("E_3")] == pytest.approx(0.0, abs=1e-9)  # 0.5 under every pathology
    # multi-choice E_4 is listed by Alpha and Gamma, not Beta: "somewhere" vs "nowhere" splits Beta off exactly
    assert ids[int(np.argmax(gain))] == "E_4"
    binary = [ids.index(e) for e in ("E_1", "E_2", "E_3", "E_5")]
    assert ids[binary[int(np.argmax(gain[binary]))]] == "E_1"  # separates Alpha (0.9) from Beta (0.1) best
    # by hand: H(prior) - sum_a P(a) H(post | a)
    p = post[0]
    def h(x):
        x = x / x.sum()
        return -(x * np.log2(x)).sum()
    lik = np.array([0.9, 0.1, 0.5])
    py = (lik * p).sum()
    expected = h(p) - py * h(lik * p) - (1 - py) * h((1 - lik) * p)
    assert gain[ids.index("E_1")] == pytest.approx(expected, abs=1e-5)  # FLOOR on "don't know" costs ~1e-6
    eps = toy_kb.eps
    q = np.array([1 - eps, eps, 1 - eps])
    pn = (q * p).sum()
    assert gain[ids.index("E_4")] == pytest.approx(h(p) - pn * h(q * p) - (1 - pn) * h((1 - q) * p), abs=1e-5)


def test_session_asks_answers_and_round_trips_json(toy_kb):
    state = start_session(40, "female", "E_1", kb=toy_kb, budget=1, model=EXACT, confidence_threshold=0.9)
    q = state.next_question
    assert q.evidence_id == "E_4" and q.data_type == "M" and q.options == ["nowhere", "chest", "head", "don't know"]
    assert not state.finished and state.differential.evidence[0].evidence_id == "E_1"
    assert state.answers[0].source == "complaint"
    again = SessionState.model_validate_json(state.model_dump_json())
    assert again == state
    state = answer(again, "E_4", ["chest"], kb=toy_kb, model=EXACT)
    assert state.questions_asked == 1 and state.finished and "budget" in state.stop_reason
    eps = toy_kb.eps
    alpha, beta, gamma = 0.5 * 0.9 * (1 - eps), 0.3 * 0.1 * eps, 0.2 * 0.5 * (1 - eps)
    assert state.differential.probability == pytest.approx(alpha / (alpha + beta + gamma), abs=1e-5)
    text = explain(state).text
    assert "Alpha" in text and "Where is the pain? -> chest" in text


def test_dont_know_is_recorded_and_scored_by_the_answer_model(toy_kb):
    state = start_session(None, None, "E_1", kb=toy_kb, model=EXACT)
    after = answer(state, "E_2", "don't know", kb=toy_kb, model=EXACT)
    assert after.skipped == ["E_2"] and after.answers[-1].unknown and "E_2" not in {
        q.evidence_id for q in [after.next_question] if q}
    # EXACT never says "don't know": every pathology gets the same floor, so the posterior does not move
    assert after.differential.probability == pytest.approx(state.differential.probability, abs=1e-6)
    with pytest.raises(KeyError, match="E_999"):
        answer(state, "E_999", "yes", kb=toy_kb, model=EXACT)
    with pytest.raises(ValueError, match="answer model exact"):
        answer(state, "E_2", "yes", kb=toy_kb)  # the packaged model is not the one the session started with


def test_run_terminal_drives_a_whole_interview_through_callbacks(toy_kb):
    replies = iter(["40", "male", "question e_1", "Question E_1?"])
    shown = []

    def ask(prompt, options):
        return next(replies, "no")

    state = run_terminal(ask, shown.append, kb=toy_kb)
    assert state.answers[0].evidence_id == "E_1" and state.answers[0].present
    assert state.finished and isinstance(shown[-1], Explanation)
    assert all(isinstance(s, (DifferentialResult, Explanation)) for s in shown)


def test_simulator_is_reproducible_by_seed_and_kinds_differ_as_specified(toy_kb, real_kb):
    a, b, c = (sample_cases(toy_kb, 50, seed) for seed in (7, 7, 8))
    assert (a.pathology == b.pathology).all() and (a.answers == b.answers).all()
    assert (a.initial_evidence == b.initial_evidence).all() and (a.pathology != c.pathology).any()
    runs = [run_interviews(toy_kb, a, EXACT, policy="random", seed=1).ranks for _ in range(2)]
    assert (runs[0] == runs[1]).all()
    clean, noisy, incomplete = (sample_cases(real_kb, 400, 3, kind) for kind in ("clean", "noisy", "incomplete"))
    assert (clean.truth == noisy.truth).all()  # same seed, same patients: only the answers differ
    wrong = (noisy.answers == 0) != noisy.truth
    assert wrong.mean() == pytest.approx(0.04, abs=0.004)
    present = incomplete.truth.copy()
    present[np.arange(400), incomplete.initial_evidence] = False  # the complaint is known by construction
    assert (incomplete.answers[present] == 0).mean() == pytest.approx(0.6, abs=0.02)
    assert (incomplete.answers[present] == 2).mean() == pytest.approx(0.2, abs=0.02)
    assert (incomplete.answers[~incomplete.truth] == 1).all()  # absent findings are denied


def test_information_gain_beats_random_on_real_cases(real_kb):
    cases = sample_cases(real_kb, 150, seed=0)
    top1 = {name: run_interviews(real_kb, cases, EXACT, budget=10, policy=name, seed=1).correct.mean()
            for name in ("information_gain", "random")}
    assert top1["information_gain"] > top1["random"] + 0.2
    assert np.mean(full_profile_ranks(real_kb, cases, EXACT) == 0) > 0.95


def test_session_and_simulator_share_the_likelihoods(real_kb):
    """The batched interview and the session reach the same posterior from the same answers."""
    cases = sample_cases(real_kb, 1, seed=5, kind="noisy")
    run = run_interviews(real_kb, cases, EXACT, budget=3, threshold=0.999)
    state = start_session(None, "male" if cases.male[0] else "female", real_kb.evidences[cases.initial_evidence[0]].id,
                          real_kb, model=EXACT, budget=3, confidence_threshold=0.999)
    while not state.finished:
        j = real_kb.evidence_index[state.next_question.evidence_id]
        said = int(cases.answers[0, j])
        value = "don't know" if said == 2 else said == 0
        if not real_kb.evidences[j].is_binary:
            ev = real_kb.evidences[j]
            value = "don't know" if said == 2 else str(ev.default_value) if said == 1 else next(
                str(v) for v in ev.possible_values if str(v) != str(ev.default_value))
        state = answer(state, state.next_question.evidence_id, value, real_kb, model=EXACT)
    lp = joint_log_posterior(real_kb, state.answers, state.sex, EXACT)[0]
    assert int((lp > lp[cases.pathology[0]]).sum()) == run.ranks[0, -1]


def test_categorical_questions_offer_the_value_list_after_their_parent(real_kb):
    pain = [parse_answer(real_kb, "E_53", True, source="complaint")]
    mask = askable_mask(real_kb, pain, None)
    assert mask[real_kb.evidence_index["E_55"]] and not askable_mask(real_kb, [], None)[real_kb.evidence_index["E_55"]]
    where = options(real_kb, "E_55")
    assert "nowhere" in where and where[-1] == "don't know" and len(where) == 166
    assert options(real_kb, "E_56")[:3] == ["0", "1", "2"]
