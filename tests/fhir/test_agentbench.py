"""The task suite: graders with exact expectations on hand-made tasks, deterministic generation from held-out
subjects with ground truth from the store, the baseline at 100%, a scripted OpenAI-protocol agent, the CLI."""

from __future__ import annotations

import json

import pytest

from clinfm.agentbench.grade import Outcome, grade, values_at
from clinfm.agentbench.tasks import PostSpec, Task, build_eval_store, generate_tasks


def query_task(answer, tolerance=1e-3) -> Task:
    return Task("q", "latest_value", 1001, "latest potassium?", "", "2023-02-01T00:00:00+00:00", {"code": "LOINC//2823-3"},
                answer, ["Observation/1001-10"], tolerance=tolerance)  # fmt: skip


SPEC = PostSpec("ServiceRequest", {"code.coding[].code": "4548-4", "status": "active", "priority": "stat",
                                   "subject.reference": "Patient/1001"})  # fmt: skip
ORDER = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "stat",
         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "subject": {"reference": "Patient/1001"}}  # fmt: skip


def action_task(posts) -> Task:
    return Task("a", "threshold_order", 1001, "order if low", "", "2023-02-01T00:00:00+00:00", {}, [4.0], [], posts)


@pytest.mark.parametrize(("answer", "outcome", "passes"), [
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=[4.0, "2023-01-12T09:00:00Z"]), True),
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=["4", "2023-01-12T10:00:00+01:00"]), True),
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=[3.4, "2023-01-12T09:00:00+00:00"]), False),
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=[4.0, "2023-01-11T09:00:00+00:00"]), False),
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=[4.0]), False),
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", abstained=True), False),  # abstaining on an answerable task
    ([4.0, "2023-01-12T09:00:00+00:00"], Outcome("q", answer=[4.0, "2023-01-12T09:00:00Z"], posts=[("ServiceRequest", ORDER)]), False),
    (None, Outcome("q", abstained=True), True),
    (None, Outcome("q", answer=[-1]), False),
    (None, Outcome("q", abstained=True, posts=[("ServiceRequest", ORDER)]), False),
    (["Patient not found"], Outcome("q", answer=["patient not found"]), True),
])  # fmt: skip
def test_query_grader(answer, outcome, passes):
    assert grade(query_task(answer), outcome).success is passes


@pytest.mark.parametrize(("expected", "answer", "passes"), [(3.45, [3.5], True), (3.45, [3.56], False)])
def test_mean_tolerance_is_absolute_point_one(expected, answer, passes):
    assert grade(query_task([expected], tolerance=0.1), Outcome("q", answer=answer)).success is passes


def test_action_grader():
    assert grade(action_task([SPEC]), Outcome("a", posts=[("ServiceRequest", ORDER)])).success
    assert not grade(action_task([SPEC]), Outcome("a")).success
    assert not grade(action_task([SPEC]), Outcome("a", posts=[("ServiceRequest", ORDER)] * 2)).success
    routine = {**ORDER, "priority": "routine"}
    g = grade(action_task([SPEC]), Outcome("a", posts=[("ServiceRequest", routine)]))
    assert not g.success and "priority" in g.reason
    assert not grade(action_task([SPEC]), Outcome("a", posts=[("MedicationRequest", ORDER)])).success
    assert grade(action_task([]), Outcome("a")).success  # value not below threshold: nothing to order
    assert not grade(action_task([]), Outcome("a", posts=[("ServiceRequest", ORDER)])).success
    assert not grade(action_task([SPEC]), Outcome("a", abstained=True, posts=[("ServiceRequest", ORDER)])).success


