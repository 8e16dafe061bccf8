"""CDS Hooks 2.0 cards from predictions and medication checks, and the prefetch data turned back into a Bundle.

A card's ``summary`` stays under 140 characters; ``indicator`` is ``critical``, ``warning`` or ``info``;
``source`` names the model (or knowledge base) and links its card; ``detail`` is GitHub-flavoured Markdown.
"""

from __future__ import annotations

import uuid
from typing import Any

from clinfm.serve.schemas import PredictResponse

SUMMARY_MAX = 139
RISK_WARNING, RISK_CRITICAL = 0.20, 0.50
"""Probability at or above which a risk card is a warning / critical (shown with the interval either way)."""
SEVERITY_INDICATOR = {"contraindicated": "critical", "major": "critical", "moderate": "warning", "minor": "info", "info": "info"}


def summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def pct(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.01 else f"{100 * p:.1f}%"


def risk_cards(r: PredictResponse, source_label: str, card_url: str, patient_url: str | None, top: int = 3) -> list[dict[str, Any]]:
    """One card per outcome (highest risk first, at most ``top``); the expected next diagnoses in the first."""
    cards = []
    for i, risk in enumerate(sorted(r.risks, key=lambda x: -x.probability)[:top]):
        indicator = "critical" if risk.probability >= RISK_CRITICAL else "warning" if risk.probability >= RISK_WARNING else "info"
        lines = [f"**{risk.description}** within {r.horizon_days} days: **{pct(risk.probability)}** "
                 f"(95% CI {pct(risk.ci_low)}–{pct(risk.ci_high)}), from {r.n_samples} simulated futures."]  # fmt: skip
        if risk.evidence:
            lines.append("\nWhat in the record drove it:")
            for e in risk.evidence[:5]:
                when = f"{e.time:%Y-%m-%d}: " if e.time else ""
                effect = f" ({e.effect:+.1%})" if e.effect is not None else ""
                lines.append(f"- {when}{e.description}{effect}")
        if i == 0 and r.next_diagnoses:
            lines.append("\nExpected next diagnoses:")
            lines += [f"- {d.description}: {pct(d.probability)}" for d in r.next_diagnoses[:5]]
        if r.warnings:
            lines.append("\n_" + " ".join(r.warnings) + "_")
        links = [{"label": "Model card", "url": card_url, "type": "absolute"}]
        if patient_url:
            links.append({"label": "Timeline and risks in ClinFM", "url": patient_url, "type": "absolute"})
        cards.append({
            "uuid": str(uuid.uuid4()),
            "summary": summary(f"{risk.description}: {pct(risk.probability)} risk in {r.horizon_days} d "
                               f"(95% CI {pct(risk.ci_low)}–{pct(risk.ci_high)})"),
            "indicator": indicator,
            "detail": "\n".join(lines),
            "source": {"label": source_label, "url": card_url},
            "links": links,
        })  # fmt: skip
    return cards


def safety_cards(check: dict[str, Any], source_label: str, source_url: str, order_ids: dict[str, str]) -> list[dict[str, Any]]:
    """One card per finding of a medication check; a suggestion to remove the draft order it concerns."""
    cards = []

    def card(severity: str, text: str, detail: str, source: str, meds: list[str]) -> None:
        suggestions = []
        for med in meds:
            rid = order_ids.get(med)
            if rid:
                suggestions.append({"label": f"Remove the draft order {rid}", "uuid": str(uuid.uuid4()),
                                    "isRecommended": severity in ("contraindicated", "major"),
                                    "actions": [{"type": "delete", "description": f"Remove {med}", "resourceId": [rid]}]})  # fmt: skip
        c: dict[str, Any] = {
            "uuid": str(uuid.uuid4()), "summary": summary(text), "indicator": SEVERITY_INDICATOR.get(severity, "info"),
            "detail": detail + (f"\n\nSource: {source}" if source else ""),
            "source": {"label": source_label, "url": source_url},
        }  # fmt: skip
        if suggestions:
            c["suggestions"] = suggestions
            c["selectionBehavior"] = "at-most-one"
        cards.append(c)

    for a in check.get("allergy_conflicts", []):
        card(a["severity"], f"{a['medication']}: {a['relation']} as allergy to {a['allergy']}",
             f"{a['risk']}", a.get("source", ""), [a["medication"]])  # fmt: skip
    for x in check.get("interactions", []):
        card(x["severity"], f"Interaction {x['ingredient_a']} + {x['ingredient_b']} ({x['severity']})",
             f"{x['effect']}\n\n**Management:** {x['management']}", x.get("source", ""), list(x.get("medications", [])))  # fmt: skip
    for f in check.get("renal_flags", []):
        card(f["severity"], f"{f['medication']}: eGFR {f['egfr']:.0f} ({f['rule']}) - {f['action']}",
             f"{f['action']}", f.get("source", ""), [f["medication"]])  # fmt: skip
    for d in check.get("duplicates", []):
        card(d["severity"], f"Duplicate therapy: {', '.join(d['medications'])}", d["reason"], "", list(d["medications"]))
    return cards


def prefetch_bundle(prefetch: dict[str, Any], patient_id: str) -> dict[str, Any] | None:
    """The prefetched resources (resources or search-result Bundles) as one Bundle for the FHIR converter."""
    entries: list[dict[str, Any]] = []
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            entries += [e for e in value.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        elif "resourceType" in value:
            entries.append({"resource": value})
    if not any(e["resource"].get("resourceType") == "Patient" for e in entries):
        return None
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
