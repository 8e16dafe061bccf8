"""Model cards generated from the registry, never typed by hand, in Markdown, HTML and JSON.

A card shows intended use, out-of-scope use, training data and its de-identification, validation with confidence
intervals and subgroups, known limitations, the lifecycle history and all 31 HTI-1 source attributes. What the
platform cannot know is recorded by people as facts (:func:`set_card_facts`, audited) or shown as unknown, naming
who must supply it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup

from clinfm.govern import hti1
from clinfm.govern.db import DB, utcnow
from clinfm.govern.lifecycle import LifecyclePolicy, check_validation, load_policy
from clinfm.govern.registry import ModelVersion, ReportInfo, get_model, update_facts
from clinfm.govern.reports import ValidationSummary, read_monitoring, read_validation

CARD_SCHEMA = "clinfm-model-card/1"
EXTRA_FACTS = {"summary": "a one-paragraph description of the model"}
FACT_KEYS = frozenset(hti1.BY_KEY) | frozenset(EXTRA_FACTS)
PARTIAL = frozenset(
    {
        "output_value",
        "cautioned_use",
        "known_risks",
        "inclusion_exclusion",
        "demographic_inputs",
        "demographic_representativeness",
        "fairness_approach",
        "validity_monitoring",
        "external_representativeness",
    }
)
"""Attributes where the platform's record is only part of the answer: the owner still has to complete them."""
SMALL_SUBGROUP = 100
FORMATS = ("md", "html", "json")


def set_card_facts(
    version_id: str, facts: dict[str, str], *, actor: str, org: str | None = None, db: DB = None
) -> ModelVersion:
    """Record statements only people can make (keys: HTI-1 attribute keys, or ``summary``); audited."""
    unknown = sorted(set(facts) - FACT_KEYS)
    if unknown:
        raise ValueError(f"unknown card fact(s) {unknown}; known: {sorted(FACT_KEYS)}")
    return update_facts(
        version_id, {k: str(v).strip() for k, v in facts.items()}, actor=actor, org=org, db=db
    )


# --- reading the registry ----------------------------------------------------------------------------------
def _reports(
    version: ModelVersion, *kinds: str, setting: str | None = None
) -> list[tuple[ReportInfo, ValidationSummary]]:
    out = []
    for report in version.reports:
        if report.kind in kinds:
            summary = read_validation(report.document, version.name)
            if setting is None or summary.setting == setting or report.kind != "validation":
                out.append((report, summary))
    return out


def _latest(found: list) -> Any:
    return found[-1] if found else (None, None)


def _metrics_text(summary: ValidationSummary, report: ReportInfo) -> str | None:
    if not summary.metrics:
        return None
    shown = ", ".join(f"{name.replace('_', ' ')} {metric}" for name, metric in summary.metrics.items())
    n = f" on {summary.n:,} subjects" if summary.n else ""
    return f"{shown}{n} (model {summary.primary!r}, report {report.id}, sha256 {report.sha256[:12]})"


def _fairness_text(summary: ValidationSummary) -> str | None:
    if not summary.subgroups and summary.four_fifths_flag is None:
        return None
    parts = []
    for attribute in dict.fromkeys(s.attribute for s in summary.subgroups):
        rows = [s for s in summary.subgroups if s.attribute == attribute]
        aurocs = [f"{s.group} {s.metrics['auroc']}" for s in rows if "auroc" in s.metrics]
        parts.append(f"{attribute}: " + ("; ".join(aurocs) if aurocs else f"{len(rows)} groups, no AUROC"))
    if summary.four_fifths_flag is not None:
        ratio = summary.fairness.get("min_selection_rate_ratio")
        parts.append(
            ("four-fifths rule FLAGGED" if summary.four_fifths_flag else "four-fifths rule not flagged")
            + (f" (lowest selection-rate ratio {ratio:.2f})" if isinstance(ratio, int | float) else "")
        )
    return "AUROC by subgroup: " + " | ".join(parts)


def _cohort_text(doc: dict[str, Any]) -> str | None:
    """The cohort as the report states it: text, or the task definition and split sizes of ``clinfm.validate``."""
    cohort, task = doc.get("cohort"), doc.get("task_config")
    if isinstance(cohort, str):
        return cohort
    parts = []
    if isinstance(task, dict) and task:
        parts.append(
            "Task definition: "
            + "; ".join(f"{k} = {v}" for k, v in task.items() if v not in (None, "", [], {}))
        )
    if isinstance(cohort, dict):
        sizes = [
            f"{split}: {row.get('labels')} labels, {row.get('subjects')} subjects, {row.get('positives')} positive"
            for split, row in cohort.items()
            if isinstance(row, dict) and "labels" in row
        ]
        if sizes:
            parts.append("Labelled cohort: " + "; ".join(sizes))
    return ". ".join(parts) or None


