"""Running the whole suite on a dataset (evaluation store, tasks, agent, report), and comparing two runs of the
same tasks with a paired bootstrap: what ``clinfm assist-eval`` and ``clinfm assist-finetune`` call."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def run_evaluation(dataset: Path, backend: str, report: Path, *, limit: int | None = None, seed: int = 0,
                   split: str = "held_out", per_subject: int = 6, model: str | None = None, adapter: str | None = None,
                   base_url: str | None = None, api_key: str | None = None, n_resamples: int = 1000,
                   workdir: Path | None = None, progress: Any = None, max_steps: int = 8,
                   max_new_tokens: int = 160) -> dict[str, Any]:  # fmt: skip
    """Build the evaluation store from ``split``, generate tasks, run the agent, write the HTML + JSON report."""
    from clinfm.agentbench.agents import BaselineAgent, ChatAgent, FhirTools, LocalChat, OpenAIChat
    from clinfm.agentbench.report import run_suite, summarize, write_report
    from clinfm.agentbench.tasks import build_eval_store, generate_tasks, select
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    if backend not in ("none", "local", "openai"):
        raise ValueError(f"backend {backend!r} is not one of none, local, openai")
    with tempfile.TemporaryDirectory(prefix="clinfm-agentbench-") as tmp:
        store_dir = build_eval_store(dataset, Path(workdir or tmp) / "eval-store", split=split, seed=seed)
        tasks = select(generate_tasks(store_dir, seed=seed, per_subject=per_subject), limit)
        db = SubjectDatabase(store_dir)
        tools = FhirTools(FhirStore(db, CodeCatalog.for_dataset(store_dir, db.descriptions())))
        if backend == "none":
            agent: Any = BaselineAgent()
        elif backend == "openai":
            url = base_url or os.environ.get("CLINFM_OPENAI_BASE_URL")
            name = model or os.environ.get("CLINFM_OPENAI_MODEL")
            if not url or not name:
                raise ValueError("backend openai needs --base-url and --model (or CLINFM_OPENAI_BASE_URL / CLINFM_OPENAI_MODEL)")
            agent = ChatAgent(OpenAIChat(url, name, api_key or os.environ.get("CLINFM_OPENAI_API_KEY")), max_steps)
        else:
            agent = ChatAgent(LocalChat(model, adapter, max_new_tokens=max_new_tokens), max_steps)
        results = run_suite(tasks, agent, tools, progress)
    doc = summarize(results, backend, n_resamples=n_resamples, seed=seed)
    doc.update(dataset=str(dataset), split=split, seed=seed, limit=limit, model=model, adapter=adapter,
               max_steps=max_steps, max_new_tokens=max_new_tokens)
    write_report(doc, report)
    return doc


def compare_runs(base: dict[str, Any], tuned: dict[str, Any], n_resamples: int, seed: int) -> dict[str, Any]:
    """Paired comparison of two runs of the same tasks (their per-task outcomes, matched by id)."""
    from clinfm.agentbench.finetune import paired_comparison
    from clinfm.agentbench.grade import Grade
    from clinfm.agentbench.tasks import Task

    by_id = {t["id"]: t for t in tuned["tasks"]}

    def rows(doc: dict[str, Any], pick) -> list:
        return [(Task(t["id"], t["category"], t["subject_id"], "", "", "", {}, None), None, Grade(pick(t)["success"], ""))
                for t in doc["tasks"] if t["id"] in by_id]  # fmt: skip

    base_rows = rows(base, lambda t: t)
    tuned_rows = rows(base, lambda t: by_id[t["id"]])
    return {name: paired_comparison(base_rows, tuned_rows, n_resamples, seed, kind=kind)
            for name, kind in (("query", "query"), ("action", "action"), ("all", None))}
