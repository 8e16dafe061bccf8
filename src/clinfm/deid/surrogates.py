"""Surrogate PHI: realistic fake values, the same within one subject (seeded from the subject key), dates shifted
by the subject's offset in their original format, and ages over 89 as "90+"."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import secrets
from functools import lru_cache

from faker import Faker

from clinfm.deid.recognizers.date import MONTHS, ORDINAL_WORD, ORDINAL_WORDS


_MONTH_NUMBER = (
    {m.lower(): i + 1 for i, m in enumerate(MONTHS)}
    | {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}
    | {"sept": 9}
)
_MON = "(?:" + "|".join(sorted(_MONTH_NUMBER, key=len, reverse=True)) + ")"
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_WEEKDAY = re.compile(
    r"\b(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs?)?|Fri|Sat(?:ur)?|Sun)(?:day)?\b\.?", re.IGNORECASE
)

DATE_FORMATS = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        r"(?P<m>\d{1,2})(?P<s>[/.-])(?P<d>\d{1,2})(?P=s)(?P<y>\d{4}|\d{2})(?!\d)",
        r"(?P<y>\d{4})(?P<s>[/.-])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})(?!\d)",
        r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<m>[01]\d)(?P<d>[0-3]\d)(?!\d)",
        rf"(?<![A-Za-z0-9])(?P<d>\d{{1,2}})(?P<mon>{_MON})(?P<y>\d{{4}}|\d{{2}})(?!\d)",  # "01MAR1922"
        rf"(?P<d>\d{{1,2}})(?P<s>[- ])(?P<mon>{_MON})\.?(?P=s)(?P<y>\d{{4}}|\d{{2}})(?!\d)",
        rf"\b(?P<mon>{_MON})\.?\s+(?P<d>\d{{1,2}})(?P<o>st|nd|rd|th)?(?:,?\s+(?P<y>\d{{4}}))?(?!\d)",
        rf"(?P<d>\d{{1,2}})(?P<o>st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MON})\b\.?(?:,?\s+(?P<y>\d{{4}}))?",
        rf"\b(?P<mon>{_MON})\.?,?\s+(?:of\s+)?(?P<y>\d{{4}})",
        rf"\b(?P<mon>{_MON})\.?\s+(?:the\s+)?(?P<ow>{ORDINAL_WORD})(?![\w-])(?:,?\s+(?P<y>\d{{4}}))?",  # "march third"
        rf"(?<![\w-])(?P<ow>{ORDINAL_WORD})\s+(?:day\s+)?of\s+(?P<mon>{_MON})\b\.?(?:,?\s+(?P<y>\d{{4}}))?",
        r"(?<!\d)(?P<m>\d{1,2})/(?P<y>\d{4})(?!\d)",
        r"(?<!\d)(?P<m>\d{1,2})/(?P<d>\d{1,2})(?![\d/])",
    )
)
# What may sit next to a date inside a DATE span without making it unparseable: times, "at", a weekday.
_HARMLESS = re.compile(
    r"(?i)\b(?:at|on|@|am|pm|h|hrs|noon)\b|\d{1,2}:\d{2}(?::\d{2})?|\b[0-2]\d[0-5]\dh?\b|[\s,.;:@()-]"
)


def _ordinal(day: int) -> str:
    return "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _same_case(template: str, value: str) -> str:
    if template.isupper() and len(template) > 1:
        return value.upper()
    if template.islower():
        return value.lower()
    return value


_DAY_WORDS = {day: word for word, day in ORDINAL_WORDS.items()}


def _word_case(template: str, value: str) -> str:
    """`value` in the case of `template`: "Third" -> "Fourth", "THIRD" -> "FOURTH", "third" -> "fourth"."""
    if template[:1].isupper() and not template.isupper():
        return value.capitalize()
    return _same_case(template, value)


def _month_name(template: str, month: int) -> str:
    """The month written like `template`: full or abbreviated ("Sept" stays four letters), same case."""
    word = template.rstrip(".")
    full = MONTHS[month - 1]
    if word.lower() in {m.lower() for m in MONTHS} and len(word) > 3:
        name = full  # "June"/"July" are full names of four letters
    elif word.lower() == "sept" and month == 9:
        name = "Sept"
    else:
        name = full[:3]
    return _same_case(word, name)


def shift_date(text: str, days: int) -> str | None:
    """`text` with its date moved by `days`, written the way it was written; None when it cannot be parsed.

    "03/14/2021", 49 -> "05/02/2021"; "March 14, 2021", 49 -> "May 2, 2021"; "3/14" keeps no year.
    """
    best = max(
        (m for rx in DATE_FORMATS if (m := rx.search(text))), key=lambda m: m.end() - m.start(), default=None
    )
    if best is None:
        return None
    outside = text[: best.start()] + " " + text[best.end() :]
    weekday = _WEEKDAY.search(outside)
    if _HARMLESS.sub("", _WEEKDAY.sub("", outside)):
        return None  # something besides the date that we cannot vouch for
    parts = {k: v for k, v in best.groupdict().items() if v is not None}
    try:
        year = int(parts["y"]) if "y" in parts else 2000  # 2000 is a leap year, so "2/29" parses
        if "y" in parts and len(parts["y"]) == 2:
            year += 2000 if year < 50 else 1900
        month = int(parts["m"]) if "m" in parts else _MONTH_NUMBER[parts["mon"].lower().rstrip(".")]
        day = int(parts.get("d", 15))  # month-year dates shift from the middle of the month
        if "ow" in parts:  # "march third"
            day = ORDINAL_WORDS[re.sub(r"\s+", "-", parts["ow"].lower())]
        new = dt.date(year, month, day) + dt.timedelta(days=days)
    except (ValueError, KeyError, OverflowError):
        return None
    numeric = [parts[k] for k in ("m", "d") if k in parts]
    pad = any(v.startswith("0") for v in numeric) or (len(numeric) == 2 and all(len(v) == 2 for v in numeric))
    pad = pad or (len(numeric) == 1 and len(numeric[0]) == 2 and "mon" not in parts)
    values = {
        "m": f"{new.month:02d}" if pad else str(new.month),
        "d": f"{new.day:02d}" if pad or parts.get("d", "").startswith("0") else str(new.day),
        "y": f"{new.year % 100:02d}" if len(parts.get("y", "0000")) == 2 else str(new.year),
        "mon": _month_name(parts.get("mon", ""), new.month),
        "o": _same_case(parts.get("o", ""), _ordinal(new.day)),
        "ow": _word_case(parts.get("ow", ""), _DAY_WORDS[new.day]),
    }
    if "mon" in parts and best.group().isalnum() and len(parts.get("d", "")) == 2:
        values["d"] = f"{new.day:02d}"  # a compact "15MAR21" stays fixed-width
    out = best.group()
    base = best.start()
    for key in sorted(parts, key=lambda k: best.start(k), reverse=True):
        if key == "s":
            continue
        s, e = best.start(key) - base, best.end(key) - base
        out = out[:s] + values[key] + out[e:]
    result = text[: best.start()] + out + text[best.end() :]
    if weekday:
        name = _WEEKDAYS[new.weekday()]
        w = weekday.group().rstrip(".")
        new_w = _same_case(w, name if len(w) > 4 else name[:3])
        result = _WEEKDAY.sub(new_w, result, count=1)
    return result


@lru_cache(maxsize=1)
def _first_names() -> frozenset[str]:
    from faker.providers.person.en_US import Provider

    return frozenset(n.lower() for n in Provider.first_names)


def _reshape(template: str, rng: random.Random) -> str:
    """A random value with `template`'s shape: digits for digits, letters (same case) for letters."""
    out = []
    for i, ch in enumerate(template):
        if ch.isdigit():
            out.append(str(rng.randint(1 if i == 0 else 0, 9)))
        elif ch.isalpha() and ch.isascii():
            letter = rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
            out.append(letter if ch.isupper() else letter.lower())
        else:
            out.append(ch)
    return "".join(out)


