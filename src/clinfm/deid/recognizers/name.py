"""Names in clinical patterns: titles ("Dr. Page"), relatives ("wife Susan", "pt's daughter mary"),
signature and header lines ("Electronically signed by: Jane Roe, MD", "cc:", "Attending:", "Dictated by")."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from spacy.lang.en.stop_words import STOP_WORDS

from clinfm.deid.lexicon import clinical_words, could_be_name, is_name_word, is_plain_word, name_lexicon, reads_as_name
from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer

_CAP = r"[A-Z][A-Za-z'\u00C0-\u017F-]+"
_FULL = rf"{_CAP}(?: [A-Z]\.?(?![A-Za-z]))?(?: {_CAP}){{0,2}}"  # "Jane A. Roe", "Mary Ellen Smith"
_CAPS_PARTICLE = r"(?:[Vv]an|[Vv]on|[Dd]e|DE|[Dd]el|DEL|[Dd]ella|[Dd]er|DER|[Dd]en|[Dd]i|DI|[Dd]a|DA|[Dd]u|DU|[Ll]a|LA|[Ll]e|LE|St\.?|ST\.?|Ó|O'|Mac|MAC|[Dd]os|DOS|VAN|VON)"
# "ROE, JANE A", "DE LA CRUZ, ANA", "GARCÍA-LÓPEZ, MARÍA J.", "van der Berg, Pieter"
_LAST_FIRST = rf"(?:{_CAPS_PARTICLE} ){{0,3}}{_CAP}(?: {_CAP})?, ?{_CAP}(?: {_CAP})?(?: [A-Z]\.?(?![A-Za-z]))?(?![\w-])"
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
# Any-case building blocks for real notes ("dr vasquez", "DTR SUZETTE", "q. lander rrt", "Ó Briain", "van der Berg").
_L = "A-Za-z\u00C0-\u024F\u1E00-\u1EFF"  # Latin with diacritics, Vietnamese included
_WORD = rf"[{_L}][{_L}'’-]*"
_PARTICLE = r"(?i:van|von|der|den|de|del|della|di|da|du|la|le|st\.?|o'|mac|bin|ibn|al|el|dos|das|ter|ten)"
_ANY_TITLE = r"(?:(?i:dr|drs|doctor|mr|mrs|miss|mx|prof)|Ms|ms)"  # "MS." in capitals is mental status
_ANY_FULL = (
    rf"(?:[{_L}]\.[ \t]*)?{_WORD}(?:[ \t]+(?!{_ANY_TITLE}(?![{_L}]))(?:[{_L}]\.?(?![{_L}])|{_PARTICLE}(?=[ \t])|{_WORD})){{0,3}}"
)
_ANY_RELATIVE = (
    r"(?i:daughter|dtr|dau|son|wife|husband|hubby|spouse|partner|mother|mom|father|dad|sister|sis|brother|bro"
    r"|grandson|granddaughter|grandaughter|grandmother|grandfather|niece|nephew|aunt|uncle|cousin|friend"
    r"|neighbou?r|caregiver|guardian|fianc[eé]e?|boyfriend|girlfriend|hcp|proxy|poa|step\s?daughter|step\s?son"
    r"|daughter-in-law|son-in-law|sister-in-law|brother-in-law|grand[ \t]?daughter|grand[ \t]?son|contact[ \t]+person"
    r"|contact|next[ \t]+of[ \t]+kin|nok|surrogate|decision[ \t]+maker)"
)
# Credentials that close a signature line, any case: "EARL N. RAND, RRT", "q. lander rrt", "Bernard Foley CRT".
_SIGN_CREDENTIAL = (
    r"(?i:RRT|CRT|RT|RN|BSN|CCRN|LPN|LNA|CNA|NP|ANP|FNP|PA-C|PA|MD|M\\.D\\.|DO|MSW|LICSW|LCSW|SW|PT|OT|SLP|RD"
    r"|PharmD|RPh|SRNA|CRNA|SN|MS|PhD)"
)
# Chinese names: a common surname (simplified or traditional, or a compound one) and one or two given characters.
_CJK_SURNAMES = (
    "王李张張刘劉陈陳杨楊黄黃赵趙吴吳周徐孙孫马馬朱胡郭何高林罗羅郑鄭梁谢謝宋唐许許韩韓冯馮邓鄧曹彭曾肖蕭田董袁潘于"
    "蒋蔣蔡余杜叶葉程苏蘇魏吕呂丁任沈姚卢盧姜崔钟鍾谭譚陆陸汪范範金石廖贾賈夏韦韋付方白邹鄒孟熊秦邱江尹薛闫閆段雷侯龙龍"
    "史陶黎贺賀顾顧毛郝龚龔邵万萬钱錢严嚴覃武戴莫孔向汤湯常温溫康施文牛樊葛邢安齐齊易乔喬伍庞龐颜顏倪庄莊聂聶章鲁魯岳翟殷"
    "詹申欧歐耿关關兰蘭焦俞左柳甘祝包宁寧尚符舒阮柯纪紀梅童凌毕畢单單季裴霍涂成苗谷盛曲翁冉骆駱蓝藍路游辛靳管柴蒙鲍鮑华華"
)
_CJK_COMPOUND = "欧阳|歐陽|司马|司馬|诸葛|諸葛|上官|东方|東方|慕容|令狐|皇甫|公孙|公孫|夏侯|尉迟|尉遲|长孙|長孫"
# Characters that end a name in running Chinese text: "因" (because), "于" (at), "入院" (admitted), "男"/"女" ...
_CJK_AFTER_NAME = "因于於在以主诉訴入出来來男女岁歲是的今昨自由和与與及患病行经經等，。、；：（）(),;: "
_CJK_NAME = rf"(?:{_CJK_COMPOUND}|[{_CJK_SURNAMES}])[\u3400-\u9FFF]{{1,2}}"

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
            "any_title",
            rf"(?<![{_L}])(?:{_ANY_TITLE}|(?i:rabbi|pastor|reverend|rev|chaplain))(?![{_L}])"
            rf"(?:['’][sS]|['’])?\.?[ \t]*(?=(?P<phi>{_ANY_FULL}))",
            0.85,
            "NAME",
        ),
        GroupPattern(
            "any_relative",
            rf"(?<![{_L}]){_ANY_RELATIVE}s?(?![{_L}])(?:'s)?[ \t]*(?:[,:(\-]+[ \t]*|[ \t](?i:is|named|was)[ \t]+)?"
            rf"(?:{_ANY_TITLE}\.?[ \t]+)?(?=(?P<phi>{_ANY_FULL}))",
            0.8,
            "NAME",
        ),
        GroupPattern(
            "signature",
            rf"(?m)(?:^|[.!?;:)]|[ \t]{{2}})[ \t]*(?P<phi>(?:[{_L}]\.[ \t]*)?{_WORD}(?:[ \t]+[{_L}]\.?)?(?:[ \t]+{_WORD}){{0,2}}"
            rf"|[{_L}]\.[ \t]*{_WORD}),?[ \t]+{_SIGN_CREDENTIAL}\.?(?=[ \t]*$|[ \t]{{2}})",
            0.85,
            "NAME",
        ),
        GroupPattern(
            "spoke_with",
            rf"(?<![{_L}])(?i:spoke|spoken|talked|talk|speak|speaking|discussed|met|conferred|meeting|consulted|reviewed)"
            rf"[ \t]+(?i:with|to)[ \t]+"
            rf"(?:(?i:staff|ho|resident|intern|fellow|attending|rn|np|pa)[ \t]+)?(?=(?P<phi>{_ANY_FULL}))",
            0.75,
            "NAME",
        ),
        GroupPattern(
            "staff_any",
            rf"(?<![{_L}])(?i:house[ \t]+staff|ho|resident|intern|fellow|attending|rn|np|pa|nurse|case[ \t]+manager"
            rf"|social[ \t]+worker|sw|chaplain|therapist|interpreter|tech)(?![{_L}])[ \t]*,?[ \t]+(?=(?P<phi>{_ANY_FULL}))",
            0.75,
            "NAME",
        ),
        GroupPattern("family", rf"(?<![{_L}])(?P<phi>{_WORD})[ \t]+(?i:family)\b", 0.75, "NAME"),
        # "Dr. Griffin and Swackhamer aware", "Drs' Ballou and Dutter", "sons Smokey, Morris and Roger"
        GroupPattern(
            "cue_list",
            rf"(?<![{_L}])(?:{_ANY_TITLE}(?:['’]?[sS]|['’])?|{_ANY_RELATIVE}s?)(?![{_L}])\.?[ \t]+{_WORD}"
            rf"(?:[ \t]*,[ \t]*(?P<phi1>{_WORD}))?[ \t]*(?:,|&|(?i:and))[ \t]*(?:{_ANY_TITLE}\.?[ \t]+)?(?P<phi2>{_WORD})",
            0.75,
            "NAME",
        ),
        # "Hank Przybylo (son)", "DICK CUCCHIARA (RESIDENT)", "Lopie Certusi cell# 410-...", "ask to page Suzette"
        GroupPattern(
            "role_after",
            rf"(?<![{_L}])(?P<phi>{_WORD}(?:[ \t]+[{_L}]\.?)?(?:[ \t]+{_WORD})?)[ \t]*(?:\([ \t]*(?:{_ANY_RELATIVE}"
            rf"|(?i:resident|intern|fellow|attending|rn|np|pa|md|sw|social[ \t]+worker|case[ \t]+manager))[ \t]*\)"
            rf"|(?i:cell|home|work|tel|phone|ph|pager|beeper)[ \t]*(?:#|:|no\.?)[ \t]*\(?\d)",
            0.75,
            "NAME",
        ),
        # "E. WELSH AWARE", "Z. MILLER IN TO STRIP TUBES": an initial and a surname
        GroupPattern(
            "initial_surname", rf"(?:(?<=\s)|(?<=^)|(?<=\())(?P<phi>[A-Z]\.[ \t]*[A-Z][{_L}'’-]+)", 0.75, "NAME"
        ),
        # "JOHN STATES HIS SISTER", "Emily reports", "Radu verbalizes": a name before a reporting verb
        GroupPattern(
            "name_verb",
            rf"(?<![{_L}])(?P<phi>{_WORD}(?:[ \t]+{_WORD})?)[ \t]+(?i:states|stated|reports|reported|verbalizes|verbalized"
            rf"|says|said|aware|notified|updated|called|agrees|agreed|requests|requested|asked)(?![{_L}])",
            0.7,
            "NAME",
        ),
        # A lone name closing the note ("SUSAN"): the writer's signature
        GroupPattern(
            "last_line",
            rf"(?:^|[.!?][ \t]+|[ \t]{{2,}})(?P<phi>{_WORD}(?:[ \t]+[{_L}]\.?)?(?:[ \t]+{_WORD})?)[ \t.]*\s*\Z",
            0.7,
            "NAME",
        ),
        GroupPattern("page_x", rf"(?i:\bpage|\bpaged|\bbeep|\bcall)[ \t]+(?P<phi>{_WORD})", 0.7, "NAME"),
        # "lorrie morales is a 70 yr old female": the patient named where the note opens
        GroupPattern(
            "is_a_age",
            rf"(?m)(?:^|[.:][ \t]+)[ \t]*(?P<phi>{_WORD}(?:[ \t]+[{_L}]\.?)?[ \t]+{_WORD})[ \t]+(?i:is|was)[ \t]+an?[ \t]+\d",
            0.75,
            "NAME",
        ),
        # "pt john smith seen today", "Patient Nguyễn Văn Thành": the patient named after the cue, any case
        GroupPattern(
            "any_patient",
            rf"(?<![{_L}])(?i:patient|pt)(?:['’]s)?(?![{_L}])\.?[ \t]*(?:(?i:name)[ \t]*[:\-]?[ \t]*)?(?=(?P<phi>{_ANY_FULL}))",
            0.75,
            "NAME",
        ),
        # "smith, john - 67 y/o male": a note that opens with "surname, given", any case
        GroupPattern(
            "opening_last_first",
            rf"\A[ \t\r\n]*(?P<phi>{_WORD},[ \t]*{_WORD}(?:[ \t]+[{_L}]\.?(?![{_L}]))?)(?=[ \t]*(?:[-–—|;(,]|\d|$))",
            0.8,
            "NAME",
        ),
        # "Nguyễn Văn Thành", "Đặng Thị Hoa": two or more capitalised words, one at least with diacritics
        GroupPattern(
            "diacritic_run",
            rf"(?<![{_L}])(?P<phi>(?:{_WORD}[ \t]+){{0,3}}[{_L}]*[\u00C0-\u024F\u1E00-\u1EFF][{_L}'’-]*(?:[ \t]+{_WORD}){{0,3}})",
            0.75,
            "NAME",
        ),
        # "患者王小明", "Patient 王小明", "王小明先生": a Chinese name (a known surname and one or two characters) by a cue
        GroupPattern(
            "cjk_after",
            rf"(?:患者|病人|病患|患儿|姓名|(?i:patient|pt|name)[ \t]*[:：]?)[ \t:：]*(?P<phi>{_CJK_NAME})",
            0.8,
            "NAME",
        ),
        GroupPattern(
            "cjk_before", rf"(?<![\u3400-\u9FFF])(?P<phi>{_CJK_NAME})(?=患者|病人|先生|女士|小姐|同志|老人)", 0.8, "NAME"
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
        # A banner line that opens with "LAST, FIRST M" and goes on to the DOB, MRN, age or sex
        GroupPattern(
            "banner_line",
            rf"(?m)^[ \t]*(?P<phi>{_LAST_FIRST})(?=[ \t]*$|[ \t]{{2,}}|[ \t]*[|;]|,?[ \t]*(?i:DOB|D\.O\.B|MRN|age|sex|\d))",
            0.8,
            "NAME",
        ),
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
        if pattern.name in ("cjk_after", "cjk_before"):
            return _refine_cjk(text, start, end, pattern)
        if pattern.name == "diacritic_run":
            return _refine_diacritic_run(text, start, end, pattern)
        if pattern.name == "opening_last_first":
            words = re.findall(rf"[{_L}][{_L}'’-]*", text[start:end])
            full = [w for w in words if len(w) > 1]
            if len(full) != 2 or any(w.lower() in NOT_NAME for w in full):
                return None
            return (start, end, pattern.entity) if all(is_name_word(w, common=6.0) for w in full) else None
        if pattern.name == "any_patient":
            refined = _refine_by_lexicon(text, start, end, pattern)
            if refined is None:
                return None
            value = text[refined[0] : refined[1]]
            full = [w for w in value.split() if len(w.strip(".")) > 1]
            if _uncased(value) and (len(full) < 2 or not all(is_name_word(w, common=6.0) for w in full)):
                return None  # uncased, "pt john smith" is a name; "pt mark", "PT ROSE" or "PT LETHARGIC" is not
            return refined
        if pattern.name in _LEXICON_PATTERNS:
            return _refine_by_lexicon(text, start, end, pattern)
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
        words = [t.group() for t in kept if len(t.group().strip(".,")) > 1]
        if pattern.name == "banner_line" and not reads_as_name(words):
            return None
        strong_cue = pattern.name in ("title", "header", "signed_by", "list")
        if pattern.name != "title" and (
            all(is_plain_word(w) for w in words)
            or not strong_cue
            and _uncased(text[start : start + kept[-1].end()])
            and not reads_as_name(words)
        ):
            return None  # "O. Continue PT", and in capitals "PA LINE PLACED" or "SEDATION WEANED", are not names
        new_end = start + kept[-1].end()
        while new_end > start and text[new_end - 1] in ",;:'":
            new_end -= 1
        if text[start:new_end].endswith("'s"):
            new_end -= 2
        return start, new_end, pattern.entity


_LEXICON_PATTERNS = frozenset({
    "any_title", "any_relative", "signature", "spoke_with", "staff_any", "family", "cue_list", "role_after",
    "page_x", "is_a_age", "initial_surname", "name_verb", "last_line",
})  # fmt: skip
# How sure the cue is that a name follows: after "dr" even "dr small" is one; after "spoke with" only a known name.
_FIRST_WORD_RULE = {
    "any_title": "strong",
    "signature": "strong",
    "any_relative": "relative",
    "spoke_with": "lexicon",
    "staff_any": "lexicon",
    "family": "lexicon",
    "cue_list": "strong",
    "role_after": "relative",
    "page_x": "lexicon",
    "any_patient": "patient",
    "is_a_age": "relative",
    "initial_surname": "initial",
    "name_verb": "verb",
    "last_line": "lexicon",
}
_TOKEN = re.compile(rf"[{_L}][{_L}'’.-]*")


def _uncased(value: str) -> bool:
    letters = [ch for ch in value if ch.isalpha()]
    return bool(letters) and (all(ch.isupper() for ch in letters) or all(ch.islower() for ch in letters))


def _first_word_ok(word: str, rule: str) -> bool:
    core = word.strip(".'’").lower().removesuffix("'s").removesuffix("’s")
    if rule == "strong" and word[:1].isupper() and word[1:].islower() and core in name_lexicon():
        return core not in NOT_NAME  # "Dr Will Cole": a capitalised name that is also a stop word
    if core in NOT_NAME or core in STOP_WORDS:
        return False
    if rule == "initial":  # after an initial, a lexicon name or a rare word, never a clinical one
        return is_name_word(core, common=5.0) or could_be_name(core, common=3.0)
    if rule == "strong":  # a lexicon name even if common ("dr green"), else a rare word ("dr swackhamer")
        return could_be_name(core, common=3.5) or (core in name_lexicon() and could_be_name(core, common=9))
    if rule == "relative":  # in capitals a lexicon name ("DAUGHTER VERONICA"), else also a rare word ("dtr laverne")
        if word.isupper() and len(core) > 1:
            return is_name_word(core, common=6.0)
        return is_name_word(core, common=5.0) or could_be_name(core, common=3.0)
    if rule == "patient":  # a lexicon name; capitalised (not in capitals), also a word with diacritics
        return is_name_word(core, common=6.0) or (word[:1].isupper() and not word.isupper() and not core.isascii())
    if rule == "verb" and not word[:1].isupper():
        return False  # "foot asked", "pt states": a name before a verb is written with a capital
    return is_name_word(core, common=5.5)


def _refine_by_lexicon(text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
    """Keep the leading tokens that read as a name: the first after the cue's rule, the rest only while they are
    initials, particles or name-like words written in the first word's case."""
    rule = _FIRST_WORD_RULE[pattern.name]
    tokens = [m for m in _TOKEN.finditer(text, start, end)]
    kept: list[re.Match[str]] = []
    words = 0
    for i, tok in enumerate(tokens):
        value = tok.group().rstrip(".") if not re.fullmatch(r"[^\W\d_]\.", tok.group()) else tok.group()
        core = value.rstrip(".").removesuffix("'s").removesuffix("’s")
        if not core:
            break
        if len(core) == 1:  # an initial: kept only with a word after it or before it
            kept.append(tok)
            continue
        if re.fullmatch(_PARTICLE, core) and i + 1 < len(tokens):
            kept.append(tok)
            continue
        if words == 0:
            if pattern.name == "signature" and not (is_name_word(core) or could_be_name(core, common=3.0)):
                return None
            if pattern.name != "signature" and not _first_word_ok(core, rule):
                break
        else:
            first = next(t for t in kept if len(t.group().rstrip(".")) > 1).group()
            same_case = core.isupper() == first.isupper() and core[0].isupper() == first[0].isupper()
            rare = 3.0 if pattern.name == "signature" else 2.5
            if not same_case or not (is_name_word(core) or could_be_name(core, common=rare)):
                break
            if pattern.name == "signature" and not (is_name_word(core) or could_be_name(core, common=3.0)):
                return None
        kept.append(tok)
        words += 1
        if tok.group().endswith((".", "'s", "’s")) and len(core) > 1:
            break  # "dr vasquez." / "dr vascuez's meeting": the name ends here
    while kept and len(kept[-1].group().rstrip(".")) == 1 and words and pattern.name != "signature":
        kept.pop()  # a trailing initial belongs to what follows
    while kept and re.fullmatch(_PARTICLE, kept[-1].group()):
        kept.pop()
    if not words or not kept:
        return None
    if pattern.name == "family" and (len(kept) != 1 or text[kept[0].start()].islower()):
        return None
    new_start = kept[0].start()
    new_end = kept[-1].end()
    while new_end > new_start and text[new_end - 1] in ".,;:'’-":
        if text[new_end - 1] == "." and re.fullmatch(r"[^\W\d_]\.", text[new_end - 2 : new_end]) and (
            new_end - 2 == new_start or not text[new_end - 3].isalpha()
        ):
            break  # an initial keeps its dot
        new_end -= 1
    if text[new_start:new_end].lower().endswith(("'s", "’s")):
        new_end -= 2
    return new_start, new_end, pattern.entity


