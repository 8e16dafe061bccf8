"""Benchmark of the clinical assistant (issue 16), each figure against a baseline measured in the same run.

* load: a fresh process loading the embedded GGUF into an empty cache (de-quantize + save) vs a fresh process
  loading the cached safetensors (target: cached < 5 s);
* prefill and decode tokens/s of a bare ``model.generate`` on a full-chart prompt, and the assistant's
  constrained decode tokens/s on the same prompt (target: >= 0.8x the bare loop);
* ``ask`` latency p50/p95 over ``--questions`` questions with a full chart, and the parse rate of the answers and of
  forced tool calls (target: 100%);
* the verifier on statements with planted errors (wrong value, unit, date, another patient's citation, a
  citation that does not exist) over a seeded synthetic cohort the verifier was not developed on, plus the
  correct statements (target: >= 99% caught, none of the correct removed).

    python benchmarks/assist.py --questions 20          # everything
    python benchmarks/assist.py --skip-model            # the verifier only (seconds)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from clinfm.assist.backends import combined_schema, split_tool_reply  # noqa: E402
from clinfm.assist.chart import Chart, build_chart, format_number  # noqa: E402
from clinfm.assist.verify import Statement, check_statement  # noqa: E402
from clinfm.schema import Event, Subject  # noqa: E402

QUESTIONS = [
    "What is her latest creatinine?", "How is the kidney function trending?", "What is the latest HbA1c?",
    "What allergies are recorded?", "What medications is the patient on?", "What chronic problems are recorded?",
    "What was the last blood pressure?", "Is the potassium abnormal?", "What is the latest sodium?",
    "What is the hemoglobin?", "Summarize the active problems.", "When was the last visit?",
    "What was the last glucose?", "Is there any abnormal lab?", "What is the heart rate?",
    "Which diabetes medication is recorded?", "What did the last note say?", "Has the creatinine risen?",
    "What is the body weight?", "Any penicillin allergy?",
]  # fmt: skip
LABS = [("LOINC//2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 4.0, 1),
        ("LOINC//4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 11.0, 1),
        ("LOINC//2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 2.8, 6.2, 1),
        ("LOINC//2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 125, 150, 0),
        ("LOINC//718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 7, 17, 1),
        ("LOINC//2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 60, 300, 0),
        ("LOINC//8480-6", "Systolic blood pressure", "mm[Hg]", 90, 190, 0),
        ("LOINC//8867-4", "Heart rate", "/min", 45, 130, 0),
        ("LOINC//29463-7", "Body weight", "kg", 45, 140, 1)]  # fmt: skip
PROBLEMS = [("ICD10CM//E11.9", "Type 2 diabetes mellitus without complications"), ("ICD10CM//I10", "Essential (primary) hypertension"),
            ("ICD10CM//N18.3", "Chronic kidney disease, stage 3"), ("ICD10CM//J44.9", "Chronic obstructive pulmonary disease"),
            ("ICD10CM//I48.91", "Unspecified atrial fibrillation")]  # fmt: skip
MEDS = [("RxNorm//860975", "Metformin hydrochloride 500 MG Oral Tablet"), ("RxNorm//314076", "lisinopril 10 MG Oral Tablet"),
        ("RxNorm//855332", "Warfarin Sodium 5 MG Oral Tablet"), ("RxNorm//197361", "amlodipine 5 MG Oral Tablet")]  # fmt: skip
OTHER_UNITS = ["mg/dL", "mmol/L", "g/dL", "%", "kg", "mm[Hg]", "umol/L", "ng/mL"]


# --- a seeded synthetic cohort (not the tests' dataset the verifier was developed on) ---------------------------
def synthetic_subject(sid: int, rng: random.Random) -> tuple[Subject, dict[str, str]]:
    start = dt.datetime(2015, 1, 1) + dt.timedelta(days=rng.randrange(0, 1500))
    events = [Event(None, rng.choice(["GENDER//F", "GENDER//M"])),
              Event(dt.datetime(rng.randrange(1935, 1995), rng.randrange(1, 13), 1), "MEDS_BIRTH")]  # fmt: skip
    desc = {}
    for code, name in rng.sample(PROBLEMS, 3):
        events.append(Event(start + dt.timedelta(days=rng.randrange(0, 300)), code))
        desc[code] = name
    for code, name in rng.sample(MEDS, 2):
        events.append(Event(start + dt.timedelta(days=rng.randrange(0, 300)), code))
        desc[code] = name
    for code, name, unit, lo, hi, decimals in rng.sample(LABS, 6):
        desc[code] = name
        for k in range(rng.randrange(1, 4)):
            value = round(rng.uniform(lo, hi), decimals)
            events.append(Event(start + dt.timedelta(days=60 * k + rng.randrange(0, 50), hours=9), code, value, unit=unit))
    events.sort(key=lambda e: (e.time is not None, e.time or dt.datetime.min))
    return Subject(sid, events), desc


def correct_statement(item, rng: random.Random, dated: bool = False) -> Statement:
    date = item.time.date().isoformat() if item.time else ""
    if item.value is not None:
        forms = ["{d} was {v} {u} on {t}.", "On {t} the {d} was {v} {u}."] + ([] if dated else ["Latest {d}: {v} {u}."])
        if item.derived.get("previous") is not None and not dated:
            word = "rose" if item.value > item.derived["previous"] else "fell"
            forms.append(f"{{d}} {word} from {format_number(item.derived['previous'])} on "
                         f"{item.derived['previous_time'].date().isoformat()} to {{v}} {{u}} on {{t}}.")
        text = rng.choice(forms)
        return Statement(text=text.format(d=item.description.split(" [")[0], v=format_number(item.value), u=item.unit,
                                          t=date), citations=[item.cid])  # fmt: skip
    return Statement(text=f"{item.description} is recorded on {date}.", citations=[item.cid])


def planted(kind: str, item, chart: Chart, other: Chart, rng: random.Random) -> Statement:
    s = correct_statement(item, rng, dated=kind == "date")  # a planted date error needs a date to change
    if kind == "value":
        wrong = item.value
        while format_number(wrong) == format_number(item.value):  # a planted error must change the value
            wrong = item.value * rng.choice([0.5, 0.7, 1.3, 1.6, 2.0]) + rng.choice([1, 2, 3])
        own = f"{format_number(item.value)} {item.unit}"  # the event's own value, next to its unit
        return Statement(text=s.text.replace(own, f"{format_number(wrong)} {item.unit}"), citations=s.citations)
    if kind == "unit":
        own = f"{format_number(item.value)} {item.unit}"
        unit = rng.choice([u for u in OTHER_UNITS if u != item.unit])
        return Statement(text=s.text.replace(own, f"{format_number(item.value)} {unit}"), citations=s.citations)
    if kind == "date":
        d = item.time.date().isoformat()
        shifted = (item.time + dt.timedelta(days=rng.choice([-400, -30, -1, 1, 7, 365]))).date().isoformat()
        return Statement(text=s.text.replace(d, shifted), citations=s.citations)
    if kind == "other_patient":
        twin = [i for i in other.items if i.code == item.code] or other.items
        return Statement(text=s.text, citations=[rng.choice(twin).cid])
    return Statement(text=s.text, citations=["e" + "".join(rng.choice("0123456789abcdef") for _ in range(7))])


def bench_verifier(n_subjects: int, seed: int) -> dict:
    rng = random.Random(seed)
    charts = []
    for sid in range(n_subjects):
        subject, desc = synthetic_subject(10_000 + sid, rng)
        charts.append(build_chart(subject, None, desc))
    correct_removed = correct_total = 0
    caught = {k: [0, 0] for k in ("value", "unit", "date", "other_patient", "nonexistent")}
    examples = []
    for i, chart in enumerate(charts):
        other = charts[(i + 1) % len(charts)]
        items = [x for x in chart.items if x.section in ("lab", "vital", "problem", "medication")]
        for item in items:
            good = correct_statement(item, rng)
            correct_total += 1
            if check_statement(good, chart):
                correct_removed += 1
                examples.append({"correct_removed": good.text, "why": check_statement(good, chart)})
            for kind in caught:
                if kind in ("value", "unit") and item.value is None:
                    continue
                bad = planted(kind, item, chart, other, rng)
                caught[kind][1] += 1
                if check_statement(bad, chart):
                    caught[kind][0] += 1
                elif len(examples) < 20:
                    examples.append({"missed": kind, "text": bad.text, "cited": chart.by_id[bad.citations[0]].line()
                                     if bad.citations[0] in chart.by_id else None})
    total = sum(n for _, n in caught.values())
    hit = sum(c for c, _ in caught.values())
    return {"subjects": n_subjects, "seed": seed, "correct_statements": correct_total, "correct_removed": correct_removed,
            "planted_errors": total, "caught": hit, "catch_rate": hit / total,
            "by_kind": {k: {"caught": c, "planted": n, "rate": c / n} for k, (c, n) in caught.items()},
            "examples": examples[:20]}  # fmt: skip


# --- the embedded model --------------------------------------------------------------------------------------
LOAD_SNIPPET = ("import time,sys; t=time.perf_counter(); import torch, transformers, xgrammar; "
                "from clinfm.assist.local import load; i=time.perf_counter()-t; "
                "m=load(cache_dir=sys.argv[1]); print(i, m.load_seconds, m.from_cache)")


def bench_load() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, cache], capture_output=True, text=True, check=True)
            imports, inner, from_cache = out.stdout.split()[-3:]
            runs.append({"process_s": time.perf_counter() - t0, "import_s": float(imports), "load_s": float(inner),
                         "from_cache": from_cache == "True"})  # fmt: skip
    return {"first": runs[0], "cached": runs[1], "speedup": runs[0]["load_s"] / runs[1]["load_s"]}


def decode_rates(backend, messages: list, shown: list[str], tokens: int, reps: int) -> tuple:
    """Prefill, bare ``model.generate`` decode and the assistant's constrained decode on the same prompt, run
    alternately ``reps`` times; the best of each (the machine's load only ever slows a run down)."""
    import torch

    from clinfm.assist.agent import answer_schema

    lm = backend.loaded
    enc = backend.encode(messages)
    n_prompt = int(enc["input_ids"].shape[1])
    schema = answer_schema(shown, 5, 400)
    backend.grammar(schema)  # compiled once, as in a server
    prefill, bare, constrained, n_c = [], [], [], 0
    with torch.inference_mode():
        lm.model.generate(**enc, max_new_tokens=2, do_sample=False)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            lm.model.generate(**enc, max_new_tokens=1, do_sample=False)
            p = time.perf_counter() - t0
            prefill.append(p)
            t0 = time.perf_counter()
            lm.model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            bare.append((tokens - 1) / max(time.perf_counter() - t0 - p, 1e-9))
            c = backend.complete(messages, schema=schema, max_tokens=tokens)
            n_c = c.usage.completion_tokens
            constrained.append((n_c - 1) / max(c.seconds - p, 1e-9))
    return n_prompt, min(prefill), max(bare), max(constrained), n_c


def bench_model(n_questions: int, decode_tokens: int, dataset: Path | None, reps: int = 3) -> dict:
    import torch

    from clinfm.assist import AskOptions, ToolRegistry, ask
    from clinfm.assist.agent import SYSTEM_PROMPT
    from clinfm.assist.local import LocalBackend

    backend = LocalBackend(timeout_s=3600)
    if dataset:
        from clinfm.data.store import SubjectDatabase

        db = SubjectDatabase(dataset)
        sid = max(list(db)[:200], key=lambda s: len(db.table(s)))
        subject, desc = db[sid], db.descriptions()
    else:
        subject, desc = synthetic_subject(1, random.Random(7))
    opts = AskOptions(use_tools=False, max_steps=2, chart_tokens=1200, answer_tokens=200, max_statements=2, statement_chars=100)
    chart = build_chart(subject, None, desc)
    context, shown = chart.render(QUESTIONS[0], opts.chart_tokens, backend.count_tokens)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": f"{context}\nQuestion: {QUESTIONS[0]}"}]
    n_prompt, prefill_s, bare_decode, constrained_decode, n_constrained = decode_rates(backend, messages, shown, decode_tokens, reps)
    print(f"  prefill {n_prompt} tokens {prefill_s:.1f} s; decode bare {bare_decode:.2f} tok/s, constrained "
          f"{constrained_decode:.2f} tok/s (best of {reps}, alternating)", flush=True)
    # ask over the questions; forced tool calls over the same questions
    latencies, parsed, tool_ok, tool_n, outcomes = [], 0, 0, 0, []
    questions = (QUESTIONS * 2)[:n_questions]
    for q in questions:
        ch = build_chart(subject, None, desc)
        t0 = time.perf_counter()
        a = ask(q, ch, backend, options=opts)
        latencies.append(time.perf_counter() - t0)
        print(f"  ask {q!r}: {latencies[-1]:.1f} s, kept {len(a.statements)}, removed {len(a.removed)}, "
              f"abstained {a.abstained}", flush=True)
        ok = not any("did not parse" in w for w in a.warnings) and (a.abstention_reason or "").find("could not be parsed") < 0
        parsed += ok
        outcomes.append({"question": q, "kept": len(a.statements), "removed": len(a.removed), "abstained": a.abstained,
                         "reason": a.abstention_reason, "latency_s": round(latencies[-1], 2),
                         "tokens": a.usage.total_tokens})  # fmt: skip
        reg = ToolRegistry(ch)
        ctx, _ = ch.render(q, 600, backend.count_tokens)
        msgs = [{"role": "system", "content": "Call one tool to look up what the question needs."},
                {"role": "user", "content": f"{ctx}\nQuestion: {q}"}]  # fmt: skip
        tc = backend.complete(msgs, schema=combined_schema(None, reg.specs), tools=None, max_tokens=60)
        _, calls = split_tool_reply(tc.content, reg.specs)
        tool_n += 1
        if calls:
            try:
                reg.call(calls[0])
                tool_ok += 1
            except Exception:  # noqa: BLE001 - counted as a failed parse
                pass
    lat = sorted(latencies)
    return {
        "prompt_tokens": n_prompt, "prefill_s": prefill_s, "prefill_tok_s": n_prompt / prefill_s,
        "bare_decode_tok_s": bare_decode, "assistant_decode_tok_s": constrained_decode,
        "decode_ratio": constrained_decode / bare_decode, "decode_tokens": decode_tokens,
        "constrained_tokens": n_constrained, "decode_reps": reps,
        "ask_p50_s": statistics.median(lat), "ask_p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))],
        "questions": len(questions), "answer_parse_rate": parsed / len(questions),
        "tool_call_parse_rate": tool_ok / tool_n, "threads": torch.get_num_threads(), "outcomes": outcomes,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--decode-tokens", type=int, default=48)
    ap.add_argument("--verifier-subjects", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261208)
    ap.add_argument("--dataset", type=Path, default=None, help="A MEDS dataset for the model runs (default: synthetic).")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--load-only", action="store_true", help="Only the load figures (and the verifier).")
    ap.add_argument("--reps", type=int, default=3, help="Alternating bare/constrained decode runs (best of each).")
    args = ap.parse_args()
    result: dict = {"verifier": bench_verifier(args.verifier_subjects, args.seed)}
    v = result["verifier"]
    print(f"verifier: {v['caught']}/{v['planted_errors']} planted errors caught ({v['catch_rate']:.2%}); "
          f"{v['correct_removed']}/{v['correct_statements']} correct statements removed")
    for k, x in v["by_kind"].items():
        print(f"  {k:<14} {x['caught']}/{x['planted']} ({x['rate']:.2%})")
    if not args.skip_load and not args.skip_model:
        result["load"] = bench_load()
        ld = result["load"]
        print(f"load: first {ld['first']['load_s']:.1f} s (de-quantize + cache), cached {ld['cached']['load_s']:.1f} s "
              f"({ld['speedup']:.1f}x faster); imports (torch, transformers, xgrammar) {ld['cached']['import_s']:.1f} s "
              "more per process")  # fmt: skip
    if not args.skip_model and not args.load_only:
        result["model"] = bench_model(args.questions, args.decode_tokens, args.dataset, args.reps)
        m = result["model"]
        print(f"prefill {m['prefill_tok_s']:.0f} tok/s ({m['prompt_tokens']} tokens); bare decode {m['bare_decode_tok_s']:.2f} "
              f"tok/s; assistant (constrained) {m['assistant_decode_tok_s']:.2f} tok/s: ratio {m['decode_ratio']:.2f}")
        print(f"ask over {m['questions']} questions: p50 {m['ask_p50_s']:.1f} s, p95 {m['ask_p95_s']:.1f} s; answers "
              f"parsed {m['answer_parse_rate']:.0%}, tool calls parsed {m['tool_call_parse_rate']:.0%}")
    write_result("assist-load" if args.load_only else "assist-verifier" if args.skip_model else "assist", result)
    print(json.dumps({k: v for k, v in result.get("model", {}).items() if k != "outcomes"}, default=str))


if __name__ == "__main__":
    main()