def _fit_digits(template: str, digits: str) -> str:
    """`digits` poured into the non-digit skeleton of `template` ("123 45 6789" + "987654321")."""
    it = iter(digits)
    return "".join(next(it, "0") if ch.isdigit() else ch for ch in template)


class SurrogateGenerator:
    """Fake values for one subject. Same (label, original) -> same fake, for every note of the subject.

    Without a subject key a random one is drawn, so the fakes do not link notes. `salt` keeps fakes from being
    recomputed by someone who knows the subject key but not the salt.
    """

    def __init__(self, subject_key: str | None = None, date_shift_days: int = 0, salt: str = "") -> None:
        self.subject_key = subject_key if subject_key is not None else secrets.token_hex(16)
        self.date_shift_days = date_shift_days
        self.salt = salt
        self._faker = _shared_faker()

    def _rng(self, label: str, original: str) -> random.Random:
        norm = " ".join(original.casefold().split())
        digest = hashlib.sha256(f"{self.salt}\x1f{self.subject_key}\x1f{label}\x1f{norm}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big")
        self._faker.seed_instance(seed)
        return random.Random(seed)

    def surrogate(self, label: str, original: str) -> str:
        """The fake for one span; "[LABEL]" when no safe fake can be made (an unparseable date)."""
        if label == "DATE":
            if self.date_shift_days == 0:  # no subject shift supplied: a real date must not survive
                return "[DATE]"
            shifted = shift_date(original, self.date_shift_days)
            return shifted if shifted is not None else "[DATE]"
        if label == "AGE_OVER_89":
            return "90+"
        if label == "NAME":
            return self._name(original)
        rng = self._rng(label, original)
        fk = self._faker
        if label in ("PHONE", "FAX"):
            return _reshape(original, rng)
        if label == "EMAIL":
            return fk.user_name() + "@" + fk.free_email_domain()
        if label == "URL":
            return fk.url().rstrip("/") if "/" not in original.rstrip("/") else fk.url()
        if label == "IP_ADDRESS":
            return fk.ipv6() if ":" in original else fk.ipv4()
        if label == "SSN":
            return _fit_digits(original, fk.ssn().replace("-", ""))
        if label == "ADDRESS":
            return self._address(original, rng)
        if label == "LICENSE_NUMBER" and re.fullmatch(r"[A-Z][A-Z9]\d{7}", original):
            return _dea_like(original, rng)
        return _reshape(original, rng)

    def _name(self, original: str) -> str:
        tokens = re.findall(r"\S+", original)
        out = []
        after_comma = False  # "SMITH, JOHN": what follows the comma are given names
        for i, token in enumerate(tokens):
            word = token.strip(",.;:")
            if not word:
                out.append(token)
                continue
            if len(word) == 1:  # an initial
                fake = self._rng("NAME-initial", word).choice("ABCDEFGHJKLMNPRSTW")
            else:
                last_position = token.endswith(",") or (
                    i == len(tokens) - 1 and len(tokens) > 1 and not after_comma
                )
                role = (
                    "first"
                    if (word.lower() in _first_names() or after_comma) and not last_position
                    else "last"
                )
                self._rng(f"NAME-{role}", word)
                fake = self._faker.first_name() if role == "first" else self._faker.last_name()
            fake = (
                fake.upper() if word.isupper() and len(word) > 1 else fake.lower() if word.islower() else fake
            )
            out.append(token.replace(word, fake, 1))
            after_comma = after_comma or token.endswith(",")
        return " ".join(out)

    def _address(self, original: str, rng: random.Random) -> str:
        fk = self._faker
        text = original.strip()
        if re.fullmatch(r"\d{5}(?:-\d{4})?", text):
            return _reshape(text, rng)
        if re.match(r"(?i)p\.?\s?o\.?\s+box", text):
            return f"PO Box {rng.randint(100, 9999)}"
        if re.match(r"(?i)apt|apartment", text):
            return f"Apt {rng.randint(1, 30)}{rng.choice('ABCD')}"
        if text[:1].isdigit():
            street = fk.street_address()
            if "," in text or "\n" in text:
                return f"{street}, {fk.city()}, {fk.state_abbr()} {fk.zipcode()}"
            return street
        if re.search(r"\d{5}", text):
            return f"{fk.city()}, {fk.state_abbr()} {fk.zipcode()}"
        if "," in text:
            return f"{fk.city()}, {fk.state_abbr()}"
        if text.endswith(("County", "Parish")):
            return f"{fk.last_name()} County"
        return fk.city()


def _dea_like(original: str, rng: random.Random) -> str:
    body = [rng.randint(0, 9) for _ in range(6)]
    check = (body[0] + body[2] + body[4] + 2 * (body[1] + body[3] + body[5])) % 10
    return original[0] + rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + "".join(map(str, body)) + str(check)


@lru_cache(maxsize=1)
def _shared_faker() -> Faker:
    # One instance, reseeded per value: building a Faker costs milliseconds, seeding it microseconds.
    return Faker("en_US")
