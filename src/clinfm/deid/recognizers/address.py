"""Geographic subdivisions smaller than a state: street addresses, apartments, cities with a state, ZIP codes.

A state on its own is not PHI under Safe Harbor; one written inside an address is removed with it.
"""

from __future__ import annotations

import itertools
import re

from clinfm.deid.lexicon import clinical_words
from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

STATE_ABBREVIATIONS = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "PR",
]
STATE_NAMES = [
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "West Virginia",
    "Wisconsin",
    "Wyoming",
    "Puerto Rico",
    "District of Columbia",
]

_NOT_CITY_START = {
    "The",
    "A",
    "An",
    "His",
    "Her",
    "Their",
    "Home",
    "Room",
    "Bed",
    "Unit",
    "ICU",
    "Hospice",
    "Dr",
}
_AMBIGUOUS_STATES = {
    "MD",
    "PA",
    "IN",
    "OR",
    "ME",
    "OK",
    "DE",
    "HI",
    "ID",
    "CO",
    "MS",
    "MO",
    "LA",
    "MA",
    "NE",
    "AL",
}
_STATE = "(?:" + "|".join(STATE_ABBREVIATIONS) + "|" + "|".join(STATE_NAMES) + r")\.?"
_SUFFIX = (
    r"(?i:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|Way|Court|Ct|Place|Pl|Terrace|Ter|Parkway"
    r"|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Trl|Row|Alley|Pike|Loop|Crescent|Plaza|Turnpike|Route|Rte)\b\.?"
)
_WORD = r"(?:[A-Z][A-Za-z'.-]*|\d+(?:st|nd|rd|th))"
_STREET = (
    rf"\d{{1,6}}(?:-\d{{1,4}})?[A-Z]?[ \t]+(?:[NSEW]\.?[ \t]+)?(?:{_WORD}[ \t]+){{0,3}}{_WORD}[ \t]+{_SUFFIX}"
)
_UNIT = r"(?:,?[ \t]+(?:Apt|Apartment|Unit|Suite|Ste|Fl|Floor|Bldg|Building|#)\.?\s*#?\s*[A-Z0-9-]{1,6}\b)"
_CITY = r"(?:St\.? |Ft\.? |Mt\.? )?[A-Z][A-Za-z'-]+(?:[ -][A-Z][A-Za-z'-]+){0,2}"
_ZIP = r"\d{5}(?:-\d{4})?"
_CITY_STATE_ZIP = rf"{_CITY},?[ \t]+{_STATE}(?:,?[ \t]+{_ZIP})?"

# A street line in lower case ("42 elm street, springfield"): only suffixes that are no clinical word, and a town
# after a comma; `refine` turns away any clinical or stop word in the street's name.
_LOWER_SUFFIX = r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|terrace|parkway|pkwy|highway|hwy)\b\.?"
_LOWER_STREET = (
    rf"\d{{1,6}}(?:-\d{{1,4}})?[a-z]?[ \t]+(?:[nsew]\.?[ \t]+)?(?:[a-z][a-z'-]*[ \t]+|\d+(?:st|nd|rd|th)[ \t]+){{1,3}}"
    rf"{_LOWER_SUFFIX}(?:,[ \t]*(?:apt|unit|suite|#)\.?[ \t]*#?[a-z0-9-]{{1,6}})?(?:,[ \t]*[a-z][a-z'-]+(?:[ \t][a-z][a-z'-]+)?)?"
)

_SUFFIX_WORDS = frozenset({"st", "dr", "way", "court", "place", "square", "row", "circle", "loop"})