def _share(counts: dict[str, Any]) -> str:
    total = sum(v for v in counts.values() if isinstance(v, int))
    return ", ".join(
        f"{k} {v} ({v / total:.0%})" if isinstance(v, int) and total else f"{k} {v}"
        for k, v in counts.items()
    )


def _representativeness(dataset: dict[str, Any]) -> str | None:
    demo = dataset.get("demographics") or {}
    if not demo:
        return None
    parts = [f"{group}: {_share(counts)}" for group, counts in demo.items() if isinstance(counts, dict)]
    return (
        f"Training dataset (all splits), {demo.get('subjects', '?')} subjects; "
        + "; ".join(parts)
        + f"; birth date recorded for {demo.get('birth_recorded', '?')}. Language, sexual orientation, gender "
        "identity, social determinants and health status assessments are not summarized."
    )


def _inputs(version: ModelVersion) -> str | None:
    found = version.artifacts.get("input_variables") or {}
    if not found or all(v is None for v in found.values()):
        return None
    label: dict[bool | None, list[str]] = {True: [], False: [], None: []}
    for variable, seen in found.items():
        label[seen].append(variable.replace("_", " "))
    return (
        f"In the model's vocabulary (used as input features): {', '.join(label[True]) or 'none'}. "
        f"Not found by code prefix: {', '.join(label[False]) or 'none'}. "
        f"Cannot be told from the vocabulary: {', '.join(label[None]) or 'none'}."
    )


def limitations(version: ModelVersion, policy: LifecyclePolicy) -> list[str]:
    """Known limitations the registry itself shows (the developer adds theirs as the ``known_risks`` fact)."""
    out = []
    if version.state in ("draft", "validated", "silent", "retired"):
        out.append(
            f"Not approved for showing predictions to clinicians: the version is in state '{version.state}'."
        )
    report, summary = _latest(_reports(version, policy.validated.report_kind, setting="internal"))
    if report is None:
        out.append("No validation report is attached: its performance is unknown.")
    else:
        if summary.missing:
            out.append("The validation report lacks: " + "; ".join(summary.missing) + ".")
        failures = check_validation(version, policy)
        if failures:
            out.append(
                "Does not meet the lifecycle policy's validation thresholds: " + "; ".join(failures) + "."
            )
        small = [
            f"{s.attribute}={s.group} (n={s.n})"
            for s in summary.subgroups
            if s.n is not None and s.n < SMALL_SUBGROUP
        ]
        if small:
            out.append(
                f"Subgroup estimates rest on fewer than {SMALL_SUBGROUP} subjects for: {', '.join(small)}."
            )
    if not _reports(version, "external_validation", "validation", setting="external"):
        source = version.dataset.get("source") or version.dataset.get("dataset_name") or "its training source"
        out.append(
            f"Validated only on data from the same source as its training data ({source}); no external "
            "validation is recorded."
        )
    deid = version.dataset.get("deid")
    if deid is None:
        out.append(
            "The training dataset records no de-identification: treat the model as trained on identified data."
        )
    else:
        out.extend(deid.get("residual_risks") or [])
    return out


