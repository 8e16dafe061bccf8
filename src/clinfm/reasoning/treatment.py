"""Medication safety checks: allergies (with class cross-reactivity), interactions, renal dosing, duplicate therapy.

All knowledge is data under ``reasoning/data/`` (or a folder in the same format): ``ingredients.csv`` maps
RxNorm ingredient codes, names and synonyms to drug classes; ``drug_classes.csv`` names the classes, their
allergy aliases and which classes count as duplicate therapy; ``allergy_cross_reactivity.csv``,
``interactions.csv`` and ``renal_rules.csv`` hold the rules, each with its published source. Medications are
matched at ingredient level, so "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet" is amoxicillin +
clavulanate. Renal thresholds in labels are mostly Cockcroft-Gault creatinine clearance; eGFR is used in their
place and said so.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

from clinfm.reasoning.models import (
    AllergyConflict,
    DuplicateTherapy,
    Interaction,
    MatchedMedication,
    RenalFlag,
    RenalFunction,
    TreatmentCheck,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
TABLES = ("ingredients.csv", "drug_classes.csv", "allergy_cross_reactivity.csv", "interactions.csv", "renal_rules.csv")
SEVERITY_ORDER: dict[str, int] = {"contraindicated": 4, "major": 3, "moderate": 2, "minor": 1, "info": 0}
MG_DL_PER_UMOL_L = 1 / 88.42


@dataclass(frozen=True)
class Ingredient:
    name: str
    rxnorm_code: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class TreatmentKnowledge:
    ingredients: dict[str, Ingredient]  # by name
    by_code: dict[str, str]  # rxnorm code -> name
    patterns: list[tuple[re.Pattern, str]]  # name or synonym -> ingredient, longest first
    classes: dict[str, dict[str, str]]  # drug_class -> row
    class_alias: dict[str, str]  # allergy alias -> drug_class
    cross: list[dict[str, str]]
    interactions: dict[frozenset[str], dict[str, str]]
    renal: list[dict[str, str]]
    version: str


def load_treatment_knowledge(path: str | Path | None = None) -> TreatmentKnowledge:
    """Load (and cache) the medication tables from a folder (default: the package's ``reasoning/data``)."""
    return _load(Path(path or DATA_DIR).resolve())


@lru_cache(maxsize=4)
def _load(folder: Path) -> TreatmentKnowledge:
    missing = [t for t in TABLES if not (folder / t).is_file()]
    if missing:
        raise FileNotFoundError(f"treatment knowledge folder {folder} lacks {', '.join(missing)}")
    raw = {t: (folder / t).read_bytes() for t in TABLES}
    rows = {t: list(csv.DictReader(raw[t].decode().splitlines())) for t in TABLES}
    ingredients, patterns, by_code = {}, [], {}
    for r in rows["ingredients.csv"]:
        ing = Ingredient(r["ingredient"], r["rxnorm_code"], tuple(c for c in r["drug_class"].split("|") if c))
        ingredients[ing.name] = ing
        if ing.rxnorm_code:
            by_code[ing.rxnorm_code] = ing.name
        for term in [ing.name, *(s for s in r["synonyms"].split("|") if s)]:
            patterns.append((re.compile(rf"(?<![a-z0-9]){re.escape(term.lower())}(?![a-z0-9])"), ing.name))
    patterns.sort(key=lambda p: -len(p[0].pattern))
    classes = {r["drug_class"]: r for r in rows["drug_classes.csv"]}
    alias = {a.lower(): r["drug_class"] for r in rows["drug_classes.csv"] for a in r["aliases"].split("|") if a}
    interactions = {frozenset((r["ingredient_a"], r["ingredient_b"])): r for r in rows["interactions.csv"]}
    for pair in interactions:
        unknown = [i for i in pair if i not in ingredients]
        if unknown:
            raise ValueError(f"interactions.csv names {unknown}, absent from ingredients.csv")
    digest = hashlib.sha256(b"".join(t.encode() + b"\0" + raw[t] for t in TABLES)).hexdigest()[:16]
    return TreatmentKnowledge(ingredients, by_code, patterns, classes, alias, rows["allergy_cross_reactivity.csv"],
                              interactions, rows["renal_rules.csv"], f"treatment-{digest}")


# --- matching ---------------------------------------------------------------------------------------------------

def match_medication(text: str, kb: TreatmentKnowledge | None = None) -> MatchedMedication | None:
    """Ingredients of a medication given as an RxNorm ingredient code or a (clinical drug) name; None if unknown."""
    kb = kb or load_treatment_knowledge()
    names = [kb.by_code[text.strip()]] if text.strip() in kb.by_code else _ingredients_in(text, kb)
    if not names:
        return None
    ings = [kb.ingredients[n] for n in names]
    return MatchedMedication(input=text, ingredients=names, rxnorm_codes=[i.rxnorm_code for i in ings],
                             drug_classes=sorted({c for i in ings for c in i.classes}))


def _ingredients_in(text: str, kb: TreatmentKnowledge) -> list[str]:
    """Longest names first, each match blanked out, so 'ethinyl estradiol' is not also 'estradiol'."""
    rest, found = text.lower(), []
    for pattern, name in kb.patterns:
        if pattern.search(rest):
            rest = pattern.sub(" ", rest)
            if name not in found:
                found.append(name)
    return found


def resolve_allergy(text: str, kb: TreatmentKnowledge | None = None) -> tuple[set[str], set[str], bool] | None:
    """An allergy as (ingredients, drug classes, given_as_class); None when neither is recognised."""
    kb = kb or load_treatment_knowledge()
    term = text.strip().lower()
    if term in kb.class_alias:
        return set(), {kb.class_alias[term]}, True
    med = match_medication(text, kb)
    if med is None:
        return None
    return set(med.ingredients), set(med.drug_classes), False


# --- renal function ---------------------------------------------------------------------------------------------

def egfr_ckd_epi_2021(creatinine_mg_dl: float, age: float, sex: str) -> float:
    """Race-free CKD-EPI 2021 eGFR (mL/min/1.73 m2) from serum creatinine (Inker et al., NEJM 2021;385:1737)."""
    if creatinine_mg_dl <= 0 or not 18 <= age <= 120 or sex not in ("female", "male"):
        raise ValueError(f"CKD-EPI 2021 needs creatinine > 0 mg/dL (got {creatinine_mg_dl!r}), adult age 18-120 "
                         f"(got {age!r}) and sex 'female' or 'male' (got {sex!r})")
    female = sex == "female"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age
    return egfr * 1.012 if female else egfr


def ckd_stage(egfr: float) -> str:
    for bound, stage in ((90, "G1"), (60, "G2"), (45, "G3a"), (30, "G3b"), (15, "G4")):
        if egfr >= bound:
            return stage
    return "G5"


def renal_function(egfr: float | None = None, creatinine: float | None = None, creatinine_unit: str = "mg/dL",
                   age: float | None = None, sex: str | None = None) -> RenalFunction | None:
    """The eGFR to check against: given directly, else CKD-EPI 2021 from creatinine, age and sex; else None."""
    if egfr is not None:
        return RenalFunction(egfr=round(egfr, 1), method="reported eGFR", stage=ckd_stage(egfr))
    if creatinine is None or age is None or sex is None:
        return None
    unit = creatinine_unit.replace(" ", "").lower()
    if unit not in ("mg/dl", "umol/l", "µmol/l"):
        raise ValueError(f"creatinine unit {creatinine_unit!r} is not mg/dL or umol/L")
    mg_dl = creatinine if unit == "mg/dl" else creatinine * MG_DL_PER_UMOL_L
    value = egfr_ckd_epi_2021(mg_dl, age, sex)
    return RenalFunction(egfr=round(value, 1), method="CKD-EPI 2021 (creatinine, race-free)",
                         creatinine_mg_dl=round(mg_dl, 3), stage=ckd_stage(value))


# --- the checks -------------------------------------------------------------------------------------------------

def allergy_conflicts(meds: list[MatchedMedication], allergies: list[str],
                      kb: TreatmentKnowledge) -> tuple[list[AllergyConflict], list[str]]:
    """Conflicts between medications and allergies, plus the allergies that could not be recognised."""
    out: dict[tuple[str, str, str], AllergyConflict] = {}
    unmatched = []
    for allergy in allergies:
        resolved = resolve_allergy(allergy, kb)
        if resolved is None:
            unmatched.append(allergy)
            continue
        a_ings, a_classes, as_class = resolved
        for med in meds:
            for name in med.ingredients:
                for c in _allergy_hits(name, a_ings, a_classes, as_class, kb):
                    c = c.model_copy(update={"medication": med.input, "allergy": allergy})
                    key = (med.input, name, allergy)
                    if key not in out or _rank(c.severity) > _rank(out[key].severity):
                        out[key] = c
    return list(out.values()), unmatched


def _allergy_hits(name: str, a_ings: set[str], a_classes: set[str], as_class: bool,
                  kb: TreatmentKnowledge) -> list[AllergyConflict]:
    classes = set(kb.ingredients[name].classes)
    hits = []
    if name in a_ings:
        hits.append(AllergyConflict(medication="", ingredient=name, allergy="", relation="same ingredient",
                                    severity="contraindicated", risk="documented allergy to this ingredient",
                                    source="patient allergy list"))
    for rule in kb.cross:
        if rule["allergy_class"] in a_classes and rule["drug_class"] in classes:
            same = rule["relation"] == "same class" or (as_class and rule["allergy_class"] == rule["drug_class"])
            hits.append(AllergyConflict(medication="", ingredient=name, allergy="",
                                        relation="same class" if same else "cross-reactive class",
                                        severity=rule["severity"], risk=rule["risk"], source=rule["source"]))
    if as_class and classes & a_classes and not hits:
        hits.append(AllergyConflict(medication="", ingredient=name, allergy="", relation="same class",
                                    severity="major", risk="member of the class named in the allergy",
                                    source="patient allergy list"))
    return hits


def interactions(meds: list[MatchedMedication], kb: TreatmentKnowledge) -> list[Interaction]:
    """Curated interacting ingredient pairs present across different medications."""
    where: dict[str, list[str]] = {}
    for med in meds:
        for name in med.ingredients:
            where.setdefault(name, []).append(med.input)
    out = []
    for a, b in combinations(sorted(where), 2):
        rule = kb.interactions.get(frozenset((a, b)))
        if rule and any(m1 != m2 for m1 in where[a] for m2 in where[b]):  # not a fixed-dose combination's own pair
            out.append(Interaction(ingredient_a=a, ingredient_b=b, medications=sorted(set(where[a] + where[b])),
                                   severity=rule["severity"], effect=rule["mechanism_effect"],
                                   management=rule["management"], source=rule["source"]))
    return sorted(out, key=lambda i: -_rank(i.severity))


def renal_flags(meds: list[MatchedMedication], egfr: float, kb: TreatmentKnowledge) -> list[RenalFlag]:
    """Renal dosing rules whose eGFR range [min, max) contains ``egfr``."""
    out = []
    for med in meds:
        for name in med.ingredients:
            for rule in kb.renal:
                low = float(rule["egfr_min"] or 0)
                high = float(rule["egfr_max"] or math.inf)
                if rule["ingredient"] == name and low <= egfr < high:
                    out.append(RenalFlag(ingredient=name, medication=med.input, egfr=egfr, rule=_range(low, high),
                                         severity=rule["severity"], action=rule["action"], source=rule["source"]))
    return out


def _range(low: float, high: float) -> str:
    if low == 0:
        return f"< {high:g}"
    return f">= {low:g}" if math.isinf(high) else f"{low:g} to < {high:g}"


def duplicate_therapy(meds: list[MatchedMedication], kb: TreatmentKnowledge) -> list[DuplicateTherapy]:
    """The same ingredient in two medications, or two ingredients of a duplicate-therapy class."""
    out = []
    for m1, m2 in combinations(meds, 2):
        same = sorted(set(m1.ingredients) & set(m2.ingredients))
        if same:
            out.append(DuplicateTherapy(medications=[m1.input, m2.input], ingredients=same, severity="major",
                                        reason=f"same ingredient in both: {', '.join(same)} (cumulative dose)"))
            continue
        for a in m1.ingredients:
            for b in m2.ingredients:
                shared = [c for c in set(kb.ingredients[a].classes) & set(kb.ingredients[b].classes)
                          if kb.classes.get(c, {}).get("duplicate_severity")]
                if shared:
                    sev = max((kb.classes[c]["duplicate_severity"] for c in shared), key=_rank)
                    names = ", ".join(sorted(kb.classes[c]["display_name"] for c in shared))
                    out.append(DuplicateTherapy(medications=[m1.input, m2.input], ingredients=[a, b], severity=sev,
                                                reason=f"two drugs of the same class: {names}"))
    return out


def check_treatment(medications: list[str], allergies: list[str] | None = None, egfr: float | None = None,
                    creatinine: float | None = None, creatinine_unit: str = "mg/dL", age: float | None = None,
                    sex: str | None = None, kb: TreatmentKnowledge | None = None) -> TreatmentCheck:
    """Every safety check on a medication list; abstains when no medication can be matched."""
    kb = kb or load_treatment_knowledge()
    allergies = list(allergies or [])
    matched = {m: match_medication(m, kb) for m in medications}
    meds = [m for m in matched.values() if m is not None]
    unmatched = [m for m, v in matched.items() if v is None]
    renal = renal_function(egfr, creatinine, creatinine_unit, age, sex)
    conflicts, unknown_allergies = allergy_conflicts(meds, allergies, kb)
    found: dict[str, Sequence[AllergyConflict | Interaction | RenalFlag | DuplicateTherapy]] = {
        "allergy_conflicts": conflicts,
        "interactions": interactions(meds, kb),
        "renal_flags": renal_flags(meds, renal.egfr, kb) if renal else [],
        "duplicates": duplicate_therapy(meds, kb),
    }
    warnings = [f"medication {m!r} not matched to a known ingredient: not checked" for m in unmatched]
    warnings += [f"allergy {a!r} not recognised: not checked" for a in unknown_allergies]
    renal_drugs = sorted({i for m in meds for i in m.ingredients} & {r["ingredient"] for r in kb.renal})
    if renal is None and renal_drugs:
        warnings.append(f"renal dosing not checked for {', '.join(renal_drugs)}: give eGFR, or creatinine with age "
                        "and sex")
    if renal and renal_drugs and renal.method != "reported eGFR":
        warnings.append("labels state renal thresholds as Cockcroft-Gault creatinine clearance; eGFR is used in its "
                        "place: recompute CrCl with body weight near a threshold")
    severities = [f.severity for group in found.values() for f in group]
    ranked = sorted(severities, key=_rank)
    highest = ranked[-1] if ranked else None
    unchecked = bool(unmatched or unknown_allergies or (renal is None and renal_drugs))
    reason = None if meds else (f"insufficient evidence: none of the {len(medications)} medications could be matched "
                                "to a known ingredient" if medications else "insufficient evidence: no medications given")
    return TreatmentCheck(
        medications=meds, unmatched=unmatched, allergies=allergies, unmatched_allergies=unknown_allergies,
        renal=renal, **found, highest_severity=highest,
        safe=bool(meds) and not unchecked and (highest is None or _rank(highest) < _rank("moderate")),
        abstained=reason is not None, abstention_reason=reason, warnings=warnings, kb_version=kb.version,
    )


def _rank(severity: str) -> int:
    return SEVERITY_ORDER[severity]