@lru_cache(maxsize=1)
def _allowed_words() -> frozenset[str]:
    """Every word of the clinical allow list (eponyms, drugs) lower-cased: "Sjögren", "Guillain-Barré"."""
    raw = resources.files("clinfm.deid").joinpath("allowlist.txt").read_text(encoding="utf-8")
    return frozenset(
        w.lower() for line in raw.splitlines() if line.strip() and not line.startswith("#") for w in line.split()
    )


def _diacritic_name_word(word: str) -> bool:
    core = word.strip(".,;:'’-").lower()
    if len(core) < 2 or not word[:1].isupper() or core in _allowed_words() or core in NOT_NAME:
        return False
    if core in clinical_words() or core in STOP_WORDS:
        return False
    return not core.isascii() or is_name_word(core, common=6.0) or could_be_name(core, common=3.0)


def _refine_diacritic_run(text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
    """The first run of two or more capitalised name-like words in the match, one at least with diacritics."""
    tokens = list(_TOKEN.finditer(text, start, end))
    run: list[re.Match[str]] = []
    for tok in [*tokens, None]:
        if tok is not None and _diacritic_name_word(tok.group()):
            run.append(tok)
            continue
        if len(run) >= 2 and any(not t.group().isascii() for t in run):
            return run[0].start(), run[-1].end() - (run[-1].group()[-1] in ".'’-"), pattern.entity
        run = []
    return None


def _refine_cjk(text: str, start: int, end: int, pattern: GroupPattern) -> tuple[int, int, str] | None:
    """A Chinese name stops before a character that ends a name in running text ("王小明因胸痛" -> "王小明")."""
    surname = 2 if re.match(_CJK_COMPOUND, text[start:end]) else 1
    cut = start + surname
    while cut < end and text[cut] not in _CJK_AFTER_NAME:
        cut += 1
    return (start, cut, pattern.entity) if cut > start + surname else None
