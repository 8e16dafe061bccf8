"""The de-identification report: what changed per identifier type, k-anonymity, and residual risks.

Holds counts and quasi-identifier classes only (birth year, sex, ZIP3), never a name, note or date.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

from clinfm import __version__

K_THRESHOLD = 5
"""Equivalence classes smaller than this are listed as re-identification risks (a common choice)."""


def k_anonymity(qi: pl.DataFrame, smallest: int = 10) -> dict:
    """k over the quasi-identifiers present (columns with any value), and the smallest classes."""
    columns = [c for c in ("birth_year", "sex", "zip3") if c in qi.columns and qi[c].is_not_null().any()]
    if not columns or qi.is_empty():
        return {"quasi_identifiers": columns, "k": None, "classes": 0}
    classes = qi.group_by(columns).len().sort(["len", *columns], nulls_last=True)
    small = classes.filter(pl.col("len") < K_THRESHOLD)
    return {
        "quasi_identifiers": columns,
        "k": int(classes["len"].min()),
        "classes": classes.height,
        "subjects": qi.height,
        "classes_below_threshold": small.height,
        "subjects_in_classes_below_threshold": int(small["len"].sum()) if small.height else 0,
        "threshold": K_THRESHOLD,
        "smallest_classes": [
            {**{c: row[c] for c in columns}, "size": int(row["len"])} for row in classes.head(smallest).iter_rows(named=True)
        ],
    }


def residual_risks(policy: str, counts, k: dict) -> list[str]:
    """What a human reviewer should look at before the data leaves the building."""
    risks = []
    if counts.text_values_scanned:
        risks.append(
            f"{counts.text_values_scanned:,} free-text values were de-identified automatically "
            f"({counts.text_values_changed:,} changed). Automatic note scrubbing does not reach 100% recall: "
            "review a random sample of notes before sharing."
        )
    if k.get("classes_below_threshold"):
        risks.append(
            f"{k['classes_below_threshold']} quasi-identifier classes ({k['subjects_in_classes_below_threshold']} "
            f"subjects) have fewer than {K_THRESHOLD} members (k = {k['k']}); consider coarsening birth year or "
            "suppressing these subjects before external release."
        )
    if policy == "shift":
        risks.append(
            "Dates are shifted, not removed: this is not Safe Harbor. Intervals, ages, seasons (approximately) "
            "and the order of events are real. Use for model building under a data use agreement or expert "
            "determination; use --policy safe-harbor for release under Safe Harbor."
        )
    else:
        risks.append("Safe Harbor keeps only years: intervals within a year are lost, so timing-dependent "
                     "models and tasks cannot be trained on this copy.")  # fmt: skip
    risks.append(
        "Rare codes and unusual combinations of codes can identify a person even without direct identifiers; "
        "codes seen in very few subjects are not suppressed by this step."
    )
    risks.append("The source dataset's quarantine.parquet (raw rejected values) is not copied; keep it under the "
                 "same protection as the identified source.")  # fmt: skip
    return risks


def build_report(policy: str, counts, qi: pl.DataFrame, fingerprint: str, source_name: str) -> dict:
    k = k_anonymity(qi)
    return {
        "clinfm_version": __version__,
        "source_dataset": source_name,
        "policy": policy,
        "secret_fingerprint": fingerprint,
        "intervals_preserved": policy == "shift",
        "changed": {
            "subject_ids_pseudonymized": counts.subjects_pseudonymized,
            "event_dates_shifted": counts.events_dates_shifted,
            "event_dates_truncated_to_year": counts.events_dates_truncated_to_year,
            "events_dropped_date_out_of_range": counts.events_dropped_date_out_of_range,
            "birth_dates_collapsed_age_over_89": counts.births_collapsed_over_89,
            "zip_codes_truncated_to_zip3": counts.zip_codes_truncated,
            "zip_codes_restricted_to_000": counts.zip_codes_zeroed_restricted,
            "text_values_scanned": counts.text_values_scanned,
            "text_values_changed": counts.text_values_changed,
            "note_spans_by_label": dict(sorted(counts.note_spans_by_label.items())),
        },
        "k_anonymity": k,
        "residual_risks": residual_risks(policy, counts, k),
    }


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    json_path, html_path = folder / "deid_report.json", folder / "deid_report.html"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


def _table(rows: list[tuple], header: tuple) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict) -> str:
    changed = [(k.replace("_", " "), v) for k, v in report["changed"].items() if k != "note_spans_by_label"]
    spans = sorted(report["changed"]["note_spans_by_label"].items())
    k = report["k_anonymity"]
    qi_cols = k.get("quasi_identifiers", [])
    small = [tuple(c.get(q) for q in qi_cols) + (c["size"],) for c in k.get("smallest_classes", [])]
    risks = "".join(f"<li>{html.escape(r)}</li>" for r in report["residual_risks"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>De-identification report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
th{{background:#f3f3f3}}.warn{{background:#fff6e0;padding:.5rem 1rem;border-left:4px solid #e0a000}}</style></head>
<body><h1>De-identification report</h1>
<p>Source dataset <b>{html.escape(report['source_dataset'])}</b>; policy <b>{html.escape(report['policy'])}</b>;
key fingerprint <code>{html.escape(report['secret_fingerprint'])}</code>; ClinFM {html.escape(report['clinfm_version'])}.
Intervals between events {'are preserved' if report['intervals_preserved'] else 'are <b>not</b> preserved (dates kept to the year)'}.</p>
<h2>What was changed</h2>{_table(changed, ("identifier", "count"))}
<h2>Note spans replaced, by label</h2>{_table(spans, ("label", "spans")) if spans else "<p>No free text in this dataset.</p>"}
<h2>k-anonymity</h2><p>Quasi-identifiers: {html.escape(", ".join(qi_cols) or "none")}; k = <b>{k.get('k')}</b> over
{k.get('classes', 0)} classes; {k.get('classes_below_threshold', 0)} classes below {k.get('threshold', K_THRESHOLD)}.</p>
<h3>Smallest classes</h3>{_table(small, tuple(qi_cols) + ("subjects",)) if small else "<p>None.</p>"}
<h2>Residual risks for a human to review</h2><div class="warn"><ul>{risks}</ul></div>
</body></html>
"""
