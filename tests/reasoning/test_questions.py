"""Information gain, the interview session and its JSON round trip, the simulator's reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from clinfm.reasoning.differential import normalize
from clinfm.reasoning.models import DifferentialResult, Explanation, SessionState
from clinfm.reasoning.questions import POLICIES, askable_mask, expected_information_gain
from clinfm.reasoning.session import answer, explain, run_terminal, start_session
from clinfm.reasoning.simulator import full_profile_ranks, interview, sample_cases


def test_information_gain_picks_the_discriminating_question(toy_kb):
    post = normalize(toy_kb.log_prior)
    askable = askable_mask(toy_kb, set(), None)
    gain = expected_information_gain(toy_kb, post, askable)
    ids = [e.id for e in toy_kb.evidences]
    assert gain[ids.index("E_3")] == pytest.approx(0.0, abs=1e-12)  # 0.5 under every pathology
    assert gain[ids.index("E_4")] == 0.0  # multi-choice: never asked
    assert ids[int(np.argmax(gain))] == "E_1"  # separates Alpha (0.9) from Beta (0.1) best
    # by hand: H(prior) - sum_a P(a) H(post | a)
    p = post
    def h(x):
        x = x / x.sum()
        return -(x * np.log2(x)).sum()
    lik = np.array([0.9, 0.1, 0.5])
    py = (lik * p).sum()
    expected = h(p) - py * h(lik * p) - (1 - py) * h((1 - lik) * p)
    assert gain[ids.index("E_1")] == pytest.approx(expected)


def test_session_asks_answers_and_round_trips_json(toy_kb):
    state = start_session(40, "female", "E_1", kb=toy_kb, budget=1)
    assert state.next_question.evidence_id == "E_2" and state.next_question.text == "Question E_2?"
    assert not state.finished and state.differential.evidence[0].evidence_id == "E_1"
    again = SessionState.model_validate_json(state.model_dump_json())
    assert again == state
    state = answer(again, "E_2", "no", kb=toy_kb)
    assert state.questions_asked == 1 and state.finished and "budget" in state.stop_reason
    assert state.differential.probability == pytest.approx(0.36 / 0.416, abs=1e-6)
    text = explain(state).text
    assert "Alpha" in text and "Question E_1? -> yes" in text


def test_dont_know_skips_a_question_without_moving_the_posterior(toy_kb):
    state = start_session(None, None, "E_1", kb=toy_kb)
    after = answer(state, "E_2", "don't know", kb=toy_kb)
    assert after.skipped == ["E_2"] and after.differential.probability == state.differential.probability
    assert after.finished and after.next_question is None  # nothing informative left in the toy
    with pytest.raises(KeyError, match="E_999"):
        answer(state, "E_999", "yes", kb=toy_kb)


def test_run_terminal_drives_a_whole_interview_through_callbacks(toy_kb):
    replies = iter(["40", "male", "question e_1", "Question E_1?"])
    shown = []

    def ask(prompt, options):
        return next(replies, "no")

    state = run_terminal(ask, shown.append, kb=toy_kb)
    assert state.answers[0].evidence_id == "E_1" and state.answers[0].present
    assert state.finished and isinstance(shown[-1], Explanation)
    assert all(isinstance(s, (DifferentialResult, Explanation)) for s in shown)


def test_simulator_is_reproducible_by_seed(toy_kb):
    a, b, c = (sample_cases(toy_kb, 50, seed) for seed in (7, 7, 8))
    assert [x.pathology for x in a] == [x.pathology for x in b]
    assert all((x.present == y.present).all() and x.initial_evidence == y.initial_evidence for x, y in zip(a, b))
    assert [x.pathology for x in a] != [x.pathology for x in c]
    runs = [[interview(toy_kb, x, POLICIES["random"], np.random.default_rng(1)).ranks for x in a] for _ in range(2)]
    assert runs[0] == runs[1]


def test_information_gain_beats_random_on_real_cases(real_kb):
    cases = sample_cases(real_kb, 150, seed=0)
    top1 = {}
    for name in ("information_gain", "random"):
        rng = np.random.default_rng(1)
        top1[name] = np.mean([interview(real_kb, c, POLICIES[name], rng).rank_within(10) == 0 for c in cases])
    assert top1["information_gain"] > top1["random"] + 0.2
    assert np.mean(full_profile_ranks(real_kb, cases) == 0) > 0.95
