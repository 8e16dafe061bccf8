"""Names in clinical patterns: titles ("Dr. Page"), relatives ("wife Susan", "pt's daughter mary"),
signature and header lines ("Electronically signed by: Jane Roe, MD", "cc:", "Attending:", "Dictated by")."""

from __future__ import annotations

import re
from functools import lru_cache

from spacy.lang.en.stop_words import STOP_WORDS

from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_CAP = r"[A-Z][A-Za-z'\u00C0-\u017F-]+"
_FULL = rf"{_CAP}(?: [A-Z]\.?(?![A-Za-z]))?(?: {_CAP}){{0,2}}"  # "Jane A. Roe", "Mary Ellen Smith"
_LAST_FIRST = rf"{_CAP}, ?{_CAP}(?: [A-Z]\.?(?![A-Za-z]))?(?![\w-])"  # "ROE, JANE A"
_TITLE = r"(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse|Sister|Father)"
_CREDENTIAL = r"(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PA|PhD|MBBS|CNM|CRNA|LCSW|PharmD|DPM|DDS|APRN|FNP|ANP|MSW|LPN|RD|PT|OT)"
_RELATIVE = (
    r"(?:daughter|son|wife|husband|spouse|partner|mother|father|mom|dad|sister|brother|grandson|granddaughter"
    r"|grandmother|grandfather|niece|nephew|aunt|uncle|cousin|friend|neighbou?r|caregiver|guardian|fianc[eé]e?"
    r"|boyfriend|girlfriend|HCP|health\s+care\s+proxy|healthcare\s+proxy|POA|emergency\s+contact|sister-in-law"
    r"|brother-in-law|daughter-in-law|son-in-law|stepdaughter|stepson|roommate)"
)
_BY = (
    r"(?:Electronically\s+signed\s+by|Signed\s+by|Dictated\s+by|Transcribed\s+by|Reviewed\s+by|Read\s+by"
    r"|Interpreted\s+by|Co-?signed\s+by|Verified\s+by|Performed\s+by|Seen\s+(?:with|by)|Discussed\s+with"
    r"|Referred\s+by|Written\s+by|Entered\s+by|Authored\s+by|Approved\s+by|Dictating\s+physician|Attending)"
)
_HEADER = (
    r"(?:Attending(?:\s+physician)?|Resident|Fellow|Author|Surgeon|Assistant|Anesthesiologist|Referring(?:\s+(?:physician|provider|MD))?"
    r"|PCP|Primary\s+care(?:\s+(?:physician|provider))?|Provider|Physician|Nurse|Case\s+manager|Social\s+worker"
    r"|Patient(?:\s+name)?|Pt(?:\s+name)?|Name|cc|CC|Contact|Interpreter|Chaplain|Radiologist|Pharmacist|Pathologist"
    r"|Coordinator|Research\s+coordinator|Therapist|Technician|Tech|Technologist|Dietitian|Scribe|Midwife|Caller"
    r"|Guarantor|Subscriber|Insured|Next\s+of\s+kin|NOK|Witness|Consultant|Consulting|Covering|Translator|Preceptor)"
)
_STAFF = r"(?:RN|NP|PA|LPN|CNA|RD|SW|RT|LNA|CNM)"
# Words a capitalised run after a cue may contain that are not part of a name.
NOT_NAME = {
    "the",
    "a",
    "an",
    "and",
    "or",
    "of",
    "at",
    "in",
    "on",
    "to",
    "for",
    "with",
    "by",
    "from",
    "is",
    "was",
    "has",
    "had",
    "are",
    "who",
    "will",
    "did",
    "does",
    "not",
    "no",
    "yes",
    "pt",
    "patient",
    "team",
    "service",
    "clinic",
    "hospital",
    "department",
    "dept",
    "unit",
    "cardiology",
    "oncology",
    "neurology",
    "surgery",
    "medicine",
    "radiology",
    "pediatrics",
    "nursing",
    "icu",
    "ed",
    "er",
    "office",
    "group",
    "associates",
    "center",
    "today",
    "yesterday",
    "tomorrow",
    "here",
    "there",
    "present",
    "bedside",
    "home",
    "phone",
    "aware",
    "notified",
    "called",
    "also",
    "as",
    "via",
    "per",
    "md",
    "do",
    "rn",
    "np",
    "pa",
    "phd",
    "dr",
    "mr",
    "mrs",
    "ms",
    "name",
    "unknown",
    "none",
    "n/a",
    "na",
    "self",
    "same",
    "above",
    "below",
    "admission",
    "discharge",
    "note",
    "report",
    "history",
    "hpi",
    "date",
    "time",
    "signed",
    "electronically",
    "dictated",
    "attending",
    "resident",
    "this",
    "that",
    "she",
    "he",
    "they",
    "her",
    "his",
    "their",
    "him",
    "which",
    "when",
    "if",
    "it",
    "be",
    "been",
    "being",
    "brought",
    "states",
    "reports",
    "says",
    "said",
    "came",
    "comes",
    "visited",
    "visiting",
    "visits",
    "lives",
    "living",
    "passed",
    "died",
    "deceased",
    "alive",
    "well",
    "healthy",
    "hx",
    "w/",
    "s/p",
    "hospice",
    "internal",
    "family",
    "emergency",
    "primary",
    "care",
    "provider",
    "physician",
    "nurse",
    "staff",
    "on-call",
    "covering",
    "consult",
    "consulting",
    "general",
    "chief",
    "senior",
    "junior",
    "sr",
    "jr",
    # section headers and clinical words the small NER model calls people
    "progress",
    "reason",
    "follow",
    "followup",
    "specimen",
    "addendum",
    "subject",
    "enrollment",
    "neuro",
    "abd",
    "anesthesia",
    "preop",
    "postop",
    "nephew",
    "niece",
    "daughter",
    "son",
    "wife",
    "husband",
    "callback",
    "cast",
    "dtap",
    "geriatrics",
    "ortho",
    "triage",
    "research",
    "instructions",
    "summary",
    "exam",
    "assessment",
    "plan",
    "impression",
    "findings",
    "technique",
    "comparison",
    "indication",
    "procedure",
    "labs",
    "vitals",
    "meds",
    "allergies",
    "diagnosis",
    "dx",
    "sx",
    "tx",
    "rx",
    "ct",
    "mri",
    "xr",
    "us",
    "echo",
    "ekg",
    "ecg",
    "cxr",
    "iv",
    "po",
    "prn",
    "bid",
    "tid",
    "qid",
    "qhs",
    "hemoclips",
    "implants",
    "dispo",
    "disposition",
    "course",
    "day",
    "night",
    "morning",
    "evening",
    "pain",
    "mother",
    "father",
    "brother",
    "sister",
    "caller",
    "coordinator",
    "contact",
    "pager",
    "cell",
    "email",
    "fax",
    "tel",
    "dob",
    "mrn",
    "spine",
    "c-spine",
    "t-spine",
    "l-spine",
}


