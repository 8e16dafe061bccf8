"""Corpus A, "hospital": templated hospital documents of 8 kinds (discharge summary, clinic letter, radiology,
pathology, emergency department, referral, nursing admission, progress note), in the style of EHR print-outs:
patient banners, labelled header fields, signature blocks. Names and places come from Faker's locales.

Gold conventions: a name without its title or credential; the value of an identifier without its label; an
address as street + town and postcode, the state neutral; an age only when over 89; hospital names neutral.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from faker import Faker

from .builder import NEUTRAL, TRAP, NoteBuilder

NAME = "hospital"
# Name locales: US English most often, then the languages of a US hospital's patients and staff.
LOCALES = (
    ("en_US", 6), ("es_MX", 2), ("vi_VN", 1), ("de_DE", 1), ("fr_FR", 1), ("it_IT", 1), ("pl_PL", 1),
    ("pt_BR", 1), ("nl_NL", 1), ("ga_IE", 1), ("tr_TR", 1), ("hu_HU", 1), ("cs_CZ", 1),
)  # fmt: skip
HOSPITALS = (
    "Mercy Ridge Medical Center", "St. Brendan's Hospital", "Lakeview General Hospital",
    "Northfield University Hospital", "Good Samaritan Regional", "Riverside Community Hospital",
)  # fmt: skip
DEPARTMENTS = (
    "Emergency Department", "Cardiology Clinic", "Medical ICU", "Department of Radiology",
    "Pathology Department", "Internal Medicine", "Orthopaedic Surgery", "Neurology Clinic", "Pharmacy",
)  # fmt: skip
BIOMETRICS = {
    "palm-vein": "PV",
    "fingerprint": "FP",
    "iris scan": "IR",
    "voiceprint": "VP",
    "facial geometry": "FG",
}
CREDENTIALS = ("MD", "DO", "RN", "NP", "PA-C", "MD, PhD", "RN, BSN", "MD, FACC")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# Look-alikes that must stay: eponyms, drugs, scores, vitals, doses, lab values, codes.
EPONYMS = (
    "Parkinson disease", "Foley catheter", "Apgar scores of 8 and 9", "Glasgow Coma Scale 15", "Babinski sign",
    "Murphy's sign", "Hodgkin lymphoma", "Crohn's disease", "Bell's palsy", "Graves disease", "Cushing syndrome",
    "Alzheimer dementia", "Homans sign", "Swan-Ganz catheter", "Whipple procedure", "Nissen fundoplication",
    "Colles fracture", "Addison disease", "Hashimoto thyroiditis", "Barrett esophagus", "Guillain-Barre syndrome",
)  # fmt: skip
DRUGS = (
    "Lasix 40 mg IV BID", "metoprolol tartrate 25 mg PO BID", "Eliquis 5 mg twice daily", "Keppra 500 mg",
    "Zosyn 3.375 g q6h", "Coumadin 5 mg", "Tylenol 650 mg q6h PRN", "lisinopril 10 mg daily",
    "atorvastatin 40 mg nightly", "insulin glargine 18 units", "Augmentin 875 mg", "heparin 5000 units SC",
)  # fmt: skip
NUMBERS = (
    "BP 132/84", "a 2/6 systolic murmur", "pain 7/10", "HR 88", "SpO2 96% on 2 L", "Na 138, K 4.1, Cr 1.2",
    "Hgb 10.4", "INR 2.3", "ICD-10 I50.23", "ICD-10 E11.9", "CPT 99223", "T 38.2 C", "RR 18", "EF 35%",
    "5 mg/kg", "stage 3", "1.5 x 1.2 cm", "pT2 N0 M0", "G2P1", "A1c 7.8%", "WBC 11.2", "BMI 31.4",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    first: str
    middle: str
    last: str


def _locale(rng: random.Random) -> str:
    names, weights = zip(*LOCALES)
    return rng.choices(names, weights)[0]


class _Pools:
    """Faker instances, one per locale, seeded per note: the same seed gives the same corpus."""

    def __init__(self, seed: int) -> None:
        self.fakers = {loc: Faker(loc) for loc, _ in LOCALES}
        self.us = self.fakers["en_US"]
        for i, fake in enumerate(self.fakers.values()):
            fake.seed_instance(seed * 1000 + i)

    def person(self, rng: random.Random) -> Person:
        fake = self.fakers[_locale(rng)]
        middle = fake.first_name()[0] if rng.random() < 0.6 else ""
        return Person(fake.first_name(), middle, fake.last_name())


def name_forms(rng: random.Random, p: Person, header: bool = False) -> str:
    """One of the ways a hospital document writes a name; headers favour `LAST, FIRST M.` in capitals."""
    mid = f" {p.middle}." if p.middle else ""
    forms = [
        f"{p.first} {p.last}",
        f"{p.first}{mid} {p.last}",
        f"{p.last}, {p.first}{mid}",
        f"{p.last.upper()}, {p.first.upper()}{mid.upper()}",
        f"{p.first.upper()} {p.last.upper()}",
    ]
    weights = (1, 1, 1, 3, 1) if header else (4, 3, 1, 1, 1)
    return rng.choices(forms, weights)[0]


def date_forms(rng: random.Random, d: dt.date, year: bool = True) -> str:
    month = MONTHS[d.month - 1]
    if not year:
        return rng.choice(
            [f"{d.month}/{d.day}", f"{month[:3]} {d.day}", f"{d.day} {month}", f"{month} {d.day}"]
        )
    return rng.choice(
        [
            f"{d:%m/%d/%Y}",
            f"{d.month}/{d.day}/{d:%y}",
            f"{d:%Y-%m-%d}",
            f"{month} {d.day}, {d.year}",
            f"{d.day} {month[:3]} {d.year}",
            f"{d:%d}{month[:3].upper()}{d.year}",
            f"{d:%d}-{month[:3]}-{d.year}",
            f"{d:%m.%d.%Y}",
            f"{month[:3]}. {d.day}, {d.year}",
        ]
    )


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))


def mrn(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(
        [
            "MRN",
            "MRN#",
            "Med Rec #",
            "Medical Record No.",
            "Unit No.",
            "Hosp. no.",
            "Hospital Number",
            "Chart #",
            "EMPI",
            "Record #",
        ]
    )
    value = rng.choice(
        [
            _digits(rng, 8),
            f"{_letters(rng, 2)}{_digits(rng, 2)}-{_digits(rng, 2)}-{_digits(rng, 2)}",
            f"{_digits(rng, 4)}/{rng.randint(2015, 2025)}",
            f"{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 3)}",
            f"M{_digits(rng, 7)}",
            _digits(rng, 7),
        ]
    )
    return label, value


def health_plan(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(
        [
            "Member ID",
            "Subscriber No.",
            "Policy #",
            "Medicaid ID",
            "Medicare Beneficiary ID",
            "Insurance ID",
            "Plan Member No.",
            "Beneficiary No.",
        ]
    )
    mbi = f"{rng.randint(1, 9)}{_letters(rng, 1)}{_letters(rng, 1)}{_digits(rng, 1)}-{_letters(rng, 2)}{_digits(rng, 1)}-{_letters(rng, 2)}{_digits(rng, 2)}"
    value = rng.choice(
        [
            f"{_letters(rng, 3)}{_digits(rng, 9)}",
            f"{_letters(rng, 3)} {_digits(rng, 3)} {_digits(rng, 2)} {_digits(rng, 4)}",
            f"W{_digits(rng, 9)}",
            mbi,
            f"{_digits(rng, 9)}-{_digits(rng, 2)}",
        ]
    )
    return label, value


def account(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(
        ["Acct #", "Account No.", "Visit Account", "Billing Acct", "FIN", "Encounter Acct No."]
    )
    return label, rng.choice(
        [_digits(rng, 10), f"{_digits(rng, 4)}-{_digits(rng, 6)}", f"A{_digits(rng, 9)}"]
    )


def other_id(rng: random.Random, kind: str) -> tuple[str, str]:
    if kind == "radiology":
        return rng.choice(
            ["Accession #", "Exam No.", "Order #"]
        ), f"{rng.choice(['CT', 'MR', 'XR', 'US'])}-{rng.randint(2019, 2025)}-{_digits(rng, 7)}"
    if kind == "pathology":
        return rng.choice(
            ["Case #", "Specimen ID", "Surgical Path No."]
        ), f"{rng.choice(['SP', 'S', 'CY'])}{_digits(rng, 2)}-{_digits(rng, 5)}"
    return rng.choice(
        ["Encounter ID", "Requisition No.", "Study ID", "Referral #"]
    ), f"{_letters(rng, 2)}{_digits(rng, 6)}"


def phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), _digits(rng, 4)
    return rng.choice(
        [
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"+1 {a} {b} {c}",
            f"{a}-{b}-{c} ext. {rng.randint(100, 9999)}",
            f"0044 20 {_digits(rng, 4)} {_digits(rng, 4)}",
            f"+44 161 {_digits(rng, 3)} {_digits(rng, 4)}",
        ]
    )


def ssn(rng: random.Random) -> tuple[str, str, str]:
    """(label text, value, text after): full SSNs and the last four after an SSN label."""
    four = _digits(rng, 4)
    full = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99)}-{four}"
    return rng.choice(
        [
            ("SSN: ", full, ""),
            ("Social Security No. ", full.replace("-", " "), ""),
            ("SSN (last 4): ", four, ""),
            ("SS# xxx-xx-", four, ""),
            ("SSN ending in ", four, ""),
            ("Soc. Sec. #: ", full.replace("-", ""), ""),
        ]
    )


def age_over_89(rng: random.Random) -> tuple[str, str, str]:
    age = rng.randint(90, 104)
    words = {
        90: "ninety",
        91: "ninety-one",
        92: "ninety-two",
        93: "ninety-three",
        94: "ninety-four",
        95: "ninety-five",
        96: "ninety-six",
        97: "ninety-seven",
        98: "ninety-eight",
        99: "ninety-nine",
    }
    return rng.choice(
        [
            ("", str(age), "-year-old"),
            ("", str(age), " y/o"),
            ("age ", str(age), ""),
            ("aged ", str(age), " years"),
            ("", str(age), " yo"),
            ("age ", words.get(age, str(age)), ""),
            ("", str(age), "F"),
            ("", str(age), "M"),
        ]
    )


class _Writer:
    """Shared pieces of every document kind: banner, addresses, ids, traps, signature."""

    def __init__(self, rng: random.Random, pools: _Pools, kind: str) -> None:
        self.rng, self.pools, self.kind = rng, pools, kind
        self.b = NoteBuilder()
        self.patient = pools.person(rng)
        self.doctor = pools.person(rng)
        self.other_clin = pools.person(rng)
        start = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randint(0, 3650))
        self.visit = start
        self.dob = start - dt.timedelta(days=rng.randint(18 * 365, 89 * 365))
        self.hospital = rng.choice(HOSPITALS)

    def name(self, p: Person, header: bool = False) -> tuple[str, str]:
        return ("NAME", name_forms(self.rng, p, header))

    def date(self, d: dt.date, year: bool = True) -> tuple[str, str]:
        return ("DATE", date_forms(self.rng, d, year))

    def later(self, days: int) -> dt.date:
        return self.visit + dt.timedelta(days=self.rng.randint(1, days))

    def eponym(self) -> tuple[str, str]:
        return (TRAP, self.rng.choice(EPONYMS))

    def drug(self) -> tuple[str, str]:
        return (TRAP, self.rng.choice(DRUGS))

    def number(self) -> tuple[str, str]:
        return (TRAP, self.rng.choice(NUMBERS))

    def banner(self) -> None:
        rng, b = self.rng, self.b
        label, value = mrn(rng)
        b.fill("{hosp}\n", hosp=(NEUTRAL, self.hospital))
        b.fill("{dept}\n", dept=(TRAP, rng.choice(DEPARTMENTS)))
        style = rng.randrange(3)
        if style == 0:
            b.fill(
                "Patient: {pt}    {lab}: {mrn}    DOB: {dob}\n",
                pt=self.name(self.patient, True),
                lab=label,
                mrn=("MRN", value),
                dob=self.date(self.dob),
            )
        elif style == 1:
            b.fill(
                "NAME: {pt}\nDOB: {dob}  Sex: {sex}\n{lab}:{mrn}\n",
                pt=self.name(self.patient, True),
                dob=self.date(self.dob),
                sex=rng.choice("FM"),
                lab=label,
                mrn=("MRN", value),
            )
        else:
            b.fill(
                "{pt} | {lab} {mrn} | Born {dob}\n",
                pt=self.name(self.patient, True),
                lab=label,
                mrn=("MRN", value),
                dob=self.date(self.dob),
            )
        if rng.random() < 0.6:
            acl, acv = account(rng)
            b.fill(
                "{lab}: {v}    Date of Service: {dos}\n",
                lab=acl,
                v=("ACCOUNT_NUMBER", acv),
                dos=self.date(self.visit),
            )
        else:
            b.fill("Date of service: {dos}\n", dos=self.date(self.visit))
        if rng.random() < 0.5:
            hl, hv = health_plan(rng)
            b.fill(
                "Insurance: {plan}  {lab}: {v}\n",
                plan=rng.choice(["Medicare", "BlueCross", "Aetna", "Medicaid", "United Healthcare"]),
                lab=hl,
                v=("HEALTH_PLAN_ID", hv),
            )
        b.add("\n")

    def address(self) -> None:
        us = self.pools.us
        street = us.street_address()
        if self.rng.random() < 0.3 and not any(w in street for w in ("Apt", "Suite")):
            street += f", {self.rng.choice(['Apt', 'Unit', 'Suite', '#'])} {self.rng.randint(1, 40)}"
        sep = "\n" if self.rng.random() < 0.4 else ", "
        self.b.fill(
            "{street}{state} {zip}",
            street=("ADDRESS", f"{street}{sep}{us.city()}"),
            state=(NEUTRAL, f", {us.state_abbr()}"),
            zip=("ADDRESS", us.zipcode()),
        )

    def signature(self) -> None:
        rng, b = self.rng, self.b
        doc = self.doctor
        cred = rng.choice(CREDENTIALS)
        style = rng.randrange(4)
        if style == 0:
            b.fill(
                "\nElectronically signed by: {n}, {c} on {d} 14:{mm}\n",
                n=("NAME", f"{doc.first} {doc.last}"),
                c=cred,
                d=self.date(self.later(3)),
                mm=f"{rng.randint(0, 59):02d}",
            )
        elif style == 1:
            mid = f" {doc.middle}." if doc.middle else ""
            b.fill(
                "\n{n}, {c}\n{dept}\n",
                n=("NAME", f"{doc.first}{mid} {doc.last}"),
                c=cred,
                dept=(TRAP, rng.choice(DEPARTMENTS)),
            )
        elif style == 2:
            b.fill(
                "\nDictated by: Dr. {n}   Transcribed: {d}\n",
                n=("NAME", doc.last),
                d=self.date(self.later(2)),
            )
        else:
            b.fill("\n-- {n} {c}\n", n=("NAME", f"{doc.first.upper()} {doc.last.upper()}"), c=cred)
        if rng.random() < 0.5:
            b.fill("Tel {p}   Fax: {f}\n", p=("PHONE", phone(rng)), f=("FAX", phone(rng)))
        if rng.random() < 0.35:
            b.fill("cc: {a}; {c}\n", a=self.name(self.other_clin), c=self.name(self.pools.person(rng)))


def _identity_extras(w: _Writer) -> None:
    """Rarer identifiers, sprinkled over all kinds so each appears often enough to be measured."""
    rng, b = w.rng, w.b
    pick = rng.random()
    if pick < 0.12:
        b.fill(
            "Identity confirmed with {kind} template ID {v} before {proc}.\n",
            kind=(bio := rng.choice(list(BIOMETRICS))),
            v=("BIOMETRIC_ID", f"{BIOMETRICS[bio]}-{_digits(rng, 4)}-{_digits(rng, 3)}{_letters(rng, 1)}"),
            proc=rng.choice(["blood draw", "transfusion", "the procedure"]),
        )
    elif pick < 0.22:
        plate = rng.choice(
            [
                f"{rng.randint(1, 9)}{_letters(rng, 3)}{_digits(rng, 3)}",
                f"{_letters(rng, 3)}-{_digits(rng, 4)}",
                f"{_digits(rng, 3)} {_letters(rng, 3)}",
            ]
        )
        b.fill(
            "Brought in after MVC; vehicle VIN {vin}, license plate {plate} ({state}).\n",
            vin=("VEHICLE_ID", w.pools.us.vin()),
            plate=("VEHICLE_ID", plate),
            state=rng.choice(["California", "MA", "Texas", "NY", "Ohio"]),
        )
    elif pick < 0.34:
        b.fill(
            "{dev} in place, serial no. {sn}, model {model}.\n",
            dev=rng.choice(["Dual-chamber pacemaker", "Insulin pump", "ICD", "Cochlear implant", "LVAD"]),
            sn=("DEVICE_ID", f"{_letters(rng, 3)}{_digits(rng, 6)}"),
            model=f"{_letters(rng, 2)}{_digits(rng, 4)}",
        )
    elif pick < 0.44:
        lab = rng.choice(["Driver's license", "DL #", "State ID no."])
        b.fill(
            "{lab} {v} verified at registration.\n",
            lab=lab,
            v=("LICENSE_NUMBER", f"{_letters(rng, 1)}{_digits(rng, 8)}"),
        )
    elif pick < 0.52:
        b.fill("Prescriber DEA # {v}.\n", v=("LICENSE_NUMBER", f"{_letters(rng, 2)}{_digits(rng, 7)}"))
    elif pick < 0.62:
        label, value, after = ssn(rng)
        b.fill("{lab}{v}{after}\n", lab=label, v=("SSN", value), after=after)
    elif pick < 0.72:
        b.fill(
            "Results released to the portal at {url}; accessed from IP {ip}.\n",
            url=(
                "URL",
                rng.choice(
                    [
                        f"https://portal.{w.pools.us.domain_name()}/results",
                        f"www.{w.pools.us.domain_name()}",
                        f"http://{w.pools.us.domain_name()}/pt/{_digits(rng, 6)}",
                    ]
                ),
            ),
            ip=("IP_ADDRESS", w.pools.us.ipv4() if rng.random() < 0.8 else w.pools.us.ipv6()),
        )
    elif pick < 0.85:
        b.fill("Patient email: {e}\n", e=("EMAIL", w.pools.us.free_email()))


def discharge_summary(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add("DISCHARGE SUMMARY\n")
    w.banner()
    b.fill(
        "Admission Date: {a}    Discharge Date: {d}\nAttending: {att}\n",
        a=w.date(w.visit),
        d=w.date(w.later(9)),
        att=w.name(w.doctor),
    )
    if rng.random() < 0.5:
        pre, age, post = age_over_89(rng)
        b.fill(
            "\nHPI: {pre}{age}{post} with history of {t} admitted for CHF exacerbation.",
            pre=pre,
            age=("AGE_OVER_89", age),
            post=post,
            t=w.eponym(),
        )
    else:
        b.fill(
            "\nHPI: {a}-year-old with history of {t} admitted for CHF exacerbation.",
            a=str(rng.randint(20, 89)),
            t=w.eponym(),
        )
    b.fill(" Exam notable for {t1} and {t2}.\n", t1=w.number(), t2=w.number())
    b.fill(
        "Hospital course: diuresed with {t}; {t2} on {d}.\n",
        t=w.drug(),
        t2=w.number(),
        d=w.date(w.later(5), year=rng.random() < 0.5),
    )
    b.fill("Discharged home with daughter {rel} at ", rel=w.name(w.pools.person(rng)))
    w.address()
    b.add(".\n")
    b.fill(
        "Follow up with {pcp} on {d}. Call {p} with questions.\n",
        pcp=w.name(w.other_clin),
        d=w.date(w.later(30), year=rng.random() < 0.4),
        p=("PHONE", phone(rng)),
    )
    _identity_extras(w)
    w.signature()


def clinic_letter(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.fill("{hosp}\n{dept}\n", hosp=(NEUTRAL, w.hospital), dept=(TRAP, rng.choice(DEPARTMENTS)))
    b.fill("{d}\n\nRe: {pt}, DOB {dob}\n", d=w.date(w.visit), pt=w.name(w.patient, True), dob=w.date(w.dob))
    label, value = mrn(rng)
    b.fill("{lab}: {v}\n\nDear Dr. {ref},\n\n", lab=label, v=("MRN", value), ref=("NAME", w.other_clin.last))
    b.fill(
        "Thank you for referring {title} {pt}, whom I saw in clinic today for {t}. ",
        title=rng.choice(["Mr.", "Ms.", "Mrs."]),
        pt=("NAME", w.patient.last),
        t=w.eponym(),
    )
    b.fill(
        "Vitals: {t1}, {t2}. Current medications include {t3}.\n",
        t1=(TRAP, "BP 132/84"),
        t2=w.number(),
        t3=w.drug(),
    )
    b.fill(
        "The patient lives at ",
    )
    w.address()
    b.fill(
        " and can be reached on {p} or {e}.\n", p=("PHONE", phone(rng)), e=("EMAIL", w.pools.us.free_email())
    )
    if rng.random() < 0.4:
        pre, age, post = age_over_89(rng)
        b.fill(
            "Given the patient's age ({pre}{age}{post}) we agreed on conservative management.\n",
            pre=pre,
            age=("AGE_OVER_89", age),
            post=post,
        )
    b.fill("I will see them again on {d}.\n", d=w.date(w.later(60), year=rng.random() < 0.5))
    _identity_extras(w)
    b.add("\nYours sincerely,\n")
    w.signature()


def radiology_report(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add(
        rng.choice(
            [
                "RADIOLOGY REPORT\n",
                "CT CHEST WITH CONTRAST\n",
                "MRI BRAIN WITHOUT CONTRAST\n",
                "XR CHEST 2 VIEWS\n",
            ]
        )
    )
    w.banner()
    lab, v = other_id(rng, "radiology")
    b.fill(
        "{lab}: {v}    Exam date: {d}\nOrdering: {o}\n",
        lab=lab,
        v=("OTHER_ID", v),
        d=w.date(w.visit),
        o=w.name(w.other_clin),
    )
    if rng.random() < 0.4:
        pre, age, post = age_over_89(rng)
        b.fill(
            "CLINICAL HISTORY: {pre}{age}{post} with {t}.\n",
            pre=pre,
            age=("AGE_OVER_89", age),
            post=post,
            t=w.eponym(),
        )
    else:
        b.fill("CLINICAL HISTORY: {t}, rule out PE.\n", t=w.eponym())
    b.fill(
        "COMPARISON: {d}.\nFINDINGS: {t}. No acute process. Patient on {t2}.\n",
        d=w.date(w.later(400) - dt.timedelta(days=800)),
        t=w.number(),
        t2=w.drug(),
    )
    if rng.random() < 0.3:
        b.fill(
            "Pacemaker generator, serial {sn}, left chest wall.\n",
            sn=("DEVICE_ID", f"{_letters(rng, 3)}{_digits(rng, 7)}"),
        )
    b.fill(
        "IMPRESSION: findings discussed with {n} by telephone at {p} on {d}.\n",
        n=w.name(w.other_clin),
        p=("PHONE", phone(rng)),
        d=w.date(w.visit, year=False),
    )
    _identity_extras(w)
    w.signature()


def pathology_report(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add("SURGICAL PATHOLOGY REPORT\n")
    lab, v = other_id(rng, "pathology")
    b.fill("{lab}: {v}\n", lab=lab, v=("OTHER_ID", v))
    w.banner()
    b.fill(
        "Collected: {c}   Received: {r}   Surgeon: {s}\n",
        c=w.date(w.visit),
        r=w.date(w.visit),
        s=w.name(w.other_clin),
    )
    b.fill(
        "CLINICAL INFORMATION: history of {t}.\nGROSS: {sz} mass; preoperative {t2}.\n",
        t=w.eponym(),
        sz=(TRAP, "1.5 x 1.2 cm"),
        t2=w.number(),
    )
    b.fill(
        "DIAGNOSIS: invasive ductal carcinoma, {st}; see synoptic report. Coded {t}.\n",
        st=(TRAP, "pT2 N0 M0"),
        t=(TRAP, rng.choice(["ICD-10 C50.911", "ICD-10 C50.412", "CPT 88307"])),
    )
    b.fill(
        "Results called to {n} on {d} at 15:{mm}.\n",
        n=w.name(w.doctor),
        d=w.date(w.later(4), year=rng.random() < 0.5),
        mm=f"{rng.randint(0, 59):02d}",
    )
    _identity_extras(w)
    w.signature()


def ed_note(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add("EMERGENCY DEPARTMENT NOTE\n")
    w.banner()
    old = rng.random() < 0.5
    pre, age, post = age_over_89(rng) if old else ("", str(rng.randint(18, 89)), "-year-old")
    b.fill(
        "Arrival: {d} 02:{mm} by EMS.\nCC: fall. {pre}{age}{post} found on floor by neighbor {nb}.\n",
        d=w.date(w.visit),
        mm=f"{rng.randint(0, 59):02d}",
        pre=pre,
        age=("AGE_OVER_89", age) if old else age,
        post=post,
        nb=w.name(w.pools.person(rng)),
    )
    b.fill(
        "Vitals: {v1}, {v2}, {v3}. {t}.\n",
        v1=(TRAP, "BP 132/84"),
        v2=(TRAP, "HR 88"),
        v3=(TRAP, "pain 7/10"),
        t=w.drug(),
    )
    b.fill("Home address on file: ")
    w.address()
    b.fill(
        ". Emergency contact {n} ({rel}) {p}.\n",
        n=w.name(w.pools.person(rng)),
        rel=rng.choice(["son", "wife", "niece"]),
        p=("PHONE", phone(rng)),
    )
    _identity_extras(w)
    _identity_extras(w)
    b.fill("Dispo: admit to {unit}.\n", unit=(TRAP, "Medical ICU"))
    w.signature()


def referral_letter(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.fill(
        "REFERRAL\nTo: {spec}, {dept}, {hosp}\n",
        spec=w.name(w.other_clin),
        dept=(TRAP, rng.choice(DEPARTMENTS)),
        hosp=(NEUTRAL, w.hospital),
    )
    b.fill("Fax: {f}    Date: {d}\n", f=("FAX", phone(rng)), d=w.date(w.visit))
    b.fill("Patient: {pt}    DOB: {dob}\n", pt=w.name(w.patient, True), dob=w.date(w.dob))
    hl, hv = health_plan(rng)
    b.fill("{hl}: {hv}\n", hl=hl, hv=("HEALTH_PLAN_ID", hv))
    b.fill("Reason for referral: {t}; currently on {t2}.\nAddress: ", t=w.eponym(), t2=w.drug())
    w.address()
    b.fill("\nPhone: {p}\n", p=("PHONE", phone(rng)))
    _identity_extras(w)
    b.add("Kind regards,\n")
    w.signature()


def nursing_admission(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add("NURSING ADMISSION ASSESSMENT\n")
    w.banner()
    b.fill(
        "Admitted {d} at 19:{mm} to {unit}. Primary nurse: {rn}, RN.\n",
        d=w.date(w.visit),
        mm=f"{rng.randint(0, 59):02d}",
        unit=(TRAP, "Medical ICU"),
        rn=w.name(w.other_clin),
    )
    b.fill(
        "Neuro: {t}. CV: {t2}. GU: {t3} draining clear yellow urine.\n",
        t=(TRAP, "Glasgow Coma Scale 15"),
        t2=(TRAP, "a 2/6 systolic murmur"),
        t3=(TRAP, "Foley catheter"),
    )
    b.fill("Valuables: wallet and phone given to husband {h}.\n", h=w.name(w.pools.person(rng)))
    if rng.random() < 0.5:
        pre, age, post = age_over_89(rng)
        b.fill(
            "Fall risk high ({pre}{age}{post}, {t}).\n",
            pre=pre,
            age=("AGE_OVER_89", age),
            post=post,
            t=(TRAP, "Parkinson disease"),
        )
    _identity_extras(w)
    _identity_extras(w)
    w.signature()


def progress_note(w: _Writer) -> None:
    rng, b = w.rng, w.b
    b.add("PROGRESS NOTE\n")
    w.banner()
    b.fill(
        "Hospital day 3 ({d}).\nS: feels better, {t}.\nO: {v}; {t2}.\n",
        d=w.date(w.later(3), year=rng.random() < 0.5),
        t=(TRAP, "pain 7/10"),
        v=w.number(),
        t2=w.number(),
    )
    b.fill(
        "A/P: {t}, stable. Continue {drug}. Discussed with {n}. Family meeting {d}.\n",
        t=w.eponym(),
        drug=w.drug(),
        n=w.name(w.other_clin),
        d=w.date(w.later(4), year=False),
    )
    _identity_extras(w)
    w.signature()


KINDS: dict[str, Callable[[_Writer], None]] = {
    "discharge_summary": discharge_summary, "clinic_letter": clinic_letter, "radiology": radiology_report,
    "pathology": pathology_report, "ed_note": ed_note, "referral": referral_letter,
    "nursing_admission": nursing_admission, "progress_note": progress_note,
}  # fmt: skip


def generate(n: int = 400, seed: int = 20261208) -> Iterator[dict]:
    """`n` notes, kinds in turn; the same (n, seed) gives the same notes, offsets and all."""
    pools = _Pools(seed)
    kinds = list(KINDS)
    for i in range(n):
        rng = random.Random(f"{seed}-{i}")
        kind = kinds[i % len(kinds)]
        writer = _Writer(rng, pools, kind)
        KINDS[kind](writer)
        yield writer.b.note(f"A-{i:04d}", kind)
