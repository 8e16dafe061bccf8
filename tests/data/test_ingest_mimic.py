"""MIMIC-IV ingest: exact events from tiny gzip CSV fixtures, each bad-record kind, the demo end to end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from clinfm import schema
from clinfm.data.ingest import mimic
from clinfm.data.ingest.base import GZIP_EXPANSION, RecordCounts
from clinfm.engine import Engine

REPO = Path(__file__).resolve().parents[2]
MIMIC_DEMO = REPO.parent / "shared" / "data" / "mimic-iv-demo-2.2"

D = dt.datetime


def write_tables(root: Path, tables: dict[str, str]) -> Path:
    """Write ``{"hosp/patients": "csv text"}`` as ``root/hosp/patients.csv.gz``."""
    for name, text in tables.items():
        path = root / f"{name}.csv.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(text.encode()))
    return root


@dataclasses.dataclass
class Converted:
    events: list[tuple]
    quarantine: list[tuple[str, str]]
    counts: RecordCounts
    descriptions: dict[str, str]
    outputs: int


def convert_table(root: Path, table: str, chunk_rows: int = mimic.DEFAULT_CHUNK_ROWS, **options) -> Converted:
    plan = mimic.plan(root, chunk_rows=chunk_rows)
    task = next(t for t in plan.tasks if t.table == table)
    if options:
        task = dataclasses.replace(task, options=task.options + tuple(options.items()))
    outs = list(plan.convert(task))
    counts, descriptions = RecordCounts(), {}
    for out in outs:
        assert set(out.counts) == {table}
        assert out.counts[table].balanced
        counts.add(out.counts[table])
        descriptions.update(out.code_descriptions)
        schema.validate_events(out.events) if out.events.num_rows else None
    events = pa.concat_tables([o.events for o in outs])
    quarantine = pa.concat_tables([o.quarantine for o in outs])
    assert set(quarantine.column("table").to_pylist()) <= {table}
    assert counts.quarantined == sum(quarantine.column("records").to_pylist())  # one meaning for every row
    return Converted(
        events=[tuple(r.values()) for r in events.to_pylist()],
        quarantine=list(
            zip(quarantine.column("locator").to_pylist(), quarantine.column("reason").to_pylist())
        ),
        counts=counts,
        descriptions=descriptions,
        outputs=len(outs),
    )


ADMISSIONS = (
    "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,admission_location,"
    "discharge_location,insurance,language,marital_status,race,edregtime,edouttime,hospital_expire_flag\n"
    "1,100,2150-01-01 10:00:00,2150-01-05 12:00:00,,URGENT,P1,TRANSFER,HOME,Medicare,ENGLISH,MARRIED,WHITE,"
    "2150-01-01 08:00:00,2150-01-01 10:30:00,0\n"
    "1,101,2151-03-01 09:00:00,2151-03-02 09:00:00,,EU OBSERVATION,P1,ER,HOME,Medicare,?,MARRIED,WHITE,,,0\n"
    "2,200,2160-06-01 00:00:00,2160-06-03 18:30:00,2160-06-03 18:30:00,EW EMER.,P2,ER,DIED,Medicaid,SPANISH,"
    ",HISPANIC/LATINO,,,1\n"
)


# --- patients and admissions ---------------------------------------------------------------------------
def test_patients_exact_events_and_death_source(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/admissions": ADMISSIONS,
            "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n"
            "1,F,20,2150,2011 - 2013,2152-05-06\n"
            "2,M,70,2160,2011 - 2013,2160-06-03\n"
            "3,,91,2170,2014 - 2016,\n",
        },
    )
    got = convert_table(root, "hosp/patients")
    assert got.events == [
        (1, None, "GENDER//F", None, None, None),
        (1, D(2130, 1, 1), "MEDS_BIRTH", None, None, None),
        (1, D(2152, 5, 6), "MEDS_DEATH", None, None, None),
        (2, None, "GENDER//M", None, None, None),
        (2, D(2090, 1, 1), "MEDS_BIRTH", None, None, None),  # death comes from admissions.deathtime instead
        (3, None, "GENDER//UNKNOWN", None, None, None),
        (3, D(2079, 1, 1), "MEDS_BIRTH", None, None, None),
    ]
    assert got.quarantine == []
    assert got.counts.as_dict() == {"read": 3, "converted": 3, "quarantined": 0}


def test_patients_bad_records(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n"
            "1,F,20,2150,g,2120-05-06\n"
            ",F,20,2150,g,\n"
            "x7,M,20,2150,g,\n"
            "4,M,twenty,2150,g,\n"
            "5,M,20,2150,g,2152-13-40\n"
            "6,M,20,2150,g,\n",
        },
    )
    got = convert_table(root, "hosp/patients")
    assert got.quarantine == [
        (
            "row 1",
            (
                "hosp/patients.csv.gz row 1: dod '2120-05-06' is before the birth date derived from "
                "anchor_year - anchor_age (2130-01-01)"
            ),
        ),
        ("row 2", "hosp/patients.csv.gz row 2: subject_id is empty; expected an integer subject id"),
        ("row 3", "hosp/patients.csv.gz row 3: subject_id 'x7' is not an integer subject id"),
        ("row 4", "hosp/patients.csv.gz row 4: anchor_age 'twenty' is not an integer (age in years)"),
        (
            "row 5",
            (
                "hosp/patients.csv.gz row 5: dod '2152-13-40' is not a date-time "
                "(expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD)"
            ),
        ),
    ]
    assert [e[0] for e in got.events] == [6, 6]
    assert got.counts.as_dict() == {"read": 6, "converted": 1, "quarantined": 5}


def test_admissions_exact_events(tmp_path):
    root = write_tables(tmp_path, {"hosp/admissions": ADMISSIONS})
    got = convert_table(root, "hosp/admissions")
    assert got.events == [
        (1, D(2150, 1, 1, 10), "VISIT//IP//START", None, "URGENT", None),
        (1, D(2150, 1, 5, 12), "VISIT//IP//END", None, "HOME", None),
        (1, D(2150, 1, 1, 8), "VISIT//ER//START", None, None, None),
        (1, D(2150, 1, 1, 10, 30), "VISIT//ER//END", None, None, None),
        (1, None, "RACE//WHITE", None, None, None),
        (1, D(2150, 1, 1, 10), "INSURANCE//Medicare", None, None, None),
        (1, D(2150, 1, 1, 10), "LANGUAGE//ENGLISH", None, None, None),
        (1, D(2150, 1, 1, 10), "MARITAL_STATUS//MARRIED", None, None, None),
        (1, D(2151, 3, 1, 9), "VISIT//OBS//START", None, "EU OBSERVATION", None),
        (1, D(2151, 3, 2, 9), "VISIT//OBS//END", None, "HOME", None),
        # the second admission's RACE//WHITE is the same static row: kept once; language "?" is skipped
        (1, D(2151, 3, 1, 9), "INSURANCE//Medicare", None, None, None),
        (1, D(2151, 3, 1, 9), "MARITAL_STATUS//MARRIED", None, None, None),
        (2, D(2160, 6, 1), "VISIT//IP//START", None, "EW EMER.", None),
        (2, D(2160, 6, 3, 18, 30), "VISIT//IP//END", None, "DIED", None),
        (2, D(2160, 6, 3, 18, 30), "MEDS_DEATH", None, None, None),
        (2, None, "RACE//HISPANIC/LATINO", None, None, None),
        (2, D(2160, 6, 1), "INSURANCE//Medicaid", None, None, None),
        (2, D(2160, 6, 1), "LANGUAGE//SPANISH", None, None, None),
    ]
    assert got.counts.as_dict() == {"read": 3, "converted": 3, "quarantined": 0}


def test_admissions_bad_times_and_ids(tmp_path):
    header = ADMISSIONS.splitlines()[0]
    root = write_tables(
        tmp_path,
        {
            "hosp/admissions": header + "\n"
            "1,,2150-01-01 10:00:00,2150-01-05 12:00:00,,URGENT,P,L,HOME,M,E,S,W,,,0\n"
            "1,101,01/02/2150,2150-01-05 12:00:00,,URGENT,P,L,HOME,M,E,S,W,,,0\n"
            "1,102,2150-01-01 10:00:00,,,URGENT,P,L,HOME,M,E,S,W,,,0\n"
            "1,103,2150-01-01 10:00:00,2150-01-05 12:00:00,,URGENT,P,L,HOME,M,E,S,W,2150-01-01 25:00:00,,0\n"
        },
    )
    got = convert_table(root, "hosp/admissions")
    expected = "expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD"
    assert got.quarantine == [
        ("row 1", "hosp/admissions.csv.gz row 1: hadm_id is empty; expected an admission id"),
        ("row 2", f"hosp/admissions.csv.gz row 2: admittime '01/02/2150' is not a date-time ({expected})"),
        ("row 3", f"hosp/admissions.csv.gz row 3: dischtime is empty; {expected}"),
        (
            "row 4",
            f"hosp/admissions.csv.gz row 4: edregtime '2150-01-01 25:00:00' is not a date-time ({expected})",
        ),
    ]
    assert got.events == [] and got.counts.as_dict() == {"read": 4, "converted": 0, "quarantined": 4}


# --- coded tables --------------------------------------------------------------------------------------
def test_diagnoses_dotted_codes_at_discharge_with_descriptions(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/admissions": ADMISSIONS,
            "hosp/d_icd_diagnoses": "icd_code,icd_version,long_title\n4139,9,Angina NOS\nE119,10,Type 2 diabetes\n",
            "hosp/diagnoses_icd": "subject_id,hadm_id,seq_num,icd_code,icd_version\n"
            "1,100,1,4139,9\n1,100,2,V707,9\n1,100,3,E8786,9\n1,100,4,25000,9\n1,100,5,042,9\n"
            "2,200,1,E119,10\n2,200,2,I10,10\n2,200,3,S72.001A,10\n",
        },
    )
    got = convert_table(root, "hosp/diagnoses_icd")
    disch1, disch2 = D(2150, 1, 5, 12), D(2160, 6, 3, 18, 30)
    assert [(e[0], e[1], e[2]) for e in got.events] == [
        (1, disch1, "ICD9CM//413.9"),
        (1, disch1, "ICD9CM//V70.7"),
        (1, disch1, "ICD9CM//E878.6"),
        (1, disch1, "ICD9CM//250.00"),
        (1, disch1, "ICD9CM//042"),
        (2, disch2, "ICD10CM//E11.9"),
        (2, disch2, "ICD10CM//I10"),
        (2, disch2, "ICD10CM//S72.001A"),
    ]
    assert got.descriptions == {"ICD9CM//413.9": "Angina NOS", "ICD10CM//E11.9": "Type 2 diabetes"}
    assert got.counts.as_dict() == {"read": 8, "converted": 8, "quarantined": 0}


def test_diagnoses_without_a_usable_admission_are_quarantined(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/admissions": ADMISSIONS,
            "hosp/diagnoses_icd": "subject_id,hadm_id,seq_num,icd_code,icd_version\n"
            "1,999,1,4139,9\n1,,1,4139,9\n2,100,1,4139,9\n1,100,1,4139,11\n1,100,1,41-39,9\n1,100,1,4019,9\n",
        },
    )
    got = convert_table(root, "hosp/diagnoses_icd")
    prefix = "hosp/diagnoses_icd.csv.gz row"
    assert got.quarantine == [
        (
            "row 1",
            f"{prefix} 1: hadm_id '999' is not in hosp/admissions, whose dischtime is the time of diagnoses",
        ),
        (
            "row 2",
            (
                f"{prefix} 2: hadm_id is empty; expected an admission id (diagnoses take the admission's "
                "dischtime)"
            ),
        ),
        ("row 3", f"{prefix} 3: subject_id 2 differs from the subject 1 of admission 100 in hosp/admissions"),
        ("row 4", f"{prefix} 4: icd_version '11' is not 9 or 10"),
        ("row 5", f"{prefix} 5: icd_code '41-39' is not an ICD code (expected 2-7 letters and digits)"),
    ]
    assert got.events == [(1, D(2150, 1, 5, 12), "ICD9CM//401.9", None, None, None)]
    assert got.counts.as_dict() == {"read": 6, "converted": 1, "quarantined": 5}


def test_procedures_drg_hcpcs_and_services(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/admissions": ADMISSIONS,
            "hosp/d_icd_procedures": "icd_code,icd_version,long_title\n3961,9,Extracorporeal circulation\n",
            "hosp/d_hcpcs": "code,category,long_description,short_description\nG0378,,Hospital observation,Obs\n",
            "hosp/procedures_icd": "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version\n"
            "1,100,1,2150-01-02,3961,9\n1,100,2,2150-01-03,0DTJ4ZZ,10\n",
            "hosp/drgcodes": "subject_id,hadm_id,drg_type,drg_code,description,drg_severity,drg_mortality\n"
            "1,100,HCFA,864,FEVER,,\n2,200,APR,314,SEPSIS,3,4\n",
            "hosp/hcpcsevents": "subject_id,hadm_id,chartdate,hcpcs_cd,seq_num,short_description\n"
            "1,100,2150-01-02,93454,1,Cardiovascular\n1,100,2150-01-02,g0378,2,Hospital\n",
            "hosp/services": "subject_id,hadm_id,transfertime,prev_service,curr_service\n"
            "1,100,2150-01-01 10:05:00,,MED\n",
        },
    )
    procedures = convert_table(root, "hosp/procedures_icd")
    assert procedures.events == [
        (1, D(2150, 1, 2), "ICD9Proc//39.61", None, None, None),
        (1, D(2150, 1, 3), "ICD10PCS//0DTJ4ZZ", None, None, None),
    ]
    assert procedures.descriptions == {"ICD9Proc//39.61": "Extracorporeal circulation"}
    drg = convert_table(root, "hosp/drgcodes")
    assert drg.events == [
        (1, D(2150, 1, 5, 12), "DRG//864", None, None, None),
        (2, D(2160, 6, 3, 18, 30), "APR_DRG//314", None, None, None),
    ]
    assert drg.descriptions == {"DRG//864": "FEVER", "APR_DRG//314": "SEPSIS"}
    hcpcs = convert_table(root, "hosp/hcpcsevents")
    assert [e[2] for e in hcpcs.events] == ["CPT4//93454", "HCPCS//G0378"]
    assert hcpcs.descriptions == {"CPT4//93454": "Cardiovascular", "HCPCS//G0378": "Hospital observation"}
    services = convert_table(root, "hosp/services")
    assert services.events == [(1, D(2150, 1, 1, 10, 5), "MIMIC_SERVICE//MED", None, None, None)]


# --- measurements and medications ----------------------------------------------------------------------
LAB_HEADER = (
    "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,charttime,storetime,value,valuenum,"
    "valueuom,ref_range_lower,ref_range_upper,flag,priority,comments\n"
)


def lab_row(subject: object, itemid: object, time: str, value: str, valuenum: str, unit: str) -> str:
    return f"1,{subject},100,5,{itemid},,{time},,{value},{valuenum},{unit},,,,ROUTINE,\n"


def test_labevents_values_units_descriptions_and_bad_rows(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/d_labitems": "itemid,label,fluid,category\n50912,Creatinine,Blood,Chemistry\n51090,Ketone,,\n",
            "hosp/labevents": LAB_HEADER
            + lab_row(1, 50912, "2150-01-02 06:00:00", "1.5", "1.5", "mg/dL")
            + lab_row(1, 51090, "2150-01-02 06:00:00", "NEG", "", "")
            + lab_row(1, 51090, "2150-01-02 07:00:00", "", "", "")
            + lab_row(1, "abc", "2150-01-02 06:00:00", "1", "1", "")
            + lab_row(1, 50912, "2150-02-30 06:00:00", "1", "1", "")
            + lab_row(1, 50912, "2150-01-02 06:00:00", "1", "one", "")
            + lab_row("", 50912, "2150-01-02 06:00:00", "1", "1", ""),
        },
    )
    got = convert_table(root, "hosp/labevents")
    assert got.events == [
        (1, D(2150, 1, 2, 6), "MIMIC_LAB//50912", 1.5, None, "mg/dL"),
        (1, D(2150, 1, 2, 6), "MIMIC_LAB//51090", None, "NEG", None),
        (1, D(2150, 1, 2, 7), "MIMIC_LAB//51090", None, None, None),
    ]
    assert got.descriptions == {
        "MIMIC_LAB//50912": "Creatinine (Blood, Chemistry)",
        "MIMIC_LAB//51090": "Ketone",
    }
    prefix = "hosp/labevents.csv.gz row"
    assert got.quarantine == [
        ("row 4", f"{prefix} 4: itemid 'abc' is not an integer item id"),
        (
            "row 5",
            (
                f"{prefix} 5: charttime '2150-02-30 06:00:00' is not a date-time "
                "(expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD)"
            ),
        ),
        ("row 6", f"{prefix} 6: valuenum 'one' is not a number"),
        ("row 7", f"{prefix} 7: subject_id is empty; expected an integer subject id"),
    ]
    assert got.counts.as_dict() == {"read": 7, "converted": 3, "quarantined": 4}


def test_labevents_stream_in_chunks_with_the_same_result(tmp_path):
    rows = "".join(
        lab_row(s, 50912, f"2150-01-{d:02d} 06:00:00", "2", "2", "mg/dL") for s in (1, 2) for d in (1, 2, 3)
    )
    root = write_tables(
        tmp_path, {"hosp/labevents": LAB_HEADER + rows + lab_row("?", 50912, "2150-01-01", "", "", "")}
    )
    whole = convert_table(root, "hosp/labevents")
    chunked = convert_table(root, "hosp/labevents", chunk_rows=2)
    assert chunked.outputs == 4 and whole.outputs == 1
    assert chunked.events == whole.events and len(whole.events) == 6
    assert (
        chunked.quarantine
        == whole.quarantine
        == [("row 7", "hosp/labevents.csv.gz row 7: subject_id '?' is not an integer subject id")]
    )
    assert chunked.counts.as_dict() == whole.counts.as_dict() == {"read": 7, "converted": 6, "quarantined": 1}


def test_prescriptions_ndc_or_drug_name(tmp_path):
    header = (
        "subject_id,hadm_id,pharmacy_id,poe_id,poe_seq,order_provider_id,starttime,stoptime,drug_type,drug,"
        "formulary_drug_cd,gsn,ndc,prod_strength,form_rx,dose_val_rx,dose_unit_rx,form_val_disp,"
        "form_unit_disp,doses_per_24_hrs,route\n"
    )
    row = "1,100,9,,,,{start},,MAIN,{drug},F,,{ndc},,,{dose},{unit},,,,IV\n"
    root = write_tables(
        tmp_path,
        {
            "hosp/prescriptions": header
            + row.format(
                start="2150-01-02 08:00:00", drug="Insulin", ndc="00002821501", dose="10", unit="UNIT"
            )
            + row.format(start="2150-01-02 09:00:00", drug="Heparin", ndc="0", dose="1-2", unit="mL")
            + row.format(start="2150-01-02 10:00:00", drug="", ndc="", dose="", unit="")
            + row.format(start="", drug="Heparin", ndc="", dose="", unit="")
        },
    )
    got = convert_table(root, "hosp/prescriptions")
    assert got.events == [
        (1, D(2150, 1, 2, 8), "NDC//00002821501", 10.0, None, "UNIT"),
        (1, D(2150, 1, 2, 9), "MIMIC_DRUG//Heparin", None, "1-2", "mL"),
    ]
    assert got.descriptions == {"NDC//00002821501": "Insulin"}
    assert got.quarantine == [
        (
            "row 3",
            (
                "hosp/prescriptions.csv.gz row 3: drug is empty and ndc (empty) is not an NDC "
                "(expected 10-11 digits, not all zeros); nothing to code"
            ),
        ),
        (
            "row 4",
            "hosp/prescriptions.csv.gz row 4: starttime is empty; expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD",
        ),
    ]


def test_emar_omr_and_microbiology(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/emar": "subject_id,hadm_id,emar_id,emar_seq,poe_id,pharmacy_id,enter_provider_id,charttime,"
            "medication,event_txt,scheduletime,storetime\n"
            "1,100,1-1,1,1-9,9,,2150-01-02 08:00:00,Heparin,Administered,,\n"
            "1,100,1-2,2,1-9,9,,2150-01-02 09:00:00,,Confirmed,,\n",
            "hosp/omr": "subject_id,chartdate,seq_num,result_name,result_value\n"
            "1,2150-01-01,1,Blood Pressure,120/80\n1,2150-01-01,1,Weight (Lbs),150.5\n1,2150-01-01,1,eGFR,>60\n",
            "hosp/microbiologyevents": "microevent_id,subject_id,hadm_id,micro_specimen_id,order_provider_id,"
            "chartdate,charttime,spec_itemid,spec_type_desc,test_seq,storedate,storetime,test_itemid,test_name,"
            "org_itemid,org_name,isolate_num,quantity,ab_itemid,ab_name,dilution_text,dilution_comparison,"
            "dilution_value,interpretation,comments\n"
            "1,1,100,7,,2150-01-02 00:00:00,2150-01-02 10:00:00,70012,BLOOD CULTURE,1,,,90201,Blood Culture,"
            "80002,E. COLI,1,,90,GENTAMICIN,<=1,<=,1,S,\n"
            "2,1,100,8,,2150-01-03 00:00:00,,70079,URINE,1,,,90039,,,,,,,,,,,,\n",
        },
    )
    emar = convert_table(root, "hosp/emar")
    assert emar.events == [(1, D(2150, 1, 2, 8), "MIMIC_EMAR//Heparin", None, "Administered", None)]
    assert emar.quarantine == [
        ("row 2", "hosp/emar.csv.gz row 2: medication is empty; expected the administered medication's name")
    ]
    omr = convert_table(root, "hosp/omr")
    day = D(2150, 1, 1)
    assert omr.events == [
        (1, day, "MIMIC_OMR//Blood Pressure//SYSTOLIC", 120.0, None, "mmHg"),
        (1, day, "MIMIC_OMR//Blood Pressure//DIASTOLIC", 80.0, None, "mmHg"),
        (1, day, "MIMIC_OMR//Weight (Lbs)", 150.5, None, None),
        (1, day, "MIMIC_OMR//eGFR", None, ">60", None),
    ]
    assert omr.counts.as_dict() == {"read": 3, "converted": 3, "quarantined": 0}
    micro = convert_table(root, "hosp/microbiologyevents")
    assert micro.events == [
        (1, D(2150, 1, 2, 10), "MIMIC_MICRO//Blood Culture", None, "E. COLI", None),
        (1, D(2150, 1, 2, 10), "MIMIC_MICRO_AB//GENTAMICIN", 1.0, "S", None),
        (1, D(2150, 1, 3), "MIMIC_MICRO//URINE", None, None, None),  # no test name, no charttime
    ]


def test_transfers_icustays_and_icu_item_tables(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/transfers": "subject_id,hadm_id,transfer_id,eventtype,careunit,intime,outtime\n"
            "1,100,1,admit,Medicine,2150-01-01 10:00:00,2150-01-03 00:00:00\n"
            "1,100,2,discharge,,2150-01-05 12:00:00,\n",
            "icu/d_items": "itemid,label,abbreviation,linksto,category,unitname,param_type,lownormalvalue,"
            "highnormalvalue\n225798,Vancomycin,Vanco,inputevents,Antibiotics,,Solution,,\n"
            "226559,Foley,Foley,outputevents,Output,mL,Numeric,,\n",
            "icu/icustays": "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los\n"
            "1,100,5,MICU,SICU,2150-01-02 00:00:00,2150-01-03 00:00:00,1.0\n1,100,6,MICU,MICU,2150-01-04 00:00:00,,\n",
            "icu/inputevents": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,amount,"
            "amountuom,rate,rateuom\n1,100,5,9,2150-01-02 01:00:00,,,225798,1,dose,,\n",
            "icu/outputevents": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valueuom\n"
            "1,100,5,9,2150-01-02 02:00:00,,226559,600,ml\n",
            "icu/procedureevents": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,"
            "value,valueuom\n1,100,5,9,2150-01-02 03:00:00,,,225792,3410,min\n",
            "icu/chartevents": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valuenum,"
            "valueuom,warning\n1,100,5,9,2150-01-02 04:00:00,,220045,88,88,bpm,0\n"
            "1,100,5,9,2150-01-02 04:00:00,,228096,Alert,,,0\n",
        },
    )
    assert convert_table(root, "hosp/transfers").events == [
        (1, D(2150, 1, 1, 10), "TRANSFER//Medicine", None, "admit", None),
        (1, D(2150, 1, 5, 12), "TRANSFER//DISCHARGE", None, "discharge", None),
    ]
    assert convert_table(root, "icu/icustays").events == [
        (1, D(2150, 1, 2), "VISIT//ICU//START", None, "MICU", None),
        (1, D(2150, 1, 3), "VISIT//ICU//END", None, "SICU", None),
        (1, D(2150, 1, 4), "VISIT//ICU//START", None, "MICU", None),
    ]
    inputs = convert_table(root, "icu/inputevents")
    assert inputs.events == [(1, D(2150, 1, 2, 1), "MIMIC_ITEM//225798", 1.0, None, "dose")]
    assert inputs.descriptions == {"MIMIC_ITEM//225798": "Vancomycin"}
    assert convert_table(root, "icu/outputevents").events == [
        (1, D(2150, 1, 2, 2), "MIMIC_ITEM//226559", 600.0, None, "ml")
    ]
    assert convert_table(root, "icu/procedureevents").events == [
        (1, D(2150, 1, 2, 3), "MIMIC_ITEM//225792", 3410.0, None, "min")
    ]
    assert convert_table(root, "icu/chartevents").events == [
        (1, D(2150, 1, 2, 4), "MIMIC_ITEM//220045", 88.0, None, "bpm"),
        (1, D(2150, 1, 2, 4), "MIMIC_ITEM//228096", None, "Alert", None),
    ]


# --- broken files --------------------------------------------------------------------------------------
def test_missing_required_column_quarantines_the_whole_file(tmp_path):
    root = write_tables(
        tmp_path, {"hosp/emar": "subject_id,hadm_id,medication\n1,100,Heparin\n2,200,Insulin\n"}
    )
    got = convert_table(root, "hosp/emar")
    assert got.events == []
    assert got.quarantine == [
        (
            "header",
            (
                "hosp/emar.csv.gz: missing required column(s) charttime; found subject_id, hadm_id, medication;"
                " expected subject_id, charttime, medication; all 2 rows quarantined"
            ),
        )
    ]
    assert got.counts.as_dict() == {"read": 2, "converted": 0, "quarantined": 2}


def test_malformed_csv_rows_are_quarantined_and_later_rows_keep_their_numbers(tmp_path):
    good = [lab_row(1, 50912, f"2150-01-01 {h:02d}:00:00", "1", "1", "") for h in range(24)]
    good[3] = "1,1,100,5,50912\n"  # too few fields
    good[20] = good[20].rstrip("\n") + ",extra\n"
    good[22] = lab_row(1, 50912, "bad", "1", "1", "")
    root = write_tables(tmp_path, {"hosp/labevents": LAB_HEADER + "".join(good)})
    for options in ({}, {"block_bytes": 256, "chunk_rows": 5}):  # one batch, or many small batches
        got = convert_table(root, "hosp/labevents", **options)
        assert got.quarantine == [
            (
                "row 4",
                (
                    "hosp/labevents.csv.gz row 4: malformed CSV row with 5 fields, expected 16 "
                    "(one per header column)"
                ),
            ),
            (
                "row 21",
                (
                    "hosp/labevents.csv.gz row 21: malformed CSV row with 17 fields, expected 16 "
                    "(one per header column)"
                ),
            ),
            (
                "row 23",
                (
                    "hosp/labevents.csv.gz row 23: charttime 'bad' is not a date-time "
                    "(expected YYYY-MM-DD HH:MM:SS or YYYY-MM-DD)"
                ),
            ),
        ]
        assert [e[1].hour for e in got.events] == [h for h in range(24) if h not in (3, 20, 22)]
        assert got.counts.as_dict() == {"read": 24, "converted": 21, "quarantined": 3}


def test_truncated_gzip_keeps_what_was_read_and_marks_where_it_broke(tmp_path):
    rng = random.Random(0)  # incompressible values, so the cut lands well inside the rows
    rows = "".join(lab_row(1, 50912, "2150-01-01", f"{rng.random():.12f}", str(m), "") for m in range(20_000))
    data = gzip.compress((LAB_HEADER + rows).encode())
    path = tmp_path / "hosp" / "labevents.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) // 2])
    got = convert_table(tmp_path, "hosp/labevents", chunk_rows=1000, block_bytes=64 * 1024)
    kept = len(got.events)
    assert 8_000 < kept < 12_000  # about half: everything Python's decompressor could recover
    assert [e[3] for e in got.events] == [float(m) for m in range(kept)]  # a clean prefix
    (cut_locator, cut_reason), (end_locator, end_reason) = got.quarantine
    assert cut_locator == f"row {kept + 1}"  # the cut-off last row: malformed or held back
    assert end_locator == f"after row {kept + 1}"
    assert end_reason == (
        f"hosp/labevents.csv.gz: the file breaks off after data row {kept + 1} (EOFError: Compressed file ended "
        f"before the end-of-stream marker was reached); rows 1-{kept + 1 if 'malformed' in cut_reason else kept} "
        "were converted or quarantined row by row, whatever followed could not be read"
    )
    assert got.counts.as_dict() == {"read": kept + 2, "converted": kept, "quarantined": 2}


def test_gzip_without_its_trailer_holds_back_the_last_row(tmp_path):
    data = gzip.compress(
        (LAB_HEADER + "".join(lab_row(1, 50912, "2150-01-01", "", str(m), "") for m in range(3))).encode()
    )
    path = tmp_path / "hosp" / "labevents.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:-8])  # every row is there, the CRC and length are not: the last row is suspect
    got = convert_table(tmp_path, "hosp/labevents")
    assert [e[3] for e in got.events] == [0.0, 1.0]
    cause = "EOFError: Compressed file ended before the end-of-stream marker was reached"
    assert got.quarantine == [
        (
            "row 3",
            (
                f"hosp/labevents.csv.gz row 3: last row before the file broke off ({cause}); it may be cut "
                "short, so it is not converted"
            ),
        ),
        (
            "after row 3",
            (
                f"hosp/labevents.csv.gz: the file breaks off after data row 3 ({cause}); rows 1-2 were "
                "converted or quarantined row by row, whatever followed could not be read"
            ),
        ),
    ]
    assert got.counts.as_dict() == {"read": 4, "converted": 2, "quarantined": 2}


def test_unreadable_and_header_only_files(tmp_path):
    (tmp_path / "hosp").mkdir()
    (tmp_path / "hosp" / "patients.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    write_tables(tmp_path, {"hosp/omr": "subject_id,chartdate,seq_num,result_name,result_value\n"})
    broken = convert_table(tmp_path, "hosp/patients")
    assert broken.events == [] and len(broken.quarantine) == 1
    locator, reason = broken.quarantine[0]
    assert locator == "file" and reason.startswith("hosp/patients.csv.gz: cannot read the header: EOFError")
    assert broken.counts.balanced
    empty = convert_table(tmp_path, "hosp/omr")
    assert empty.events == [] and empty.quarantine == []
    assert empty.counts.as_dict() == {"read": 0, "converted": 0, "quarantined": 0}


# --- the plan ------------------------------------------------------------------------------------------
def test_plan_tasks_only_known_tables_and_names_the_rest(tmp_path):
    root = write_tables(
        tmp_path,
        {
            "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n",
            "hosp/labevents": LAB_HEADER + lab_row(1, 1, "2150-01-01", "", "", "") * 50,
            "hosp/d_labitems": "itemid,label,fluid,category\n",
            "hosp/pharmacy": "subject_id\n",
            "icu/caregiver": "caregiver_id\n",
        },
    )
    (root / "hosp" / "notes.txt").write_text("not a table")
    plan = mimic.plan(root, chunk_rows=1000)
    assert plan.source == "mimic" and plan.source_path == str(root.resolve())
    assert [t.table for t in plan.tasks] == ["hosp/labevents", "hosp/patients"]  # largest first
    assert all(t.option("chunk_rows") == 1000 for t in plan.tasks)
    # gzip inputs count at their estimated uncompressed size when planning shards
    assert plan.input_bytes == GZIP_EXPANSION * sum((root / f"{t.table}.csv.gz").stat().st_size for t in plan.tasks)
    assert plan.not_converted == {
        "hosp/d_labitems.csv.gz": "dictionary: read for the labels of lab item ids, no events",
        "hosp/notes.txt": "not a CSV(.gz) table file",
        "hosp/pharmacy.csv.gz": mimic.NOT_CONVERTED["hosp/pharmacy"],
        "icu/caregiver.csv.gz": "caregiver ids only, no patient events",
    }
    ignored = sorted(p.relative_to(root).as_posix() for p in mimic.find_tables(root).ignored)
    assert ignored == [
        "hosp/d_labitems.csv.gz",
        "hosp/notes.txt",
        "hosp/pharmacy.csv.gz",
        "icu/caregiver.csv.gz",
    ]
    with pytest.raises(ValueError, match="chunk_rows"):
        mimic.plan(root, chunk_rows=0)
    with pytest.raises(ValueError, match="holds no MIMIC-IV table"):
        mimic.plan(tmp_path / "nowhere")


# --- the real demo -------------------------------------------------------------------------------------
def demo_root() -> Path:
    if not MIMIC_DEMO.exists():
        pytest.skip(
            f"MIMIC-IV demo {MIMIC_DEMO} is absent (it lives in ../shared/data beside the repository)"
        )
    return MIMIC_DEMO


def source_rows(table: str) -> pl.DataFrame:
    return pl.read_csv(MIMIC_DEMO / f"{table}.csv.gz", infer_schema=False)


@pytest.fixture(scope="module")
def demo() -> dict:
    """Every demo table converted in this process: {table: (events DataFrame, quarantine rows, counts)}."""
    plan = mimic.plan(demo_root())
    result = {}
    for task in plan.tasks:
        outs = list(plan.convert(task))
        counts = RecordCounts()
        for out in outs:
            counts.add(out.counts[task.table])
        events = pl.from_arrow(pa.concat_tables([o.events for o in outs]))
        quarantine = pa.concat_tables([o.quarantine for o in outs]).to_pylist()
        result[task.table] = (events, quarantine, counts)
    return result


def test_demo_reconciles_with_the_source_tables(demo):
    assert set(demo) == set(mimic.TABLES) - {"icu/chartevents"}  # the demo has no chartevents
    for table, (_, quarantine, counts) in demo.items():
        assert counts.read == source_rows(table).height, table
        assert counts.balanced and counts.quarantined == len(quarantine), table
    # the only genuinely bad rows: eMAR administrations without a medication name
    emar = source_rows("hosp/emar")
    quarantined = {t: c.quarantined for t, (_, _, c) in demo.items() if c.quarantined}
    assert quarantined == {"hosp/emar": emar["medication"].null_count()}
    assert {q["reason"].split(": ", 1)[1] for q in demo["hosp/emar"][1]} == {
        "medication is empty; expected the administered medication's name"
    }


def test_demo_event_counts_per_table(demo):
    def n(table: str) -> int:
        return demo[table][0].height

    for one_event_per_row in (
        "hosp/labevents",
        "hosp/diagnoses_icd",
        "hosp/procedures_icd",
        "hosp/prescriptions",
        "hosp/transfers",
        "icu/inputevents",
        "icu/outputevents",
        "icu/procedureevents",
        "icu/ingredientevents",
        "icu/datetimeevents",
    ):
        assert n(one_event_per_row) == source_rows(one_event_per_row).height, one_event_per_row
    assert n("hosp/emar") == source_rows("hosp/emar")["medication"].is_not_null().sum()
    omr = source_rows("hosp/omr")
    pressures = omr["result_value"].str.contains(r"^\d+/\d+$").sum()
    assert n("hosp/omr") == omr.height + pressures
    micro = source_rows("hosp/microbiologyevents")
    assert n("hosp/microbiologyevents") == micro.height + micro["ab_name"].is_not_null().sum()
    patients = source_rows("hosp/patients")
    events = demo["hosp/patients"][0]
    assert events.filter(pl.col("code") == "MEDS_BIRTH").height == patients.height == 100
    deaths = demo["hosp/admissions"][0].filter(pl.col("code") == "MEDS_DEATH")
    in_hospital = source_rows("hosp/admissions")["deathtime"].is_not_null().sum()
    assert deaths.height == in_hospital
    assert (
        events.filter(pl.col("code") == "MEDS_DEATH").height
        == patients["dod"].is_not_null().sum() - in_hospital
    )
    recorded = demo["icu/datetimeevents"][0]  # the recorded date is kept as text, the event sits at charttime
    assert recorded["text_value"].null_count() == 0 and recorded["numeric_value"].null_count() == recorded.height
    diagnoses = demo["hosp/diagnoses_icd"][0]
    assert diagnoses["code"].str.contains(r"^ICD(9|10)CM//[A-Z0-9]{3,4}(\.[A-Z0-9]{1,4})?$").all()
    assert demo["hosp/labevents"][0]["numeric_value"].is_not_null().sum() == (
        source_rows("hosp/labevents")["valuenum"].is_not_null().sum()
    )


def test_demo_builds_a_meds_dataset_with_two_workers(tmp_path):
    from clinfm.data.dataset import build_dataset

    summary = build_dataset(mimic.plan(demo_root()), tmp_path / "meds", engine=Engine(workers=2))
    meta = json.loads((tmp_path / "meds" / schema.DATASET_FILE).read_text())
    reconciliation = meta["clinfm"]["reconciliation"]
    assert set(reconciliation) == set(mimic.TABLES) - {"icu/chartevents"}
    for table, c in reconciliation.items():
        assert c["read"] == source_rows(table).height, table
        assert c["read"] == c["converted"] + c["quarantined"], table
    assert summary.balanced and summary.subjects == 100
    # every demo file is either converted or listed with the reason it is not
    files = {p.relative_to(MIMIC_DEMO).as_posix() for p in MIMIC_DEMO.glob("*/*.csv.gz")}
    converted = {f"{t}.csv.gz" for t in reconciliation}
    assert set(meta["clinfm"]["not_converted"]) == files - converted
    assert {"hosp/pharmacy.csv.gz", "hosp/poe.csv.gz", "hosp/emar_detail.csv.gz"} <= set(meta["clinfm"]["not_converted"])
    assert {"icu/datetimeevents", "icu/ingredientevents"} <= set(reconciliation)
    quarantine = pl.read_parquet(tmp_path / "meds" / schema.QUARANTINE_FILE)
    assert (
        quarantine.height
        == meta["clinfm"]["row_counts"]["quarantined"]
        == reconciliation["hosp/emar"]["quarantined"]
    )
    codes = pl.read_parquet(tmp_path / "meds" / schema.CODES_FILE)
    described = dict(zip(codes["code"], codes["description"]))
    assert described["ICD9CM//413.9"] == "Other and unspecified angina pectoris"
    assert described["MIMIC_LAB//50912"] == "Creatinine (Blood, Chemistry)"
