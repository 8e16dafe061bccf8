"""The governed assistant: one configured backend over a dataset, answering under governance.

* The configuration (backend, model id, weights SHA-256, prompt-template hash, tools, context policy) is a
  registered model version (:func:`register_assistant`) with a model card and the lifecycle gates of any model;
  ``silent`` computes, verifies and audits, but shows nothing; states before ``silent`` refuse.
* PHI egress: an ``openai`` host not on the organization's allow-list receives only de-identified context; a
  request that would send identified data there raises :class:`EgressRefused` before anything is sent.
* Every call leaves an audit entry ``assist.answer``: actor, organization, subject, version, hashes of prompt and
  answer, token counts, verifier outcome, latency. Text is kept only where the organization's policy says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinfm import schema
from clinfm.assist.agent import PROMPT_TEMPLATE_SHA256, AskOptions, AssistAnswer, ask
from clinfm.assist.backends import LanguageModel
from clinfm.assist.chart import MAX_PER_CODE, build_chart
from clinfm.assist.settings import AssistSettings
from clinfm.assist.tools import ForecastFn, ToolRegistry
from clinfm.schema import Subject

log = logging.getLogger(__name__)

SHOWN_STATES = frozenset({"pilot", "general"})
RUNNING_STATES = frozenset({"silent", "pilot", "general"})
CONFIG_FILE = "assistant.json"


class EgressRefused(PermissionError):
    """Identified record data would leave for a host not on the organization's allow-list."""


class NotServing(PermissionError):
    """The assistant configuration's lifecycle state does not allow it to answer."""


