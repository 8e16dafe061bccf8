"""FHIR ingest throughput: ClinFM's streaming converter against orjson alone and fhir.resources validation.

Generates Synthea-shaped Bulk Data NDJSON (seeded), then measures MB/s of (a) ``orjson.loads`` on every line,
(b) ``fhir.resources.R4B`` ``model_validate`` on a sample of lines (extrapolated per MB), (c) ``fhir.convert``
over every planned task in one process, and (d) the whole ``build_dataset`` run. Each phase runs in a fresh
process so its peak RSS is its own. Usage: ``python benchmarks/fhir_ingest.py [--mb 200] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

RESULTS = Path(__file__).resolve().parent / "results" / "fhir_ingest.json"
SAMPLE_LINES = 3000

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
RXNORM, CVX = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/cvx"
VITALS = [
    ("8302-2", "Body Height", "cm", 150, 195),
    ("29463-7", "Body Weight", "kg", 45, 120),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 38),
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("9279-1", "Respiratory rate", "/min", 10, 22),
]
LABS = [
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 65, 180),
    ("2160-0", "Creatinine [Mass/volume] in Blood", "mg/dL", 0.5, 1.6),
    ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "mg/dL", 7, 25),
    ("2947-0", "Sodium [Moles/volume] in Blood", "mmol/L", 133, 146),
    ("6298-4", "Potassium [Moles/volume] in Blood", "mmol/L", 3.4, 5.2),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.8, 9.5),
]
CONDITIONS = [
    ("44054006", "Diabetes mellitus type 2 (disorder)"),
    ("59621000", "Essential hypertension (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("195662009", "Acute viral pharyngitis (disorder)"),
]
DRUGS = [
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
]
PROCEDURES = [
    ("430193006", "Medication reconciliation (procedure)"),
    ("710824005", "Assessment of health (procedure)"),
    ("171207006", "Depression screening (procedure)"),
]
VACCINES = [
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("08", "Hep B, adolescent or pediatric"),
]
TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "Procedure", "Immunization")


# --- data ----------------------------------------------------------------------------------------------
def _cc(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _ref(pid: str) -> dict:
    return {"reference": f"Patient/{pid}"}


def _quantity(rng: random.Random, code: str, display: str, unit: str, lo: float, hi: float) -> dict:
    return {
        "code": _cc(LOINC, code, display),
        "valueQuantity": {
            "value": round(rng.uniform(lo, hi), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _observation(rng, pid, enc, when, category, body) -> dict:
    return {
        "resourceType": "Observation",
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                        "display": category,
                    }
                ]
            }
        ],
        "subject": _ref(pid),
        "encounter": {"reference": f"Encounter/{enc}"},
        "effectiveDateTime": when,
        "issued": when,
        "meta": _meta("observation-lab"),
    } | body


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _status(kind: str, code: str) -> dict:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{kind}", "code": code}]}


def _meta(profile: str) -> dict:
    return {"profile": [f"http://hl7.org/fhir/us/core/StructureDefinition/us-core-{profile}"]}


def _omb(url: str, code: str, display: str, text: str) -> dict:
    return {
        "url": f"http://hl7.org/fhir/us/core/StructureDefinition/us-core-{url}",
        "extension": [
            {
                "url": "ombCategory",
                "valueCoding": {
                    "system": "urn:oid:2.16.840.1.113883.6.238",
                    "code": code,
                    "display": display,
                },
            },
            {"url": "text", "valueString": text},
        ],
    }


def _patient_records(rng: random.Random) -> dict[str, list[dict]]:
    """One patient with Synthea 1.5's field sets: demographics and 5-30 visits with vitals, labs, diagnoses,
    drugs, procedures and vaccines (all references by ``Type/id``, as in a Bulk Data export)."""
    pid = _uuid(rng)
    birth = f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    org, loc, prac = (_uuid(rng) for _ in range(3))
    out: dict[str, list[dict]] = {t: [] for t in TYPES}
    out["Patient"].append(
        {
            "resourceType": "Patient",
            "id": pid,
            "meta": _meta("patient"),
            "identifier": [
                {"system": "https://github.com/TIET-AI/tietai-synthea", "value": pid[:16]},
                {
                    "type": _cc(
                        "http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"
                    ),
                    "system": "http://hospital.smarthealthit.org",
                    "value": str(rng.randint(10**6, 10**7)),
                },
            ],
            "active": True,
            "name": [{"use": "official", "family": "Doe", "given": ["Pat"], "prefix": ["Mx."]}],
            "gender": rng.choice(["male", "female"]),
            "birthDate": birth,
            "address": [
                {
                    "use": "home",
                    "city": "Boston",
                    "state": "Massachusetts",
                    "postalCode": "00000",
                    "country": "US",
                    "line": [f"{rng.randint(1, 9999)} Main St"],
                }
            ],
            "telecom": [{"system": "phone", "value": "555-000-0000", "use": "home"}],
            "maritalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "S", "Never Married"
            ),
            "communication": [{"language": _cc("urn:ietf:bcp:47", "en-US", "English (United States)")}],
            "extension": [
                _omb("race", "2106-3", "White", "white"),
                _omb("ethnicity", "2186-5", "Not Hispanic or Latino", "non_hispanic"),
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
            ],
        }
    )
    year = int(birth[:4])
    for _ in range(rng.randint(5, 30)):
        eid = _uuid(rng)
        y = rng.randint(year, 2024)
        when = (
            f"{y}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 18):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}+00:00"
        )
        enc_ref = {"reference": f"Encounter/{eid}"}
        klass = rng.choice(["AMB"] * 8 + ["EMER", "IMP"])
        out["Encounter"].append(
            {
                "resourceType": "Encounter",
                "id": eid,
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": klass,
                    "display": {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient encounter"}[
                        klass
                    ],
                },
                "type": [_cc(SNOMED, "162673000", "General examination of patient (procedure)")],
                "subject": _ref(pid),
                "period": {"start": when, "end": when},
                "reasonCode": [{"text": "Medication_Review_Due"}],
                "serviceProvider": {"reference": f"Organization/{org}"},
                "location": [{"location": {"reference": f"Location/{loc}"}}],
                "participant": [
                    {
                        "type": [
                            _cc(
                                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "PPRF",
                                "primary performer",
                            )
                        ],
                        "individual": {"reference": f"Practitioner/{prac}"},
                    }
                ],
                "meta": _meta("encounter"),
            }
        )
        for code, display, unit, lo, hi in VITALS:
            out["Observation"].append(
                _observation(rng, pid, eid, when, "vital-signs", _quantity(rng, code, display, unit, lo, hi))
            )
        out["Observation"].append(
            _observation(
                rng,
                pid,
                eid,
                when,
                "vital-signs",
                {
                    "code": _cc(LOINC, "85354-9", "Blood pressure panel with all children optional"),
                    "component": [
                        _quantity(rng, "8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
                        _quantity(rng, "8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105),
                    ],
                },
            )
        )
        for code, display, unit, lo, hi in rng.sample(LABS, rng.randint(0, len(LABS))):
            lab = _quantity(rng, code, display, unit, lo, hi) | {
                "referenceRange": [{"low": {"value": lo, "unit": unit}, "high": {"value": hi, "unit": unit}}],
                "interpretation": [
                    _cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "N", "Normal")
                ],
            }
            out["Observation"].append(_observation(rng, pid, eid, when, "laboratory", lab))
        if rng.random() < 0.4:
            code, display = rng.choice(CONDITIONS)
            out["Condition"].append(
                {
                    "resourceType": "Condition",
                    "id": _uuid(rng),
                    "clinicalStatus": _status("condition-clinical", "active"),
                    "verificationStatus": _status("condition-ver-status", "confirmed"),
                    "category": [_status("condition-category", "encounter-diagnosis")],
                    "code": _cc(SNOMED, code, display),
                    "subject": _ref(pid),
                    "onsetDateTime": when,
                    "encounter": enc_ref,
                    "meta": _meta("condition-problems-health-concerns"),
                }
            )
        if rng.random() < 0.3:
            code, display = rng.choice(DRUGS)
            out["MedicationRequest"].append(
                {
                    "resourceType": "MedicationRequest",
                    "id": _uuid(rng),
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": _cc(RXNORM, code, display),
                    "subject": _ref(pid),
                    "authoredOn": when,
                    "encounter": enc_ref,
                    "dosageInstruction": [{"sequence": 1, "asNeededBoolean": True}],
                    "meta": _meta("medicationrequest"),
                }
            )
        code, display = rng.choice(PROCEDURES)
        out["Procedure"].append(
            {
                "resourceType": "Procedure",
                "id": _uuid(rng),
                "status": "completed",
                "code": _cc(SNOMED, code, display),
                "subject": _ref(pid),
                "performedDateTime": when,
                "encounter": enc_ref,
                "meta": _meta("procedure"),
            }
        )
        if rng.random() < 0.2:
            code, display = rng.choice(VACCINES)
            out["Immunization"].append(
                {
                    "resourceType": "Immunization",
                    "id": _uuid(rng),
                    "status": "completed",
                    "vaccineCode": _cc(CVX, code, display),
                    "patient": _ref(pid),
                    "occurrenceDateTime": when,
                    "primarySource": True,
                    "encounter": enc_ref,
                    "meta": _meta("immunization"),
                }
            )
    return out


def generate(folder: Path, mb: float, seed: int = 0) -> int:
    """Write ``<Type>.ndjson`` files totalling at least ``mb`` MiB; returns the byte count."""
    rng = random.Random(seed)
    written = 0
    with contextlib.ExitStack() as stack:
        files = {t: stack.enter_context(open(folder / f"{t}.ndjson", "wb")) for t in TYPES}
        while written < mb * 2**20:
            for rt, records in _patient_records(rng).items():
                data = b"".join(orjson.dumps(r) + b"\n" for r in records)
                files[rt].write(data)
                written += len(data)
    return written


# --- phases (each in its own process) ------------------------------------------------------------------
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def phase_orjson(folder: str) -> dict:
    loads, n, t0 = orjson.loads, 0, time.perf_counter()
    for path in sorted(Path(folder).glob("*.ndjson")):
        with open(path, "rb") as f:
            for line in f:
                loads(line)
                n += 1
    return {"seconds": time.perf_counter() - t0, "records": n, "peak_rss_mb": _peak_rss_mb()}


def phase_fhir_resources(folder: str, sample: int) -> dict:
    """``model_validate`` of an evenly spaced sample of lines from every file, weighted by file size."""
    from fhir.resources.R4B import get_fhir_model_class

    lines: list[bytes] = []
    paths = sorted(Path(folder).glob("*.ndjson"))
    total = sum(p.stat().st_size for p in paths)
    for path in paths:
        with open(path, "rb") as f:
            file_lines = f.readlines()
        k = max(1, round(sample * path.stat().st_size / total))
        step = max(1, len(file_lines) // k)
        lines += file_lines[::step][:k]
    t0 = time.perf_counter()
    for line in lines:
        d = orjson.loads(line)
        get_fhir_model_class(d["resourceType"]).model_validate(d)
    return {
        "seconds": time.perf_counter() - t0,
        "records": len(lines),
        "bytes": sum(map(len, lines)),
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_convert(folder: str) -> dict:
    import pyarrow as pa

    from clinfm.data.ingest import fhir

    # pyarrow imports pandas on its first conversion and initialises its cast kernels on the first cast (about
    # 0.2 s): fixed per-process costs, not throughput, so they are paid before the clock starts
    pa.array([0]).cast(pa.timestamp("us"))
    plan = fhir.plan(folder)
    events = quarantined = 0
    t0 = time.perf_counter()
    for task in plan.tasks:
        for out in fhir.convert(task):
            events += out.events.num_rows
            quarantined += out.quarantine.num_rows
    return {
        "seconds": time.perf_counter() - t0,
        "tasks": len(plan.tasks),
        "events": events,
        "quarantined": quarantined,
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_build(folder: str, out_dir: str, workers: int) -> dict:
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import fhir
    from clinfm.engine import Engine

    t0 = time.perf_counter()
    summary = build_dataset(fhir.plan(folder), out_dir, engine=Engine(workers=workers))
    seconds = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "workers": workers,
        "events": summary.events,
        "subjects": summary.subjects,
        "balanced": summary.balanced,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_worker_rss_mb": children,
    }


def _in_process(fn, *args) -> dict:
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:  # not daemonic: may fork workers
        return pool.submit(fn, *args).result()


def _has_build_dataset() -> bool:
    try:
        from clinfm.data.dataset import build_dataset  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200.0, help="MiB of NDJSON to generate (default 200)")
    ap.add_argument("--sample", type=int, default=SAMPLE_LINES, help="lines validated with fhir.resources")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for build_dataset")
    ap.add_argument("--repeat", type=int, default=3, help="runs of (a) and (c), fastest kept (default 3)")
    ap.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="clinfm-fhir-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        nbytes = generate(folder, args.mb)
        mb = nbytes / 2**20
        print(f"generated {mb:.1f} MiB of NDJSON in {time.perf_counter() - t0:.1f} s -> {folder}")

        # (a) and (c) are each run --repeat times in fresh processes and the fastest kept: on a shared machine
        # the minimum is the least disturbed measurement of both, so their ratio is fair.
        base = min(
            (_in_process(phase_orjson, str(folder)) for _ in range(args.repeat)), key=lambda r: r["seconds"]
        )
        valid = _in_process(phase_fhir_resources, str(folder), args.sample)
        ours = min(
            (_in_process(phase_convert, str(folder)) for _ in range(args.repeat)), key=lambda r: r["seconds"]
        )
        base["mb_per_s"] = mb / base["seconds"]
        valid["mb_per_s"] = valid["bytes"] / 2**20 / valid["seconds"]
        ours["mb_per_s"] = mb / ours["seconds"]
        result = {
            "input_mb": round(mb, 1),
            "records": base["records"],
            "mean_line_bytes": round(nbytes / base["records"]),
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "orjson_loads": base,
            "fhir_resources_r4b_validate": valid
            | {"note": f"{valid['records']} sampled lines, MB/s extrapolated"},
            "repeat": args.repeat,
            "clinfm_convert_single_process": ours,
            "ratio_ours_vs_orjson": ours["mb_per_s"] / base["mb_per_s"],
            "ratio_ours_vs_fhir_resources": ours["mb_per_s"] / valid["mb_per_s"],
            "targets": {"ours_vs_orjson": 0.5, "ours_vs_fhir_resources": 10, "peak_rss_mb": 2048},
        }
        if _has_build_dataset():
            for workers in sorted({1, args.workers}):
                out_dir = folder.parent / f"{folder.name}-meds-{workers}"
                build = _in_process(phase_build, str(folder), str(out_dir), workers)
                shutil.rmtree(out_dir, ignore_errors=True)
                build["mb_per_s"] = mb / build["seconds"]
                result[f"build_dataset_workers_{workers}"] = build

        print(f"records                         {base['records']:>12,}")
        print(
            f"(a) orjson.loads only           {base['mb_per_s']:8.1f} MB/s   peak RSS {base['peak_rss_mb']:7.0f} MB"
        )
        print(
            f"(b) fhir.resources R4B validate {valid['mb_per_s']:8.1f} MB/s   "
            f"(extrapolated from {valid['records']} sampled lines)"
        )
        print(
            f"(c) clinfm fhir.convert, 1 proc {ours['mb_per_s']:8.1f} MB/s   peak RSS {ours['peak_rss_mb']:7.0f} MB"
            f"   {ours['events']:,} events, {ours['quarantined']} quarantined"
        )
        for key, b in result.items():
            if key.startswith("build_dataset"):
                print(
                    f"(d) build_dataset, {b['workers']} worker(s)   {b['mb_per_s']:8.1f} MB/s   "
                    f"peak RSS {max(b['peak_rss_mb'], b['peak_worker_rss_mb']):7.0f} MB   balanced={b['balanced']}"
                )
        print(f"ours / orjson          = {result['ratio_ours_vs_orjson']:.2f}  (target >= 0.5)")
        print(f"ours / fhir.resources  = {result['ratio_ours_vs_fhir_resources']:.1f}  (target >= 10)")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
