"""Corpus B, "freetext": notes written in a hurry, as clinicians and patients write them: ICU nursing shorthand,
all capitals, all lower case, sentences run together without spaces, phone messages, patient-portal
messages, sign-out lists and social-work notes with signature blocks. Names and places come from hand-written
pools (particles, hyphens, apostrophes, diacritics, names that are also common words), not from Faker.

Gold conventions: as the hospital corpus (a name without title or credential, an identifier's value without
its label, the state of an address neutral, ages only over 89), written independently of it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .builder import NEUTRAL, TRAP, NoteBuilder

NAME = "freetext"
GIVEN = (
    "Siobhán", "Zoë", "Søren", "Łukasz", "José", "Chloé", "Björn", "Đorđe", "Aoife", "Thảo", "Kwame", "Oluwaseun",
    "Priyanka", "Mateus", "Inês", "Grace", "Hope", "Will", "Rose", "Faith", "Bill", "Joy", "Mark", "Frank", "Sandy",
    "Ray", "Jean-Luc", "Mary-Kate", "D'Andre", "Ngozi", "Yusuf", "Wojciech", "Émilie", "Tadhg", "Ekaterina",
    "Hamish", "Leilani", "Tomás", "Dagný", "Ümit", "Asunción", "Renée", "Óscar", "Malak", "Earl", "Suzette",
    "Dolores", "Vernon", "Bernadette", "Lamar", "Keisha", "Rocco", "Imelda", "Bao", "Mei-Ling", "Ravi",
)  # fmt: skip
FAMILY = (
    "van der Berg", "de la Cruz", "O'Connor", "Ó Súilleabháin", "D'Angelo", "Smith-Jones", "McAllister", "ben Haim",
    "al-Rashid", "dos Santos", "von Trapp", "Le Quoc", "St. John", "MacLeod", "Nguyễn", "Østergaard",
    "Müller-Lüdenscheidt", "Baker", "Wood", "Black", "Young", "Brown", "Hill", "Rivers", "Small", "Love", "Fox",
    "Price", "King", "Śliwińska", "Van Buren", "da Silva", "De Vries", "Ní Bhriain", "Abu-Bakr", "Papadopoulos",
    "Kowalczyk", "Żółtowski", "La Fontaine", "Del Toro", "Okonkwo", "Tanaka", "Haddad", "Ruiz-Tagle", "Rand",
    "Lander", "Vasquez", "Burns", "Whitfield", "Oyelaran", "Castellanos", "Dubois", "Kaczmarek", "Fairweather",
)  # fmt: skip
STREETS = (
    "Quillmoor Ave", "Larkspur Terr", "Old Mill Rd", "Cedar Hollow Ln", "Harbour View Dr", "Tanner St",
    "Pequot Way", "Brambleton Ct", "Saltmarsh Rd", "Ferncliff Pl", "Ashgrove Blvd", "Wrenfield Cir",
)  # fmt: skip
TOWNS = (
    "Tewksbury", "Revere", "Chelsea", "Dedham", "Methuen", "Saugus", "Haverhill", "Woburn", "Braintree",
    "Fall River", "New Bedford", "Pittsfield", "Leominster", "Marlborough", "Attleboro", "Chicopee",
)  # fmt: skip
STATES = ("MA", "Mass", "NH", "RI", "Maine", "CT")
CLINICIAN_CREDENTIALS = ("RN", "RRT", "NP", "MD", "LICSW", "PT", "PharmD", "CNA", "RN BSN")
DOMAINS = ("yahoo", "gmail", "aol", "comcast", "hotmail", "verizon")

# What must stay: words that look like names or numbers that look like dates, in the register of these notes.
SHORTHAND_TRAPS = (
    "foley", "apgars 8/9", "BP 132/84",
    "2/6 murmur", "pain 7/10", "k 3.9", "tylenol 650", "I&O +500", "GCS 15", "peep 5", "fio2 40%",
    "ivf @ 100cc/hr", "A&Ox3", "NSR 80s", "sats 94% 2L nc", "ICD J18.9", "levo 0.08", "propofol 20mcg/kg/min",
    "RASS -2", "CIWA 4", "DNR/DNI", "parkinsons", "homans neg", "murphys neg", "bells palsy", "swan",
    "hickman line", "PICC", "MICU", "CCU", "ER", "rehab", "lasix 20 iv", "coumadin", "heparin gtt", "vanc 1g",
    "hct 28.1", "plt 142", "wbc 12.4", "lactate 2.1", "1/2 NS", "3/4 strength tube feeds", "grade 2/4 edema",
)  # fmt: skip
# Names that are also words, used as words.
WORD_TRAPS = (
    "will call back", "hope to wean", "grace period for copay", "frank blood in foley", "mark site with pen",
    "no joy with IV access", "temp rose overnight", "rays reviewed w/ rad", "faith-based hospice preferred",
    "sandy colored stool", "bill sent to ins", "young adult", "brown sputum", "small amt", "king size bed",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    given: str
    initial: str
    family: str


def _person(rng: random.Random) -> Person:
    return Person(rng.choice(GIVEN), rng.choice("ABCDEFGHJKLMNPRSTW"), rng.choice(FAMILY))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _caps(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHKLMNPQRTUVWXYZ") for _ in range(n))


def _month_day(rng: random.Random) -> str:
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{m}/{d}", f"{m}/{d}", f"{m}-{d}", f"{m:02d}/{d:02d}"])


def _full_date(rng: random.Random, birth: bool = False) -> str:
    m, d, y = (
        rng.randint(1, 12),
        rng.randint(1, 28),
        rng.randint(1925, 2000) if birth else rng.randint(2016, 2025),
    )
    mon = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")[m - 1]
    return rng.choice(
        [
            f"{m}/{d}/{y}",
            f"{m}/{d}/{y % 100:02d}",
            f"{d:02d}{mon}{y}",
            f"{mon.title()} {d} {y}",
            f"{d}.{m}.{y}",
            f"{y}{m:02d}{d:02d}",
            f"{mon.lower()} {d}",
        ]
    )


def _phone(rng: random.Random) -> str:
    a, b, c = rng.choice(["617", "508", "781", "978", "413", "603"]), _digits(rng, 3), _digits(rng, 4)
    return rng.choice(
        [
            f"{a} {b} {c}",
            f"{a}{b}{c}",
            f"({a}){b}-{c}",
            f"{b}-{c}",
            f"0044 7{_digits(rng, 3)} {_digits(rng, 6)}",
            f"1-{a}-{b}-{c}",
            f"{a}/{b}-{c}",
        ]
    )


def _email(rng: random.Random, p: Person) -> str:
    user = (
        (p.given[0] + p.family.replace(" ", "").replace("'", "")).encode("ascii", "ignore").decode().lower()
    )
    dom = rng.choice(DOMAINS)
    return rng.choice(
        [
            f"{user}@{dom}.com",
            f"{user}{_digits(rng, 2)}@{dom}.net",
            f"{user.upper()} AT {dom.upper()} DOT COM",
            f"{user} at {dom} dot com",
            f"{user}(at){dom}.com",
        ]
    )


def _age90(rng: random.Random) -> tuple[str, str, str]:
    age = rng.randint(90, 103)
    words = {
        90: "ninety",
        91: "ninety-one",
        92: "ninety two",
        93: "ninety-three",
        94: "ninety four",
        95: "ninety-five",
        96: "ninety-six",
        97: "ninety seven",
        98: "ninety-eight",
        99: "ninety-nine",
    }
    return rng.choice(
        [
            ("", str(age), "yo"),
            ("", str(age), "y.o."),
            ("age ", words.get(age, str(age)), ""),
            ("", str(age), "F"),
            ("", str(age), "M"),
            ("", str(age), " yr old"),
        ]
    )


class _Note:
    def __init__(self, rng: random.Random, case: str | None = None) -> None:
        self.rng = rng
        self.b = NoteBuilder(case)
        self.pt = _person(rng)
        self.rel = _person(rng)
        self.nurse = _person(rng)
        self.doc = _person(rng)

    def trap(self) -> tuple[str, str]:
        return (TRAP, self.rng.choice(SHORTHAND_TRAPS))

    def word_trap(self) -> tuple[str, str]:
        return (TRAP, self.rng.choice(WORD_TRAPS))

    def name(self, p: Person, form: str | None = None) -> tuple[str, str]:
        form = form or self.rng.choice(["given", "full", "initial", "lastfirst", "family"])
        value = {
            "given": p.given,
            "family": p.family,
            "full": f"{p.given} {p.family}",
            "initial": f"{p.initial}. {p.family}",
            "lastfirst": f"{p.family.upper()}, {p.given.upper()}",
            "signature": f"{p.given} {p.initial}. {p.family}",
            "caps": f"{p.initial}. {p.family.upper()}",
        }[form]
        return ("NAME", value)

    def address(self) -> None:
        rng = self.rng
        unit = rng.choice(
            ["", f" apt {rng.randint(1, 30)}", f" #{rng.randint(1, 9)}", f" unit {rng.randint(1, 12)}"]
        )
        street = f"{rng.randint(3, 990)} {rng.choice(STREETS)}{unit}"
        if rng.random() < 0.5:
            street = street.lower()
        town = rng.choice(TOWNS)
        self.b.fill(
            "{a}{st}",
            a=("ADDRESS", f"{street}, {town.lower() if rng.random() < 0.4 else town}"),
            st=(NEUTRAL, f" {rng.choice(STATES)}"),
        )
        if rng.random() < 0.6:
            self.b.fill(" {z}", z=("ADDRESS", f"0{rng.randint(1000, 2799)}"))

    def extra(self) -> None:
        """One of the rarer identifiers, in a sentence of this register."""
        rng, b = self.rng, self.b
        pick = rng.randrange(11)
        if pick == 0:
            b.fill(
                "mrn {m} ",
                m=(
                    "MRN",
                    rng.choice(
                        [
                            f"{_digits(rng, 4)}/{rng.randint(2018, 2025)}",
                            f"{_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 4)}",
                            f"{_caps(rng, 2)}{_digits(rng, 2)}-{_digits(rng, 2)}-{_digits(rng, 2)}",
                            _digits(rng, 7),
                        ]
                    ),
                ),
            )
        elif pick == 1:
            b.fill(
                "{lab} {v}. ",
                lab=rng.choice(["Subscriber No.:", "ins mbr#", "medicaid #", "MassHealth ID", "BCBS id"]),
                v=(
                    "HEALTH_PLAN_ID",
                    rng.choice(
                        [
                            f"{_caps(rng, 3)}{_digits(rng, 8)}",
                            f"{_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 3)}",
                            f"{_digits(rng, 12)}",
                        ]
                    ),
                ),
            )
        elif pick == 2:
            b.fill("billing acct {v} ", v=("ACCOUNT_NUMBER", f"{_digits(rng, 3)}-{_digits(rng, 7)}"))
        elif pick == 3:
            b.fill("ss# last 4 {v} ", v=("SSN", _digits(rng, 4))) if rng.random() < 0.5 else b.fill(
                "ssn {v} ", v=("SSN", f"{rng.randint(100, 665)}-{_digits(rng, 2)}-{_digits(rng, 4)}")
            )
        elif pick == 4:
            b.fill(
                "son parked in garage, car plate {p} {st}. ",
                p=("VEHICLE_ID", f"{rng.randint(1, 9)}{_caps(rng, 2)}{_digits(rng, 3)}"),
                st=rng.choice(["mass", "NH", "RI plates", "(ma)"]),
            )
        elif pick == 5:
            b.fill(
                "{dev} sn {v}. ",
                dev=rng.choice(["insulin pump", "pacer", "wound vac", "CPAP machine", "LVAD controller"]),
                v=("DEVICE_ID", f"{_caps(rng, 2)}{_digits(rng, 5)}{_caps(rng, 1)}"),
            )
        elif pick == 6:
            b.fill(
                "pt id verified by {k} scan, template {v}. ",
                k=rng.choice(["palm vein", "fingerprint", "retina"]),
                v=("BIOMETRIC_ID", f"{_caps(rng, 2)}{_digits(rng, 6)}"),
            )
        elif pick == 7:
            b.fill(
                "family updates on {u} ",
                u=(
                    "URL",
                    rng.choice(
                        [
                            f"www.caringbridge.org/visit/{self.pt.family.lower().replace(' ', '')}",
                            f"https://gofund.me/{_digits(rng, 8)}",
                        ]
                    ),
                ),
            )
        elif pick == 8:
            b.fill(
                "remote monitor uploading from {ip}. ",
                ip=(
                    "IP_ADDRESS",
                    f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                ),
            )
        elif pick == 9:
            b.fill(
                "{lab} {v}. ",
                lab=rng.choice(["lic#", "drivers lic", "RN lic"]),
                v=("LICENSE_NUMBER", f"{_caps(rng, 1)}{_digits(rng, 7)}"),
            )
        else:
            b.fill(
                "{lab} {v}. ",
                lab=rng.choice(["claim #", "case no.", "ticket", "research id"]),
                v=("OTHER_ID", f"{_caps(rng, 1)}{_digits(rng, 3)}-{_digits(rng, 4)}"),
            )


def icu_nursing(n: _Note) -> None:
    rng, b = n.rng, n.b
    b.fill("Nursing Progress Note 0700-1900\nNEURO: {t}, MAE. {t2}.\n", t=(TRAP, "A&Ox3"), t2=n.trap())
    b.fill("CV: {t} {t2}, no ectopy. ", t=(TRAP, "NSR 80s"), t2=(TRAP, "BP 132/84"))
    b.fill(
        "seen by dr {d} this am, plan to d/c {t} {dt}.\n",
        d=("NAME", n.doc.family.lower()),
        t=(TRAP, "foley"),
        dt=("DATE", _month_day(rng)),
    )
    b.fill("RESP: {t} {t2}. {t3}.\n", t=(TRAP, "sats 94% 2L nc"), t2=n.trap(), t3=n.word_trap())
    b.fill(
        "SOCIAL: dtr {r} called x2, updated by this RN; {rn} to visit {dt}. ",
        r=("NAME", rng.choice([n.rel.given.lower(), n.rel.given])),
        rn=rng.choice(["husband", "son", "sister"]),
        dt=("DATE", _month_day(rng)),
    )
    b.fill("callback {p}.\n", p=("PHONE", _phone(rng)))
    n.extra()
    b.fill(
        "\n{sig}, {c}\n",
        sig=n.name(n.nurse, rng.choice(["caps", "signature"])),
        c=rng.choice(CLINICIAN_CREDENTIALS),
    )


def caps_nursing(n: _Note) -> None:
    rng = n.rng
    n.b = NoteBuilder("upper")
    b = n.b
    old = rng.random() < 0.6
    pre, age, post = _age90(rng) if old else ("", str(rng.randint(30, 88)), "YO")
    age_value = ("AGE_OVER_89", age) if old else age
    b.fill(
        "O: {pre}{age}{post} ADMITTED IN TRANSFER FROM OSH {d} FOR {t}; PMH: {t2}.\n",
        pre=pre,
        age=age_value,
        post=post,
        d=("DATE", _month_day(rng)),
        t=rng.choice(["HYPOTENSION", "MENTAL STATUS CHANGES", "GI BLEED"]),
        t2=n.trap(),
    )
    b.fill(
        "PT {pt} RESTING COMFORTABLY. {t}. {t2}.\n",
        pt=n.name(n.pt, "lastfirst"),
        t=(TRAP, "2/6 murmur"),
        t2=n.word_trap(),
    )
    b.fill("WIFE {r} IN TO VISIT, LIVES AT ", r=n.name(n.rel, "given"))
    n.address()
    b.fill(". PHONE {p}.\n", p=("PHONE", _phone(rng)))
    n.extra()
    b.fill(
        "\nA: {t}. P: CONT {t2}; CALL HO IF {t3}.\n{sig} {c}\n",
        t=n.trap(),
        t2=(TRAP, "heparin gtt"),
        t3=(TRAP, "pain 7/10"),
        sig=n.name(n.nurse, "caps"),
        c=rng.choice(CLINICIAN_CREDENTIALS),
    )


def lower_progress(n: _Note) -> None:
    rng = n.rng
    n.b = NoteBuilder("lower")
    b = n.b
    pre, age, post = _age90(rng)
    b.fill(
        "pt {pt}, {pre}{age}{post} w/ {t}, seen on rounds {d}.\n",
        pt=n.name(n.pt, "full"),
        pre=pre,
        age=("AGE_OVER_89", age),
        post=post,
        t=n.trap(),
        d=("DATE", _full_date(rng)),
    )
    b.fill(
        "{t}. {t2}. dr. {d} aware. {t3}.\n",
        t=(TRAP, "pain 7/10"),
        t2=n.trap(),
        d=("NAME", n.doc.family),
        t3=n.word_trap(),
    )
    b.fill(
        "mrs. {m} (pt's {rel}) at bedside; home is ",
        m=("NAME", n.rel.family),
        rel=rng.choice(["wife", "mother", "sister"]),
    )
    n.address()
    b.add(".\n")
    n.extra()
    n.extra()
    b.fill(
        "\n-{sig} {c} pgr {p}\n",
        sig=n.name(n.nurse, "initial"),
        c=rng.choice(CLINICIAN_CREDENTIALS),
        p=("PHONE", _phone(rng)),
    )


def run_together(n: _Note) -> None:
    rng, b = n.rng, n.b
    opening = rng.choice(
        ["Pt stable overnight.", "Quiet night.", "Pt slept most of shift.", "Uneventful am."]
    )
    vitals = rng.sample(["BP 132/84", "HR 88", "hr 88", "sats 94% 2L nc", "GCS 15", "k 3.9", "pain 7/10"], 2)
    b.fill("{o}{t}.{t2}.", o=opening, t=(TRAP, vitals[0]), t2=(TRAP, vitals[1]))
    b.fill(
        rng.choice(
            [
                "Family({rel} {r})at bedside.",
                "{rel} {r} visited,asking questions.",
                "{rel} {r} called.Updated.",
            ]
        ),
        rel=rng.choice(["dtr", "son", "wife", "Dtr", "Son"]),
        r=n.name(n.rel, "given"),
    )
    b.fill(
        rng.choice(
            [
                "Seen by Dr.{d}.Plan CT {dt}.{t}.",
                "Dr.{d} aware,plan CT {dt}.{t}.",
                "{t}.Per Dr.{d} f/u echo {dt}.",
            ]
        ),
        d=("NAME", n.doc.family),
        dt=("DATE", _month_day(rng)),
        t=n.word_trap(),
    )
    b.fill("Updated {r} via phone {p}.", r=n.name(n.rel, "full"), p=("PHONE", _phone(rng)))
    if rng.random() < 0.5:
        b.fill("Email to {e}.", e=("EMAIL", _email(rng, n.rel)))
    n.extra()
    b.fill("\n{sig},{c}\n", sig=n.name(n.nurse, "signature"), c=rng.choice(CLINICIAN_CREDENTIALS))


def phone_message(n: _Note) -> None:
    rng, b = n.rng, n.b
    b.fill(
        "TELEPHONE ENCOUNTER {d} {h}:{m}\nCaller: {c} ({rel}) ph {p}\n",
        d=("DATE", _full_date(rng)),
        h=str(rng.randint(7, 19)),
        m=f"{rng.randint(0, 59):02d}",
        c=n.name(n.rel, "full"),
        rel=rng.choice(["daughter", "son", "self", "neighbor"]),
        p=("PHONE", _phone(rng)),
    )
    b.fill(
        "Re: {pt} DOB {dob}\n",
        pt=n.name(n.pt, rng.choice(["lastfirst", "full"])),
        dob=("DATE", _full_date(rng, birth=True)),
    )
    b.fill(
        "Msg: calling about refill of {t}; also asks if {t2} is ok. ",
        t=(TRAP, rng.choice(["coumadin", "lasix 20 iv", "tylenol 650"])),
        t2=n.trap(),
    )
    b.fill("Pls fax to pharmacy {f}. ", f=("FAX", _phone(rng)))
    b.fill("email is {e}. ", e=("EMAIL", _email(rng, n.rel)))
    n.extra()
    b.fill(
        "\nTaken by {sig} {c}. Routed to Dr {d}.\n",
        sig=n.name(n.nurse, "initial"),
        c=rng.choice(CLINICIAN_CREDENTIALS),
        d=("NAME", n.doc.family),
    )


def portal_message(n: _Note) -> None:
    rng, b = n.rng, n.b
    b.fill(
        "From: {n} <{e}>\nSent: {d} 9:{m} PM\nTo: Dr. {doc}\nSubject: question about my meds\n\n",
        n=n.name(n.pt, "full"),
        e=("EMAIL", _email(rng, n.pt)),
        d=("DATE", _full_date(rng)),
        m=f"{rng.randint(0, 59):02d}",
        doc=("NAME", n.doc.family),
    )
    b.fill(
        "hi dr {doc}, its {pt}. my {t} since {d}. ",
        doc=("NAME", n.doc.family.lower()),
        pt=("NAME", n.pt.given),
        t=rng.choice(["bp has been 132/84", "pain is 7/10", "sugars are high"]),
        d=("DATE", _month_day(rng)),
    )
    b.fill("my new address is ")
    n.address()
    b.fill(" and new cell {p}. ", p=("PHONE", _phone(rng)))
    if rng.random() < 0.5:
        b.fill(
            "insurance changed, Subscriber No.: {v}. ",
            v=("HEALTH_PLAN_ID", f"{_caps(rng, 3)} {_digits(rng, 4)} {_digits(rng, 4)}"),
        )
    n.extra()
    b.fill("\nthanks,\n{s}\n", s=n.name(n.pt, rng.choice(["given", "full"])))


def signout(n: _Note) -> None:
    rng, b = n.rng, n.b
    b.add("SIGNOUT MICU 1900\n")
    for bed in rng.sample(range(1, 20), 3):
        p = _person(rng)
        old = rng.random() < 0.4
        pre, age, post = _age90(rng) if old else ("", str(rng.randint(25, 88)), rng.choice(["F", "M"]))
        b.fill(
            "bed {bed}: {pt} {pre}{age}{post} mrn {m} - {t}; f/u {t2}, recheck {d}\n",
            bed=str(bed),
            pt=n.name(p, "lastfirst"),
            pre=pre,
            age=("AGE_OVER_89", age) if old else age,
            post=post,
            m=("MRN", _digits(rng, 8)),
            t=n.trap(),
            t2=rng.choice([n.trap(), n.word_trap()]),
            d=("DATE", _month_day(rng)),
        )
    n.extra()
    b.fill("\nto: {a} / from: {f}\n", a=n.name(n.doc, "initial"), f=n.name(n.nurse, "full"))


def social_work(n: _Note) -> None:
    rng, b = n.rng, n.b
    b.fill(
        "SW Note {d}\nMet w/ pt and {rel} {r} at bedside. Pt lives alone at ",
        d=("DATE", _full_date(rng)),
        rel=rng.choice(["niece", "son", "partner"]),
        r=n.name(n.rel, "full"),
    )
    n.address()
    b.fill("; {t}, {t2}. Rehab screen sent; {t3}.\n", t=n.trap(), t2=n.trap(), t3=n.word_trap())
    b.fill(
        "HCP: {h}, cell {p}. ", h=n.name(n.rel, rng.choice(["full", "lastfirst"])), p=("PHONE", _phone(rng))
    )
    n.extra()
    n.extra()
    b.fill(
        "\n{sig}, {c}\n{org}\nPhone {p} | Fax {f}\n",
        sig=n.name(n.nurse, "signature"),
        c="LICSW",
        org=(TRAP, "Department of Social Work"),
        p=("PHONE", _phone(rng)),
        f=("FAX", _phone(rng)),
    )


KINDS: dict[str, Callable[[_Note], None]] = {
    "icu_nursing": icu_nursing, "caps_nursing": caps_nursing, "lower_progress": lower_progress,
    "run_together": run_together, "phone_message": phone_message, "portal_message": portal_message,
    "signout": signout, "social_work": social_work,
}  # fmt: skip


def generate(n: int = 600, seed: int = 4417) -> Iterator[dict]:
    """`n` notes, kinds in turn; the same (n, seed) gives the same notes, offsets and all."""
    kinds = list(KINDS)
    for i in range(n):
        rng = random.Random(f"freetext-{seed}-{i}")
        kind = kinds[i % len(kinds)]
        note = _Note(rng)
        KINDS[kind](note)
        yield note.b.note(f"B-{i:04d}", kind)