def assistant_config(model: LanguageModel, settings: AssistSettings, tools: list[str]) -> dict[str, Any]:
    """What identifies an assistant configuration (the registered artifact)."""
    d = model.describe()
    return {
        "kind": "clinfm-assistant", "backend": d["backend"], "model_id": d["model_id"], "host": d.get("host"),
        "weights_sha256": d.get("weights_sha256"), "prompt_template_sha256": PROMPT_TEMPLATE_SHA256,
        "tools": sorted(tools), "context_policy": {"chart_tokens": settings.chart_tokens, "ranking": "bm25",
                                                   "labs_per_code": MAX_PER_CODE, "record_marked_as_data": True},
        "budgets": {"max_steps": settings.max_steps, "answer_tokens": settings.answer_tokens,
                    "max_statements": settings.max_statements, "statement_chars": settings.statement_chars},
    }  # fmt: skip


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def register_assistant(config: dict[str, Any], dataset_dir: str | Path, actor: str, *, org: str,
                       name: str | None = None, folder: str | Path | None = None, db: str | None = None) -> Any:
    """Register ``config`` as the next version of ``name`` (default ``assistant-<model id>``), in ``draft``."""
    from clinfm.govern.db import clinfm_home
    from clinfm.govern.registry import register_model

    sha = config_sha256(config)
    where = Path(folder) if folder else clinfm_home() / "assistants" / sha[:16]
    where.mkdir(parents=True, exist_ok=True)
    (where / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (where / "config.json").write_text(json.dumps({"assistant": config, "config_sha256": sha}, sort_keys=True) + "\n")
    name = name or f"assistant-{config['model_id']}".replace("/", "-")[:60]
    from clinfm.govern.card import set_card_facts

    v = register_model(name, where, dataset_dir, actor, org=org, db=db)
    return set_card_facts(v.id, card_facts(config), actor=actor, org=org, db=db)


def card_facts(config: dict[str, Any]) -> dict[str, str]:
    """What the platform, as the assistant's developer, states on its model card."""
    return {
        "summary": f"Clinical assistant: {config['backend']} language model {config['model_id']} answering questions "
                   "about one patient's record with statements that cite the record's events, each checked by a "
                   "verifier before it is shown.",
        "output_value": "Statements in words, each citing events of the patient's record (subject, time, code, value), "
                        "plus the statements the verifier removed and why, or an abstention with its reason.",
        "output_type": "Analysis (a summary of the record in answer to a question); not a prediction, not an order.",
        "known_risks": "The verifier checks that cited events exist in this patient's record and that stated numbers, "
                       "units, dates and codes match them; it does not check clinical reasoning, omissions or "
                       "phrasing, so a supported statement can still mislead. Small local models answer poorly and "
                       "often abstain. No dosing orders are given.",
    }  # fmt: skip


def find_assistant_version(config: dict[str, Any], org: str, db: str | None = None) -> Any | None:
    """The organization's latest registered version whose artifact is exactly ``config`` (None: not registered)."""
    from clinfm.govern.registry import list_models

    sha = hashlib.sha256((json.dumps({"assistant": config, "config_sha256": config_sha256(config)},
                                     sort_keys=True) + "\n").encode()).hexdigest()  # fmt: skip
    hits = [v for v in list_models(org=org, db=db) if (v.artifacts or {}).get("files", {}).get("config.json", {}).get("sha256") == sha]
    return max(hits, key=lambda v: v.created_at) if hits else None


def dataset_is_deidentified(dataset_dir: str | Path | None) -> bool:
    """Whether the dataset's ``metadata/dataset.json`` records a ClinFM de-identification."""
    if dataset_dir is None:
        return False
    path = Path(dataset_dir) / schema.DATASET_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool((meta.get("clinfm") or {}).get("deid"))


def check_egress(model: LanguageModel, org: str, deidentified: bool, settings: AssistSettings) -> None:
    """Refuse before sending identified data to an ``openai`` host not on ``org``'s allow-list."""
    if model.kind != "openai" or deidentified:
        return
    host = (model.describe().get("host") or "").lower()
    allowed = {h.lower() for h in settings.egress_allow_hosts.get(org, [])}
    if host not in allowed:
        raise EgressRefused(f"the record is not de-identified and host {host!r} is not on organization {org!r}'s "
                            f"egress allow-list ({sorted(allowed) or 'empty'}): serve a de-identified dataset or "
                            "add the host to CLINFM_ASSIST_EGRESS_ALLOW_HOSTS")  # fmt: skip


@dataclass
class Assistant:
    """A backend with its settings; ``answer`` runs one governed question."""

    model: LanguageModel
    settings: AssistSettings = field(default_factory=AssistSettings)
    db: str | None = None  # governance database (None: the default)
    text_log: Path | None = None  # where prompt/answer text goes for organizations that keep it

    @property
    def tool_names(self) -> list[str]:
        names = ["search_timeline", "lab_series", "renal_function", "treatment_check", "differential_diagnosis"]
        return names + ["forecast"]

    def config(self) -> dict[str, Any]:
        return assistant_config(self.model, self.settings, self.tool_names)

    def options(self) -> AskOptions:
        s = self.settings
        local = self.model.kind == "local"
        return AskOptions(max_steps=s.max_steps, chart_tokens=s.chart_tokens, answer_tokens=s.answer_tokens,
                          max_statements=s.max_statements or (2 if local else 5), statement_chars=s.statement_chars,
                          use_tools=(not local) if s.use_tools is None else s.use_tools)  # fmt: skip

    def answer(self, subject: Subject, question: str, *, org: str, actor: str, at: dt.datetime | None = None,
               descriptions: dict[str, str] | None = None, deidentified: bool, state: str | None = None,
               version: str | None = None, purpose: str = "treatment", forecast: ForecastFn | None = None,
               audit: bool = True) -> AssistAnswer:  # fmt: skip
        """Answer under governance. ``state`` is the configuration's lifecycle state (None: not governed, e.g.
        the CLI on a developer's machine: answers are shown with a warning)."""
        if state is not None and state not in RUNNING_STATES:
            raise NotServing(f"assistant configuration {version} is in state {state!r}: it answers only in silent, "
                             "pilot or general")  # fmt: skip
        check_egress(self.model, org, deidentified, self.settings)
        chart = build_chart(subject, at, descriptions)
        tools = ToolRegistry(chart, forecast=forecast)
        result = ask(question, chart, self.model, tools=tools, options=self.options())
        if state is None:
            result.warnings.append("this assistant configuration is not governed here (no registered version): "
                                   "for development, not for care")  # fmt: skip
        if state == "silent":
            result.shown = False
        if audit:
            self.audit(result, org=org, actor=actor, version=version, purpose=purpose)
        if not result.shown:
            result = silent_view(result)
        return result

    def audit(self, result: AssistAnswer, *, org: str, actor: str, version: str | None, purpose: str) -> None:
        from clinfm.govern import audit

        details = {
            "question_sha256": hashlib.sha256(result.question.encode()).hexdigest(),
            "prompt_sha256": result.prompt_sha256, "answer_sha256": result.answer_sha256,
            "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
            "verifier_outcome": result.verifier_outcome, "statements_kept": len(result.statements),
            "statements_removed": len(result.removed), "abstained": result.abstained, "shown": result.shown,
            "latency_ms": int(result.latency_s * 1000), "backend": result.backend.get("backend"),
            "model_id": result.backend.get("model_id"), "tools_called": [t.name for t in result.tools],
        }  # fmt: skip
        audit.record("assist.answer", actor=actor, org=org, model_version_id=version, subject_id=result.subject_id,
                     purpose=purpose, details=details, db=self.db)  # fmt: skip
        if org in self.settings.keep_text_orgs and self.text_log is not None:
            self.text_log.parent.mkdir(parents=True, exist_ok=True)
            with self.text_log.open("a") as f:
                f.write(json.dumps({"answer_sha256": result.answer_sha256, "org": org, "subject_id": result.subject_id,
                                    "question": result.question, "answer": [s.text for s in result.statements]}) + "\n")  # fmt: skip


def silent_view(result: AssistAnswer) -> AssistAnswer:
    """What a silent configuration returns: the bookkeeping, none of the content."""
    return result.model_copy(update={"statements": [], "removed": [], "tools": [], "abstention_reason": None,
                                     "warnings": ["the assistant is in silent mode: the answer was computed, verified "
                                                  "and logged, and is not shown"]})  # fmt: skip