class AddressRecognizer(GroupPatternRecognizer):
    """Street lines (with unit, city, state, ZIP when they follow), "City, ST [ZIP]", PO boxes, cued ZIPs."""

    CONTEXT = ("address", "street", "lives", "zip", "apt")
    PATTERNS = (
        GroupPattern(
            "street",
            rf"\b(?P<phi>{_STREET}{_UNIT}?(?:,?[ \t]+{_CITY_STATE_ZIP}|,?[ \t]+{_CITY}(?=[,.;]?[ \t]*$))?)",
            0.9,
            "ADDRESS",
            re.MULTILINE,
        ),
        GroupPattern("street_lower", rf"(?<![\w.,/-])(?P<phi>{_LOWER_STREET})", 0.8, "ADDRESS"),
        GroupPattern("po_box", r"\b(?P<phi>P\.?\s?O\.?\s+Box\s+\d{1,6})\b", 0.9, "ADDRESS", re.IGNORECASE),
        GroupPattern(
            "apartment", r"\b(?P<phi>(?:Apt|Apartment)\.?\s*#?\s*[A-Z0-9-]{1,6})\b", 0.85, "ADDRESS"
        ),
        GroupPattern(
            "city_state", rf"\b(?P<phi>{_CITY},\s+{_STATE}(?:,?\s+{_ZIP})?)(?![A-Za-z])", 0.8, "ADDRESS"
        ),
        GroupPattern(
            "zip_cue", rf"\b(?i:zip(?:\s*code)?|postal\s+code)\s*[:#]?\s*(?P<phi>{_ZIP})\b", 0.9, "ADDRESS"
        ),
        GroupPattern(
            "lives_in",
            rf"\b(?i:lives|living|resides|residing|resident|moved|relocated|visiting|near|town\s+of|city\s+of)"
            rf"(?:\s+(?i:alone|together|independently|with\s+\w+))?\s+(?:(?i:in|at|of|to|from)\s+)?(?P<phi>{_CITY})",
            0.75,
            "ADDRESS",
        ),
        GroupPattern(
            "route",
            r"\b(?P<phi>(?:Route|Rte\.?|Highway|Hwy\.?|Interstate|I-) ?\d{1,3}[A-Z]?)\b",
            0.8,
            "ADDRESS",
        ),
        GroupPattern(
            "county", r"\b(?P<phi>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+(?:County|Parish))\b", 0.85, "ADDRESS"
        ),
    )

    def refine(self, text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
        if pattern.name == "street_lower":
            return _refine_lower_street(text, start, end, pattern)
        value = text[start:end]
        letters = [ch for ch in value if ch.isalpha()]
        if letters and all(ch.isupper() for ch in letters) and pattern.name in ("street", "lives_in", "city_state"):
            # in a note in capitals "3 WAY FOLEY IN PLACE" or "SONS IN VISITING TODAY" look like addresses
            words = {w.lower() for w in re.findall(r"[A-Za-z']+", value)}
            if words & (clinical_words() - _SUFFIX_WORDS):
                return None
        # "Jane Roe, MD" and "cardiac output, CO" are not places: these abbreviations need a ZIP.
        ambiguous = value.rsplit(None, 1)[-1].rstrip(".") in _AMBIGUOUS_STATES
        if pattern.name == "city_state" and ambiguous and not re.search(r"\d", value):
            return None
        if pattern.name in ("lives_in", "city_state"):
            # "lives in Ohio": a state alone stays; "Boston, MA" keeps the state with the city.
            first = re.split(r",", value)[0].strip()
            if first in STATE_NAMES or first in STATE_ABBREVIATIONS:
                return None
            if pattern.name == "lives_in" and first.split()[0] in _NOT_CITY_START:
                return None
        return start, end, pattern.entity


def _refine_lower_street(text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
    """A lower-case street line only if its name holds no clinical or stop word ("2 puffs of the street" is not);
    the town after the comma is kept while its words are neither."""
    value = text[start:end]
    street = re.match(rf"[^,]*?{_LOWER_SUFFIX}", value)
    if street is None:
        return None
    name_words = re.findall(r"[a-z][a-z'-]*", street.group())[:-1]
    if not name_words or any(w in clinical_words() and w not in _SUFFIX_WORDS for w in name_words):
        return None
    keep = start + street.end()
    for part in re.finditer(r",[ \t]*([^,]+)", value[street.end() :]):
        town = list(itertools.takewhile(lambda w: w.lower() not in clinical_words(), part.group(1).split()))
        if town:
            keep = start + street.end() + part.start(1) + len(" ".join(town))
        if len(town) < len(part.group(1).split()):
            break
    while keep > start and text[keep - 1] in ".,; \t":
        keep -= 1
    return start, keep, pattern.entity