def _derived(version: ModelVersion, policy: LifecyclePolicy) -> dict[str, str | None]:
    """What the registry can say for each HTI-1 attribute (None: nothing)."""
    internal, summary = _latest(_reports(version, policy.validated.report_kind, setting="internal"))
    external, ext = _latest(_reports(version, "external_validation", "validation", setting="external"))
    local, loc = _latest(_reports(version, "local_validation", "validation", setting="local"))
    monitoring = version.latest_report(policy.pilot.monitoring_kind)
    task = summary.task if summary else None
    has_auroc = bool(summary and "auroc" in summary.metrics)
    doc = ext.document if ext else {}
    d: dict[str, str | None] = {key: None for key in hti1.BY_KEY}
    d["output_value"] = (
        f"A risk score: the predicted probability (0 to 1) of '{task}' for one patient at the "
        "prediction time."
        if task and has_auroc
        else None
    )
    d["output_type"] = "Prediction (a probability of a future outcome)." if has_auroc else None
    d["cautioned_use"] = (
        "Patients unlike the training population; settings other than the training data source "
        "(no external validation recorded)."
        if not external
        else None
    )
    d["known_risks"] = " ".join(limitations(version, policy)) or None
    d["inclusion_exclusion"] = _cohort_text(summary.document) if summary else None
    d["demographic_inputs"] = _inputs(version)
    d["demographic_representativeness"] = _representativeness(version.dataset)
    if policy.validated.require_no_four_fifths_flag:
        attrs = sorted({s.attribute for s in summary.subgroups}) if summary else []
        d["fairness_approach"] = (
            "Performance is validated per subgroup"
            + (f" ({', '.join(attrs)})" if attrs else "")
            + " with confidence intervals, and the lifecycle policy refuses the 'validated' state when the "
            "four-fifths rule is flagged (a subgroup's selection rate below 80% of the highest)."
        )
    if ext:
        d["external_data_source"] = doc.get("data_source") and str(doc["data_source"])
        d["external_tester"] = doc.get("conducted_by") and str(doc["conducted_by"])
        d["external_process"] = doc.get("method") and str(doc["method"])
        sizes = [f"{s.attribute}={s.group}: n={s.n}" for s in ext.subgroups if s.n is not None]
        d["external_representativeness"] = ("Subgroup sizes: " + ", ".join(sizes)) if sizes else None
        d["external_validity"] = _metrics_text(ext, external)
        d["external_fairness"] = _fairness_text(ext)
    if summary:
        d["internal_validity"] = _metrics_text(summary, internal)
        d["internal_fairness"] = _fairness_text(summary)
    if loc:
        d["local_validity"] = _metrics_text(loc, local)
        d["local_fairness"] = _fairness_text(loc)
    elif monitoring is not None:
        m = read_monitoring(monitoring.document)
        if m.metrics:
            shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in m.metrics.items())
            d["local_validity"] = f"{shown} over {m.days:g} days of monitoring (report {monitoring.id})"
    silent = (
        f"Before pilot use the version runs silently for at least {policy.pilot.min_silent_days} days, with "
        f"monitoring summaries recorded in the registry (at most {policy.pilot.max_alerts} alerts allowed)."
    )
    d["validity_monitoring"] = silent
    return d


def hti1_attributes(version: ModelVersion, policy: LifecyclePolicy) -> list[dict[str, Any]]:
    """All 31 attributes: supplied by a person, derived by the platform (fully or in part), or unknown."""
    derived = _derived(version, policy)
    out = []
    for number, attr in enumerate(hti1.ATTRIBUTES, start=1):
        supplied, platform = version.facts.get(attr.key), derived[attr.key]
        if supplied:
            status, value = "supplied", supplied + (f"\n\nPlatform record: {platform}" if platform else "")
        elif platform:
            status, value = ("partial" if attr.key in PARTIAL else "platform"), platform
        else:
            status, value = "unknown", None
        out.append(
            {
                "number": number,
                "key": attr.key,
                "cfr": attr.cfr,
                "group": attr.group,
                "group_title": attr.group_title,
                "attribute": attr.text,
                "status": status,
                "value": value,
                "owner": attr.owner,
                "note": {
                    "unknown": f"Unknown to the platform: the {attr.owner} must supply it.",
                    "partial": f"The platform's record only: the {attr.owner} must complete it.",
                }.get(status),
            }
        )
    return out


