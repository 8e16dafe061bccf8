"""Clinical reasoning in language: a grounded, governed assistant over one patient's record.

Public API (stable; other packages build on it)
-----------------------------------------------
Backends (``clinfm.assist.backends``, ``clinfm.assist.local``)
    ``LanguageModel``: the protocol: ``complete(messages, schema=, tools=, max_tokens=, on_text=) -> Completion``,
    ``count_tokens(text)``, ``describe()``, attributes ``kind``, ``model_id``, ``context_tokens``.
    ``OpenAIBackend(base_url, model, api_key, timeout_s=, max_retries=, ...)``: any Chat Completions endpoint.
    ``LocalBackend(model_path=None, cache_dir=, device=)``: transformers in-process, JSON-schema constrained
    (xgrammar); ``None`` = the embedded SmolLM2-135M-Instruct. ``make_backend(settings)`` builds either.
    ``Completion``, ``ToolSpec``, ``ToolCall``, ``Usage``; errors ``BackendError``, ``BackendUnavailable``
    (``retry_after_s``).
Chart (``clinfm.assist.chart``)
    ``build_chart(subject, at, descriptions) -> Chart``: items with citation ids (one stored event each);
    ``Chart.render(question, budget_tokens, count_tokens)``; ``Chart.relevant(question)`` (BM25).
Tools (``clinfm.assist.tools``)
    ``ToolRegistry(chart, forecast=None)``: ``specs`` (``ToolSpec`` list), ``call(ToolCall) -> ToolResult``;
    tools: search_timeline, lab_series, renal_function, treatment_check, differential_diagnosis, forecast.
Verifier (``clinfm.assist.verify``)
    ``Statement(text, citations)``, ``verify(statements, chart) -> Verdict(kept, removed)``,
    ``check_statement(statement, chart) -> reasons``.
The loop (``clinfm.assist.agent``)
    ``ask(question, chart, model, tools=, options=AskOptions()) -> AssistAnswer``.
Service (``clinfm.assist.service``)
    ``Assistant``: backend + governance (registered configuration, lifecycle, audit, PHI egress) over a dataset.
"""

from __future__ import annotations

from clinfm.assist.agent import BANNER, AskOptions, AssistAnswer, ask, parse_statements
from clinfm.assist.backends import (
    BackendError,
    BackendUnavailable,
    Completion,
    LanguageModel,
    OpenAIBackend,
    ToolCall,
    ToolSpec,
    Usage,
)
from clinfm.assist.chart import Chart, ChartItem, build_chart
from clinfm.assist.tools import ToolError, ToolRegistry, ToolResult
from clinfm.assist.verify import RemovedStatement, Statement, Verdict, check_statement, verify

__all__ = [
    "BANNER", "AskOptions", "AssistAnswer", "BackendError", "BackendUnavailable", "Chart", "ChartItem", "Completion",
    "LanguageModel", "OpenAIBackend", "RemovedStatement", "Statement", "ToolCall", "ToolError", "ToolRegistry",
    "ToolResult", "ToolSpec", "Usage", "Verdict", "ask", "build_chart", "check_statement", "parse_statements", "verify",
]  # fmt: skip