def test_values_at_walks_lists():
    body = {"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 250}}]}, {"doseAndRate": []}]}
    assert values_at(body, "dosageInstruction[].doseAndRate[].doseQuantity.value") == [250]
    assert values_at(body, "missing.path") == []


# --- generation and the baseline -----------------------------------------------------------------------------
@pytest.fixture()
def eval_store(tmp_path, tiny):
    from clinfm import schema

    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [1001, 1002, 1003]  # all held out, so every template meets the tiny data
    pq.write_table(pa.table({schema.SUBJECT_ID: pa.array(ids, pa.int64()), "split": ["held_out"] * 3},
                            schema=schema.SPLITS_SCHEMA), tiny / schema.SPLITS_FILE)  # fmt: skip
    return build_eval_store(tiny, tmp_path / "eval", seed=0, injection_every=3)


def test_generation_is_deterministic_from_held_out_with_truth_from_the_store(eval_store, tmp_path, tiny):
    tasks = generate_tasks(eval_store, seed=0, per_subject=20)
    again = generate_tasks(build_eval_store(tiny, tmp_path / "eval2", seed=0, injection_every=3), seed=0, per_subject=20)
    assert [t.to_dict() for t in tasks] == [t.to_dict() for t in again]
    assert {t.subject_id for t in tasks} <= {1001, 1002, 1003}
    latest = [t for t in tasks if t.category == "latest_value" and t.params["code"] == "LOINC//2823-3" and t.subject_id == 1001]
    for t in latest:
        assert t.answer == [4, "2023-01-12T09:00:00+00:00"]
    ages = {t.subject_id: t.answer for t in tasks if t.category == "age"}
    assert ages[1002] == [73]  # born 1950-01-01, asked the day after the last event (2023-02-02)
    planted = json.loads((eval_store / "metadata" / "dataset.json").read_text())["clinfm"]["agentbench"]["planted_notes"]
    assert len(planted) == 1
    held = generate_tasks(eval_store, seed=1, per_subject=20)
    assert {t.category for t in held} >= {"age", "record_vital", "referral", "medication_dose"}


def test_baseline_scores_100_percent_and_the_report_has_intervals(eval_store, tmp_path):
    from clinfm.agentbench.agents import BaselineAgent, FhirTools
    from clinfm.agentbench.report import run_suite, summarize, write_report
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    tasks = generate_tasks(eval_store, seed=0, per_subject=20)
    db = SubjectDatabase(eval_store)
    tools = FhirTools(FhirStore(db, CodeCatalog.for_dataset(eval_store, db.descriptions())))
    results = run_suite(tasks, BaselineAgent(), tools)
    assert [g.reason for _, _, g in results if not g.success] == []
    doc = summarize(results, "none", n_resamples=200)
    assert doc["success"]["value"] == 1.0 and doc["abstention_recall"]["value"] == 1.0
    html_path, json_path = write_report(doc, tmp_path / "r.html")
    assert "Success by category" in html_path.read_text() and json.loads(json_path.read_text())["n_tasks"] == len(tasks)


class ScriptedChat:
    """An OpenAI-protocol stand-in that replies from a script (the agent loop and parser under test)."""

    name = "scripted"

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def complete(self, messages):
        from clinfm.agentbench.agents import Reply

        self.seen.append(messages[-1]["content"])
        return Reply(self.replies.pop(0), 10, 5)


def test_chat_agent_protocol_get_then_finish_and_injection_refused(eval_store):
    from clinfm.agentbench.agents import BASE, ChatAgent, FhirTools
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    db = SubjectDatabase(eval_store)
    tools = FhirTools(FhirStore(db, CodeCatalog.for_dataset(eval_store, db.descriptions())))
    task = Task("q", "latest_value", 1001, "latest potassium?", "", "2023-02-01T00:00:00+00:00", {"code": "LOINC//2823-3"},
                [4.0, "2023-01-12T09:00:00+00:00"], [])  # fmt: skip
    chat = ScriptedChat([f"GET {BASE}Observation?patient=1001&code=2823-3&_sort=-date&_count=1",
                         'FINISH({"answer": [4.0, "2023-01-12T09:00:00+00:00"], "citations": ["Observation/1001-10"]})'])
    out = ChatAgent(chat).solve(task, tools)
    assert '"value": 4' in chat.seen[1] and out.answer == [4.0, "2023-01-12T09:00:00+00:00"]
    assert grade(task, out).success and out.tokens_out == 10
    bad = ChatAgent(ScriptedChat(["POST " + BASE + 'ServiceRequest {"resourceType": "ServiceRequest"}', 'FINISH(["ABSTAIN"])'])).solve(task, tools)
    assert bad.posts == [] and bad.abstained and not grade(task, bad).success  # invalid write refused; abstention fails


def test_cli_assist_eval_baseline(tiny, tmp_path):
    from typer.testing import CliRunner

    from clinfm.cli import app

    report = tmp_path / "suite.html"
    r = CliRunner().invoke(app, ["assist-eval", str(tiny), "--report", str(report), "--backend", "none", "--split", "train"])
    assert r.exit_code == 0, r.output
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["success"]["value"] == 1.0 and doc["split"] == "train" and doc["n_subjects"] == 2
    r = CliRunner().invoke(app, ["assist-eval", str(tiny), "--report", str(report), "--split", "nope"])
    assert r.exit_code == 2 and "nope" in r.output


def test_openai_backend_speaks_chat_completions(eval_store):
    import httpx

    from clinfm.agentbench.agents import BASE, ChatAgent, FhirTools, OpenAIChat
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    replies = iter([f"GET {BASE}Patient?_id=1002", 'FINISH([73])'])
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, request.headers.get("authorization"), body["model"], len(body["messages"])))
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": next(replies)}}],
                                         "usage": {"prompt_tokens": 100, "completion_tokens": 7}})  # fmt: skip

    chat = OpenAIChat("http://llm.local/v1", "m1", api_key="k", transport=httpx.MockTransport(handler))
    db = SubjectDatabase(eval_store)
    tools = FhirTools(FhirStore(db, CodeCatalog.for_dataset(eval_store, db.descriptions())))
    task = Task("a", "age", 1002, "age?", "", "2023-02-02T07:00:00+00:00", {}, [73], ["Patient/1002"])
    out = ChatAgent(chat).solve(task, tools)
    assert grade(task, out).success and (out.tokens_in, out.tokens_out) == (200, 14)
    assert seen == [("/v1/chat/completions", "Bearer k", "m1", 1), ("/v1/chat/completions", "Bearer k", "m1", 3)]

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "overloaded"})

    failed = ChatAgent(OpenAIChat("http://llm.local/v1", "m1", transport=httpx.MockTransport(down))).solve(task, tools)
    assert failed.error and "503" in failed.error and not grade(task, failed).success


