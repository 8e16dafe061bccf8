"""Medication safety: ingredient matching, allergies, interactions, renal flags, duplicates, CKD-EPI 2021."""

from __future__ import annotations

import csv

import pytest

from clinfm.reasoning.treatment import (
    DATA_DIR,
    check_treatment,
    egfr_ckd_epi_2021,
    load_treatment_knowledge,
    match_medication,
    renal_function,
)


def test_eunomia_clinical_drug_names_match_at_ingredient_level():
    assert match_medication("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet").ingredients == ["amoxicillin", "clavulanate"]
    assert match_medication("Acetaminophen 325 MG Oral Tablet").rxnorm_codes == ["161"]
    assert match_medication("{7 (Ethinyl Estradiol 0.01 MG Oral Tablet) }").ingredients == ["ethinyl estradiol"]
    assert match_medication("Alendronic acid 10 MG Oral Tablet").ingredients == ["alendronate"]
    assert match_medication("11289").ingredients == ["warfarin"]  # RxNorm ingredient code
    assert match_medication("Unobtainium 5 MG") is None


@pytest.mark.parametrize(("meds", "pair", "severity"), [
    (["Warfarin Sodium 5 MG Oral Tablet", "Ibuprofen 200 MG Oral Tablet"], {"warfarin", "ibuprofen"}, "major"),
    (["sildenafil", "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray"], {"sildenafil", "nitroglycerin"}, "contraindicated"),
    (["Simvastatin 20 MG Oral Tablet", "clarithromycin"], {"simvastatin", "clarithromycin"}, "contraindicated"),
    (["oxycodone", "Diazepam 5 MG [Valium]"], {"oxycodone", "diazepam"}, "major"),
    (["32968", "7646"], {"clopidogrel", "omeprazole"}, "major"),  # RxNorm codes
    (["tizanidine", "Ciprofloxacin 500 MG Oral Tablet"], {"tizanidine", "ciprofloxacin"}, "contraindicated"),
])
def test_known_interactions_are_flagged(meds, pair, severity):
    result = check_treatment(meds, egfr=90)
    hits = [i for i in result.interactions if {i.ingredient_a, i.ingredient_b} == pair]
    assert len(hits) == 1 and hits[0].severity == severity and hits[0].source
    assert not result.safe and result.highest_severity == severity


def test_a_safe_list_is_not_flagged():
    result = check_treatment(["Acetaminophen 325 MG Oral Tablet", "Amlodipine 5 MG Oral Tablet",
                              "Levothyroxine Sodium 0.075 MG Oral Tablet"], allergies=["penicillin"], egfr=95)
    assert result.safe and not result.abstained
    assert not (result.interactions or result.allergy_conflicts or result.renal_flags or result.duplicates)


def test_allergies_with_class_cross_reactivity():
    result = check_treatment(["Amoxicillin 500 MG Oral Tablet", "Cefaclor 250 MG Oral Capsule", "meropenem",
                              "furosemide", "morphine", "fentanyl"], allergies=["penicillin", "sulfa", "codeine"])
    by = {(c.ingredient, c.allergy): c for c in result.allergy_conflicts}
    assert by[("amoxicillin", "penicillin")].severity == "contraindicated"
    ceph = by[("cefaclor", "penicillin")]
    assert ceph.relation == "cross-reactive class" and ceph.severity == "moderate" and "1-2%" in ceph.risk
    assert by[("meropenem", "penicillin")].severity == "minor"
    assert by[("furosemide", "sulfa")].severity == "minor" and "Strom" in by[("furosemide", "sulfa")].source
    assert by[("morphine", "codeine")].relation == "same class" and by[("morphine", "codeine")].severity == "major"
    assert by[("fentanyl", "codeine")].severity == "minor"
    assert check_treatment(["ibuprofen"], allergies=["ibuprofen"]).allergy_conflicts[0].relation == "same ingredient"


@pytest.mark.parametrize(("drug", "egfr", "severity"), [
    ("metformin", 29.9, "contraindicated"), ("metformin", 30, "moderate"), ("metformin", 44.9, "moderate"),
    ("metformin", 45, None), ("nitrofurantoin", 29, "major"), ("nitrofurantoin", 30, None),
    ("ibuprofen", 25, "major"), ("ibuprofen", 31, None), ("edoxaban", 96, "major"), ("edoxaban", 60, None),
    ("gabapentin", 59, "moderate"), ("gabapentin", 60, None), ("rivaroxaban", 14, "major"),
])
def test_renal_flags_fire_below_the_threshold_and_not_at_it(drug, egfr, severity):
    flags = check_treatment([drug], egfr=egfr).renal_flags
    assert [f.severity for f in flags] == ([severity] if severity else [])


def test_ckd_epi_2021_matches_hand_computation():
    # female, 50 y, creatinine 1.0: 142 * (1.0/0.7)^-1.200 * 0.9938^50 * 1.012 = 68.6
    assert egfr_ckd_epi_2021(1.0, 50, "female") == pytest.approx(68.63, abs=0.05)
    # male, 60 y, creatinine 1.2: 142 * (1.2/0.9)^-1.200 * 0.9938^60 = 69.2
    assert egfr_ckd_epi_2021(1.2, 60, "male") == pytest.approx(69.23, abs=0.05)
    # below kappa the alpha exponent applies: male 40 y, creatinine 0.7 -> 142 * (0.7/0.9)^-0.302 * 0.9938^40
    assert egfr_ckd_epi_2021(0.7, 40, "male") == pytest.approx(142 * (0.7 / 0.9) ** -0.302 * 0.9938**40)
    from_umol = renal_function(creatinine=88.42, creatinine_unit="umol/L", age=50, sex="female")
    assert from_umol.egfr == pytest.approx(68.6, abs=0.05) and from_umol.stage == "G2"
    with pytest.raises(ValueError, match="sex"):
        egfr_ckd_epi_2021(1.0, 50, "x")


def test_creatinine_drives_renal_flags_and_missing_renal_data_is_said():
    low = check_treatment(["metformin"], creatinine=3.0, age=70, sex="male")
    assert low.renal.egfr < 30 and low.renal_flags[0].severity == "contraindicated"
    unknown = check_treatment(["metformin"])
    assert not unknown.safe and any("renal dosing not checked" in w for w in unknown.warnings)


def test_duplicate_therapy():
    result = check_treatment(["Ibuprofen 200 MG Oral Tablet", "Naproxen sodium 220 MG Oral Tablet",
                              "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet",
                              "Acetaminophen 325 MG Oral Tablet", "lisinopril", "losartan"], egfr=80)
    reasons = {tuple(d.ingredients): d for d in result.duplicates}
    assert "NSAIDs" in reasons[("ibuprofen", "naproxen")].reason
    assert reasons[("acetaminophen",)].reason.startswith("same ingredient")
    assert reasons[("lisinopril", "losartan")].severity == "major"


def test_abstains_when_nothing_matches():
    result = check_treatment(["Unobtainium 5 MG", "mystery pill"])
    assert result.abstained and result.abstention_reason.startswith("insufficient evidence")
    assert not result.safe and len(result.warnings) == 2


def test_interaction_table_is_large_sourced_and_consistent():
    rows = list(csv.DictReader((DATA_DIR / "interactions.csv").open()))
    assert len(rows) >= 100
    assert all(r["source"].strip() and r["mechanism_effect"].strip() and r["management"].strip() for r in rows)
    assert {r["severity"] for r in rows} <= {"contraindicated", "major", "moderate"}
    kb = load_treatment_knowledge()
    assert len(kb.interactions) == len(rows) and kb.version.startswith("treatment-")
