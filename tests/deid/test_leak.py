"""Nothing leaks: de-identify a dataset with planted identifiers, then scan every output file and the logs."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clinfm import schema
from clinfm.data.dataset import build_dataset
from clinfm.data.ingest import meds

D = dt.datetime
SUBJECTS = {
    918273645: {"name": ("Johnathan", "Quarterman"), "mrn": "48213377", "phone": "(617) 555-0143", "birth": D(1956, 7, 9)},
    827364519: {"name": ("Evangeline", "Whitcombe"), "mrn": "73920164", "phone": "617-555-0199", "birth": D(1931, 2, 3)},
}
ADMIT = D(2019, 3, 14, 9, 15)


def _note(first: str, last: str, mrn: str, phone: str) -> str:
    return (
        f"DISCHARGE SUMMARY\nPatient: {first} {last}   MRN: {mrn}\nAdmitted 03/14/2019, discharged 03/18/2019.\n"
        f"Mr. {last} is a man admitted with chest pain. His daughter called from {phone}.\n"
        "Seen by Dr. Okonkwo-Bramble on March 15, 2019. He lives at 41 Larchmont Terrace, Springfield, MA 01109.\n"
        "Plan: metformin 500 mg bid, follow up in 2 weeks. K 4.1, Cr 1.0.\n"
        "Electronically signed by: Priscilla Vandermolen, MD 03/18/2019 14:02\n"
        # shapes from real notes: compact dates, labelled fields, shorthand and signatures in capitals
        f"DOB 09JUL1956. Unit No.: 0012 3456. Subscriber ID: XJH 8844 21907. SSN (last 4): 6789.\n"
        "dtr suzette called, dr vasquez aware. MA plate 7KX-P219. palm-vein template PV-88213-A.\n"
        "QUIET NIGHT FOR PT.     EARL N. RAND, RRT  "
    )


PLANTED_STRINGS = [
    "Johnathan", "Quarterman", "Evangeline", "Whitcombe", "48213377", "73920164", "555-0143", "555-0199",
    "Okonkwo-Bramble", "Vandermolen", "Larchmont", "03/14/2019", "03/18/2019", "March 15, 2019", "2019-03-14",
    "1956-07-09", "1931-02-03", "918273645", "827364519",
    "09JUL1956", "0012 3456", "XJH 8844 21907", "6789", "suzette", "vasquez", "7KX-P219", "PV-88213-A", "RAND",
]  # fmt: skip


def _planted_dataset(tmp_path: Path) -> Path:
    rows = []
    for sid, p in SUBJECTS.items():
        rows += [
            (sid, None, "GENDER//M", None, None, None),
            (sid, p["birth"], schema.BIRTH, None, None, None),
            (sid, ADMIT, "VISIT//IP//START", None, None, None),
            (sid, ADMIT + dt.timedelta(hours=3), "LOINC//2823-6", 4.1, None, "mmol/L"),
            (sid, ADMIT + dt.timedelta(days=4), "NOTE//DISCHARGE", None, _note(*p["name"], p["mrn"], p["phone"]), None),
            (sid, ADMIT + dt.timedelta(days=4), "VISIT//IP//END", None, None, None),
        ]
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    df = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                    "numeric_value": pl.Float32, "text_value": pl.String, "unit": pl.String},
                      orient="row")  # fmt: skip
    pq.write_table(df.to_arrow().cast(schema.EVENT_SCHEMA), src / "data" / "0.parquet")
    return build_dataset(meds.plan(src), tmp_path / "identified").path


def _all_text_of(folder: Path) -> str:
    chunks = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            df = pl.read_parquet(path)
            flat = [pl.col(c).list.join("|") if isinstance(t, pl.List) else pl.col(c).cast(pl.String)
                    for c, t in df.schema.items()]  # fmt: skip
            chunks.append(df.select(flat).write_csv())
            chunks.append(str(pq.read_metadata(path).metadata))
        else:
            chunks.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(chunks)


def test_no_planted_identifier_survives_anywhere(tmp_path):
    source = _planted_dataset(tmp_path)
    secret = tmp_path / "secret"
    cli = [sys.executable, "-m", "clinfm.cli"]
    subprocess.run(cli + ["deid-secret", str(secret)], check=True, capture_output=True)
    out = tmp_path / "deid"
    run = subprocess.run(cli + ["-v", "deid", str(source), "--out", str(out), "--secret-file", str(secret)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    haystack = _all_text_of(out) + run.stdout + run.stderr
    leaked = [s for s in PLANTED_STRINGS if s in haystack]
    assert leaked == [], f"identifiers found in de-identified output or logs: {leaked}"

    events = pl.read_parquet(out / "data")
    notes = events.filter(pl.col("code") == "NOTE//DISCHARGE")["text_value"].to_list()
    assert len(notes) == 2 and all("metformin 500 mg bid" in n and "K 4.1" in n for n in notes)  # clinical content kept
    original_times = {ADMIT, ADMIT + dt.timedelta(hours=3), ADMIT + dt.timedelta(days=4)}
    assert not original_times & set(events["time"].drop_nulls().to_list())
    for sid in events["subject_id"].unique().to_list():  # intervals survive the shift
        s = events.filter(pl.col("subject_id") == sid)
        start = s.filter(pl.col("code") == "VISIT//IP//START")["time"].item()
        end = s.filter(pl.col("code") == "VISIT//IP//END")["time"].item()
        assert end - start == dt.timedelta(days=4)