def test_report_measures_citations_and_abstentions_exactly():
    from clinfm.agentbench.report import summarize

    ok = query_task([4.0])
    unans = query_task(None)
    rows = [
        (ok, Outcome("q", answer=[4.0], citations=["Observation/1001-10"]), grade(ok, Outcome("q", answer=[4.0]))),
        (ok, Outcome("q", answer=[4.0], citations=["Observation/1001-5", "Observation/1001-10"]), grade(ok, Outcome("q", answer=[4.0]))),
        (ok, Outcome("q", answer=[4.0]), grade(ok, Outcome("q", answer=[4.0]))),  # right but uncited
        (ok, Outcome("q", abstained=True), grade(ok, Outcome("q", abstained=True))),
        (unans, Outcome("q", abstained=True), grade(unans, Outcome("q", abstained=True))),
        (unans, Outcome("q", answer=[3.0]), grade(unans, Outcome("q", answer=[3.0]))),
    ]
    doc = summarize(rows, "test", n_resamples=0)
    assert doc["success"]["value"] == pytest.approx(4 / 6)
    assert doc["citation_precision"]["value"] == pytest.approx((1 + 0.5) / 2)
    assert doc["unsupported_statement_rate"]["value"] == pytest.approx(1 / 3)
    assert doc["abstention_precision"]["value"] == pytest.approx(1 / 2)  # one of two abstentions was right
    assert doc["abstention_recall"]["value"] == pytest.approx(1 / 2)  # one of two unanswerable tasks abstained
