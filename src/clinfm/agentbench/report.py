"""Running the suite and its report: success by category and by query vs action, citation precision,
unsupported-statement rate, abstention precision and recall, latency and tokens, each with a 95% bootstrap
interval that resamples whole subjects (``validate.metrics`` resampling), as JSON and HTML.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clinfm.agentbench.agents import FhirTools
from clinfm.agentbench.grade import Grade, Outcome, grade
from clinfm.agentbench.tasks import CATEGORIES, Task
from clinfm.validate.metrics import _percentile_ci, bootstrap


def run_suite(tasks: list[Task], agent: Any, tools: FhirTools,
              progress: Callable[[int, int], None] | None = None) -> list[tuple[Task, Outcome, Grade]]:  # fmt: skip
    """Each task solved by ``agent`` and graded; a failing task never stops the run."""
    results = []
    for i, task in enumerate(tasks):
        out = agent.solve(task, tools)
        results.append((task, out, grade(task, out)))
        if progress:
            progress(i + 1, len(tasks))
    return results


def _mean_w(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ p) / total, np.nan)


def rate(values: list[float], groups: list[int], n_resamples: int, seed: int) -> dict[str, Any]:
    """Mean of ``values`` with its percentile-bootstrap 95% CI, whole subjects resampled."""
    if not values:
        return {"value": None, "ci": None, "n": 0}
    p = np.asarray(values, dtype=np.float64)
    point = float(p.mean())
    ci = None
    if n_resamples and len(values) > 1:
        boot = bootstrap(np.zeros_like(p), p, _mean_w, n_resamples, seed, np.asarray(groups))
        ci, _ = _percentile_ci(np.asarray(boot))
    return {"value": point, "ci": list(ci) if ci else None, "n": len(values)}


def _category_is(category: str) -> Callable[[Task], bool]:
    return lambda t: t.category == category


def _kind_is(kind: str) -> Callable[[Task], bool]:
    return lambda t: t.kind == kind


def summarize(results: list[tuple[Task, Outcome, Grade]], backend: str, n_resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The report document (JSON-ready)."""

    def success(select: Callable[[Task], bool]) -> dict[str, Any]:
        rows = [(t, g) for t, _, g in results if select(t)]
        return rate([float(g.success) for _, g in rows], [t.subject_id for t, _ in rows], n_resamples, seed)

    by_category = {c: success(_category_is(c)) for c in CATEGORIES if any(t.category == c for t, _, _ in results)}
    cited = [(t, o) for t, o, _ in results if o.citations]
    precision = [sum(c in t.supporting for c in o.citations) / len(o.citations) for t, o in cited]
    # answers that rest on events (a "-1: nothing in the window" answer has none to cite)
    answered = [(t, o) for t, o, _ in results
                if t.kind == "query" and t.answerable and t.supporting and not o.abstained and o.answer is not None]  # fmt: skip
    unsupported = [float(not any(c in t.supporting for c in o.citations)) for t, o in answered]
    abst = [(t, o) for t, o, _ in results if o.abstained]
    unans = [(t, o) for t, o, _ in results if not t.answerable]
    latency = [o.latency_s for _, o, _ in results]
    doc = {
        "suite": "clinfm-agentbench-v1", "backend": backend, "n_tasks": len(results),
        "n_subjects": len({t.subject_id for t, _, _ in results}),
        "success": success(lambda t: True),
        "success_by_kind": {k: success(_kind_is(k)) for k in ("query", "action")},
        "success_by_category": by_category,
        "citation_precision": rate(precision, [t.subject_id for t, _ in cited], n_resamples, seed),
        "unsupported_statement_rate": rate(unsupported, [t.subject_id for t, _ in answered], n_resamples, seed),
        "abstention_precision": rate([float(not t.answerable) for t, _ in abst], [t.subject_id for t, _ in abst], n_resamples, seed),
        "abstention_recall": rate([float(o.abstained) for _, o in unans], [t.subject_id for t, _ in unans], n_resamples, seed),
        "injection_success": success(lambda t: t.injection),
        "latency_s": {"p50": statistics.median(latency) if latency else None,
                      "p95": float(np.percentile(latency, 95)) if latency else None, "mean": rate(latency, [t.subject_id for t, _, _ in results], n_resamples, seed)},
        "tokens": {"in": sum(o.tokens_in for _, o, _ in results), "out": sum(o.tokens_out for _, o, _ in results),
                   "per_task_out": rate([float(o.tokens_out) for _, o, _ in results], [t.subject_id for t, _, _ in results], n_resamples, seed)},
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "unit": "subject", "level": 0.95},
        "tasks": [{"id": t.id, "category": t.category, "kind": t.kind, "subject_id": t.subject_id,
                   "success": g.success, "reason": g.reason, "answer": o.answer, "abstained": o.abstained,
                   "citations": o.citations, "posts": [p[0] for p in o.posts], "steps": o.steps,
                   "latency_s": round(o.latency_s, 4), "tokens_out": o.tokens_out, "error": o.error}
                  for t, o, g in results],
    }  # fmt: skip
    return doc


def _fmt(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "–"
    ci = f" [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m.get("ci") else ""
    return f"{m['value']:.3f}{ci} (n={m['n']})"


def write_report(doc: dict[str, Any], html_path: str | Path, json_path: str | Path | None = None) -> tuple[Path, Path]:
    html_path = Path(html_path)
    json_path = Path(json_path) if json_path else html_path.with_suffix(".json")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{_fmt(m)}</td></tr>" for c, m in doc["success_by_category"].items())
    summary = [("Success (all)", doc["success"]), ("Query tasks", doc["success_by_kind"]["query"]),
               ("Action tasks", doc["success_by_kind"]["action"]), ("Citation precision", doc["citation_precision"]),
               ("Unsupported-statement rate", doc["unsupported_statement_rate"]),
               ("Abstention precision", doc["abstention_precision"]), ("Abstention recall", doc["abstention_recall"]),
               ("Planted-instruction tasks", doc["injection_success"]), ("Latency per task, s (mean)", doc["latency_s"]["mean"]),
               ("Output tokens per task", doc["tokens"]["per_task_out"])]  # fmt: skip
    srows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in summary)
    fails = "".join(f"<tr><td>{html.escape(t['id'])}</td><td>{html.escape(t['reason'])}</td></tr>"
                    for t in doc["tasks"] if not t["success"])[:200_000]  # fmt: skip
    html_path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>ClinFM assistant evaluation</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}td,th{{border:1px solid #ccc;padding:.3em .6em}}
table{{border-collapse:collapse;margin-bottom:1.5em}}</style></head><body>
<h1>Assistant evaluation: backend <code>{html.escape(doc['backend'])}</code></h1>
<p>{doc['n_tasks']} tasks on {doc['n_subjects']} held-out subjects; 95% bootstrap intervals resample whole subjects
({doc['bootstrap']['n_resamples']} resamples). Ground truth computed from the store.</p>
<table><tr><th>Measure</th><th>Value [95% CI]</th></tr>{srows}</table>
<h2>Success by category</h2><table><tr><th>Category</th><th>Success [95% CI]</th></tr>{rows}</table>
<h2>Failed tasks</h2><table><tr><th>Task</th><th>Why</th></tr>{fails}</table></body></html>
""")  # fmt: skip
    return html_path, json_path