@lru_cache(maxsize=1)
def _known_first_names() -> frozenset[str]:
    """Faker's en_US first names, lower-cased: what a lower-case word after "daughter" must be to count."""
    from faker.providers.person.en_US import Provider

    names = set(Provider.first_names) | set(Provider.last_names)
    return frozenset(n.lower() for n in names)


class ClinicalNameRecognizer(GroupPatternRecognizer):
    """Name tokens after a title, relative or header cue, and before a credential; cues are not part of the span."""

    CONTEXT = ("dr", "signed", "dictated", "attending", "wife", "husband", "daughter", "son")
    PATTERNS = (
        GroupPattern("title", rf"\b{_TITLE}\.?\s+(?P<phi>{_FULL})", 0.9, "NAME"),
        GroupPattern(
            "relative",
            rf"\b(?i:{_RELATIVE})(?:'s)?(?:\s*[,:(]\s*|\s+(?i:is|named|was)\s+|\s+)(?!(?i:{_RELATIVE})\b)(?P<phi>[A-Za-z][a-z'-]+(?:\s+{_CAP})?)",
            0.85,
            "NAME",
        ),
        GroupPattern(
            "signed_by",
            rf"\b(?i:{_BY})\s*[:\-]?\s*(?:{_TITLE}\.?\s+)?(?P<phi>{_LAST_FIRST}|{_FULL})",
            0.85,
            "NAME",
        ),
        GroupPattern(
            "header",
            rf"(?:^|\b)(?i:{_HEADER})[ \t]*[:\-][ \t]*(?:{_TITLE}\.?\s+)?(?P<phi>{_LAST_FIRST}|{_FULL})",
            0.85,
            "NAME",
            re.MULTILINE,
        ),
        GroupPattern("staff", rf"\b{_STAFF}\s+(?P<phi>{_CAP} {_CAP})", 0.8, "NAME"),
        GroupPattern(
            "patient",
            r"\b(?i:patient|pt|for)\s+(?P<phi>[A-Z][a-z'-]+ (?:[A-Z]\. )?[A-Z][a-z'-]+)\b",
            0.7,
            "NAME",
        ),
        GroupPattern(
            "credential",
            rf"\b(?P<phi>(?:{_CAP}|[A-Z]\.)(?: [A-Z]\.)?(?: {_CAP}){{1,2}}),? {_CREDENTIAL}\b",
            0.85,
            "NAME",
        ),
        GroupPattern("list", rf"(?i:\bcc|\band|;|,)\s*(?:{_TITLE}\.?\s+)(?P<phi>{_FULL})", 0.85, "NAME"),
    )

    def refine(self, text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
        tokens = list(re.finditer(r"\S+", text[start:end]))
        kept = []
        for tok in tokens:
            word = tok.group().strip(",;:").lower().removesuffix("'s")
            if word in NOT_NAME or not any(ch.isalpha() for ch in word):
                break
            kept.append(tok)
        if not kept:
            return None
        first = kept[0].group()
        # A lower-case word after "daughter" is a name only if it is a known first name ("mary", not "brought").
        known = first.lower() in _known_first_names() and first.lower() not in STOP_WORDS and len(kept) == 1
        if pattern.name in ("relative", "header", "signed_by") and first[0].islower() and not known:
            return None
        if pattern.name == "header" and len(kept) == 1 and kept[0].group().isupper() and len(first) <= 4:
            return None  # "Patient: CHF" / "cc: ED" are abbreviations
        new_end = start + kept[-1].end()
        while new_end > start and text[new_end - 1] in ",;:'":
            new_end -= 1
        if text[start:new_end].endswith("'s"):
            new_end -= 2
        return start, new_end, pattern.entity