def build_card(version: ModelVersion, policy: LifecyclePolicy | None = None) -> dict[str, Any]:
    """The card as a JSON-ready dict (what every renderer draws from)."""
    policy = policy or load_policy()
    attrs = hti1_attributes(version, policy)
    by_key = {a["key"]: a for a in attrs}
    report, summary = _latest(_reports(version, policy.validated.report_kind, setting="internal"))
    validation = None
    if report is not None:
        validation = {
            "report_id": report.id,
            "sha256": report.sha256,
            "attached_by": report.attached_by,
            "attached_at": report.attached_at.isoformat(),
            "task": summary.task,
            "setting": summary.setting,
            "n": summary.n,
            "primary_model": summary.primary,
            "models": {m: {k: vars(v) for k, v in metrics.items()} for m, metrics in summary.models.items()},
            "subgroups": [
                {
                    "attribute": s.attribute,
                    "group": s.group,
                    "n": s.n,
                    "positives": s.positives,
                    "metrics": {k: vars(v) for k, v in s.metrics.items()},
                }
                for s in summary.subgroups
            ],
            "fairness": summary.fairness,
            "four_fifths_flag": summary.four_fifths_flag,
            "missing": summary.missing,
            "gate_failures": check_validation(version, policy),
        }
    roles = version.artifacts.get("roles") or {}
    files = version.artifacts.get("files") or {}
    return {
        "card_schema": CARD_SCHEMA,
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "generated_from": "the ClinFM governance registry; regenerate it, do not edit it",
        "model": {
            "id": version.id,
            "name": version.name,
            "version": version.version,
            "state": version.state,
            "organization": version.org_id,
            "registered_at": version.created_at.isoformat(),
            "registered_by": version.created_by,
            "code_version": version.code_version,
            "git_commit": version.git_commit,
            "summary": version.facts.get("summary"),
            "artifacts": {
                role: {"path": path, "sha256": files[path]["sha256"]} for role, path in roles.items()
            },
            "files": len(files),
            "manifest_sha256": version.artifacts.get("manifest_sha256"),
            "training_config_source": version.training_config.get("source"),
        },
        "intended_use": {
            k: by_key[k] for k in ("intended_use", "intended_users", "intended_population", "decision_role")
        },
        "out_of_scope": by_key["cautioned_use"],
        "training_data": version.dataset,
        "validation": validation,
        "limitations": limitations(version, policy)
        + ([version.facts["known_risks"]] if version.facts.get("known_risks") else []),
        "lifecycle": [t.model_dump(mode="json") for t in version.transitions],
        "hti1_source_attributes": attrs,
        "hti1_unknown": [a["key"] for a in attrs if a["status"] == "unknown"],
    }


# --- rendering ---------------------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def _metric(m: dict[str, Any] | None) -> str:
    if not m:
        return "—"
    ci = f" ({m['lo']:.3f}–{m['hi']:.3f})" if m.get("lo") is not None and m.get("hi") is not None else ""
    return f"{m['value']:.3f}{ci}"


def render_markdown(card: dict[str, Any]) -> str:
    m, data, val = card["model"], card["training_data"], card["validation"]
    lines = [
        f"# Model card: {m['name']} v{m['version']}",
        "",
        f"> Generated from {card['generated_from']} ({card['generated_at']}).",
        "",
    ]
    if m["summary"]:
        lines += [m["summary"], ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| Version id | `{m['id']}` |",
        f"| Organization | {m['organization']} |",
        f"| Lifecycle state | **{m['state']}** |",
        f"| Registered | {m['registered_at']} by {m['registered_by']} |",
        f"| Code | clinfm {m['code_version']}, commit {m['git_commit'] or 'unknown'} |",
        f"| Files | {m['files']} (manifest sha256 `{m['manifest_sha256']}`) |",
    ]
    lines += [
        f"| {role.capitalize()} | `{a['path']}` sha256 `{a['sha256']}` |"
        for role, a in m["artifacts"].items()
    ]
    lines += ["", "## Intended use and users", ""]
    for attr in card["intended_use"].values():
        lines.append(f"- **{attr['attribute']}**: {attr['value'] or attr['note']}")
    lines += [
        "",
        "## Out-of-scope use",
        "",
        card["out_of_scope"]["value"] or card["out_of_scope"]["note"],
        "",
    ]
    lines += [
        "## Training data and de-identification",
        "",
        f"- Dataset: {data.get('dataset_name') or '?'} (source {data.get('source') or '?'}), `{data['path']}`",
        (
            f"- Content sha256 of `data/*.parquet`: `{data['content_sha256']}` ({data['shards']} shard(s), "
            f"{data['events']:,} events)"
        ),
        f"- Row counts: {json.dumps(data.get('row_counts') or {})}",
    ]
    deid = data.get("deid")
    if deid:
        k = (deid.get("k_anonymity") or {}).get("k")
        lines.append(
            f"- De-identification: policy **{deid.get('policy')}**, k-anonymity k = {k}, intervals preserved: "
            f"{deid.get('intervals_preserved')}"
        )
    else:
        lines.append("- De-identification: **none recorded** for this dataset")
    lines += ["", "## Validation", ""]
    if val is None:
        lines.append("No validation report is attached.")
    else:
        lines += [
            (
                f"Task **{val['task'] or '?'}**, {val['setting']} test data, n = {val['n'] or '?'}; report "
                f"{val['report_id']} (sha256 `{val['sha256'][:16]}`) attached by {val['attached_by']}."
            ),
            "",
        ]
        names = sorted({k for metrics in val["models"].values() for k in metrics})
        lines += ["| Model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for model, metrics in val["models"].items():
            star = " (this version)" if model == val["primary_model"] else ""
            lines.append(f"| {model}{star} | " + " | ".join(_metric(metrics.get(n)) for n in names) + " |")
        if val["subgroups"]:
            sub_names = sorted({k for s in val["subgroups"] for k in s["metrics"]})
            lines += [
                "",
                "| Attribute | Group | n | " + " | ".join(sub_names) + " |",
                "|---" * (len(sub_names) + 3) + "|",
            ]
            for s in val["subgroups"]:
                lines.append(
                    f"| {s['attribute']} | {s['group']} | {s['n'] if s['n'] is not None else '—'} | "
                    + " | ".join(_metric(s["metrics"].get(n)) for n in sub_names)
                    + " |"
                )
        flag = val["four_fifths_flag"]
        lines += [
            "",
            f"Four-fifths rule: {'unknown' if flag is None else 'FLAGGED' if flag else 'not flagged'}.",
        ]
        if val["missing"]:
            lines.append(f"Missing from the report: {'; '.join(val['missing'])}.")
        lines.append(
            "Lifecycle validation gate: "
            + ("passes." if not val["gate_failures"] else "fails: " + "; ".join(val["gate_failures"]) + ".")
        )
    lines += ["", "## Known limitations", ""] + [f"- {x}" for x in card["limitations"]]
    lines += ["", "## Lifecycle", ""]
    lines += [
        f"- {t['created_at']}: {t['from_state']} → **{t['to_state']}** by {t['actor']}"
        + (f" (approved as {t['approver_role']})" if t["approver_role"] else "")
        + f": {t['reason']}"
        for t in card["lifecycle"]
    ] or ["- Registered; no transitions yet."]
    lines += [
        "",
        "## ONC HTI-1 source attributes (45 CFR 170.315(b)(11)(iv)(B))",
        "",
        (
            f"{31 - len(card['hti1_unknown'])} of 31 filled (in full or in part); statuses: supplied by a person, "
            "platform (from the registry), partial (the owner must complete), unknown (the owner must supply)."
        ),
        "",
        "| # | Group | Attribute | Status | Value | Responsible |",
        "|---|---|---|---|---|---|",
    ]
    for a in card["hti1_source_attributes"]:
        value = a["value"] if a["status"] != "unknown" else f"*{a['note']}*"
        lines.append(
            f"| {a['number']} | ({a['group']}) {a['group_title']} | {_cell(a['attribute'])} "
            f"[{a['cfr'].removeprefix('45 CFR ')}] | {a['status']} | {_cell(value)} | {a['owner']} |"
        )
    return "\n".join(lines) + "\n"


_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
"""Raw HTML in a card's values is shown as text, never interpreted."""
_PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top;text-align:left}
code{font-size:.85em}</style></head><body>
{{ body }}
</body></html>
""")


def render_html(card: dict[str, Any]) -> str:
    """The Markdown card (:func:`render_markdown`, the one renderer) as a standalone HTML page."""
    m = card["model"]
    body = Markup(_MARKDOWN.render(render_markdown(card)))  # markdown-it escapes every value (html=False)
    return _PAGE.render(title=f"Model card: {m['name']} v{m['version']}", body=body)


def render_card(
    version_id: str,
    fmt: str = "md",
    *,
    org: str | None = None,
    policy: LifecyclePolicy | None = None,
    db: DB = None,
) -> str:
    """The card of ``version_id`` as ``md``, ``html`` or ``json``."""
    if fmt not in FORMATS:
        raise ValueError(f"card format {fmt!r} is not one of {FORMATS}")
    card = build_card(get_model(version_id, org=org, db=db), policy)
    if fmt == "json":
        return json.dumps(card, indent=2, default=str) + "\n"
    return render_markdown(card) if fmt == "md" else render_html(card)


def write_card(
    version_id: str,
    out_dir: str | Path,
    *,
    org: str | None = None,
    policy: LifecyclePolicy | None = None,
    db: DB = None,
) -> dict[str, Path]:
    """Write ``model-card.md``, ``.html`` and ``.json`` of ``version_id`` to ``out_dir``; returns the paths by format."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = build_card(get_model(version_id, org=org, db=db), policy)
    texts = {
        "md": render_markdown(card),
        "html": render_html(card),
        "json": json.dumps(card, indent=2, default=str) + "\n",
    }
    paths = {}
    for fmt, text in texts.items():
        paths[fmt] = out / f"model-card.{fmt}"
        paths[fmt].write_text(text)
    return paths
