"""Word lists behind the name rules: a name lexicon (every Latin-script Faker locale's given and family names),
English word frequencies (wordfreq, shipped in its wheel) and clinical vocabulary (`clinical_words.txt`).

A capitalised word in a note in capitals says nothing by its case; these lists decide whether it reads as a
name ("LANDER", "FORMAN-LYONS") or as a word ("LIPASE", "ALERT", "LEFT RADIAL").
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re
from functools import lru_cache
from importlib import resources

from spacy.lang.en.stop_words import STOP_WORDS

_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF'’ -]+")
COMMON_ZIPF = 4.5  # a word this frequent in English ("small", "aware", "goal") is a word before it is a name
RARE_ZIPF = 2.5  # a word this rare that no lexicon knows ("milovan", "vascuez") may well be a name


def _names_of(attr: object) -> list[str]:
    if isinstance(attr, dict):
        return list(attr)
    if isinstance(attr, (list, tuple, set, frozenset)):
        return list(attr)
    return []


@lru_cache(maxsize=1)
def name_lexicon() -> frozenset[str]:
    """Given and family names, lower-cased, from every Faker person provider written in Latin letters."""
    import faker.providers.person as person

    names: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        try:
            provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            for name in _names_of(getattr(provider, attr, None)):
                if _LATIN.fullmatch(name):
                    names.update(part for part in name.lower().replace("’", "'").split() if len(part) > 1)
    return frozenset(names)


@lru_cache(maxsize=1)
def _frequencies() -> dict[str, float]:
    import wordfreq

    return wordfreq.get_frequency_dict("en", wordlist="best")


def zipf(word: str) -> float:
    """wordfreq's Zipf frequency of `word` in English (0 when unknown; 7 is "the", 3 is one in a million)."""
    freq = _frequencies().get(word.lower().replace("’", "'"), 0.0)
    return math.log10(freq * 1e9) if freq else 0.0


@lru_cache(maxsize=1)
def clinical_words() -> frozenset[str]:
    """Clinical words and abbreviations (one a line in clinical_words.txt) plus spaCy's English stop words."""
    raw = resources.files("clinfm.deid").joinpath("clinical_words.txt").read_text(encoding="utf-8")
    words = {line.strip().lower() for line in raw.splitlines() if line.strip() and not line.startswith("#")}
    return frozenset(words | set(STOP_WORDS))


def _core(word: str) -> str:
    word = word.strip(".,;:()[]\"'’").lower()
    return word[:-2] if word.endswith(("'s", "’s")) else word


def is_name_word(word: str, common: float = COMMON_ZIPF) -> bool:
    """A lexicon name that is neither a clinical word nor an English word as frequent as `common`."""
    w = _core(word)
    if not w or w in clinical_words():
        return False
    parts = [p for p in w.split("-") if p]
    return bool(parts) and all(p in name_lexicon() or zipf(p) < RARE_ZIPF for p in parts) and any(
        p in name_lexicon() for p in parts
    ) and zipf(w) < common


def could_be_name(word: str, common: float = COMMON_ZIPF) -> bool:
    """After a strong cue ("dr", "dtr", a credential): anything alphabetic that is not a clinical word, and not a
    common English word unless the name lexicon knows it ("dr small", "dr green")."""
    w = _core(word)
    if len(w) < 2 or not re.fullmatch(r"[a-z\u00C0-\u024F\u1E00-\u1EFF][a-z\u00C0-\u024F\u1E00-\u1EFF'’-]*", w) or w in clinical_words():
        return False
    if "-" in w.strip("-"):  # "forman-lyons" yes; "phoned-family", "rob-who" no: every part must pass
        return all(could_be_name(part, common) for part in w.split("-") if part)
    return w in name_lexicon() or zipf(w) < common


def is_plain_word(word: str) -> bool:
    """An English or clinical word that is no known name: "Lipase", "Alert", "Urine"."""
    w = _core(word)
    if w in clinical_words() or w in STOP_WORDS:
        return True
    if "-" in w.strip("-"):  # "CO-SIGNATURE"
        return all(is_plain_word(part) for part in w.split("-") if part)
    return w not in name_lexicon() and zipf(w) >= RARE_ZIPF


def _uncased(value: str) -> bool:
    letters = [ch for ch in value if ch.isalpha()]
    return bool(letters) and (all(ch.isupper() for ch in letters) or all(ch.islower() for ch in letters))


def reads_as_name(words: list[str]) -> bool:
    """Whether words found without a strong cue (statistical NER, "X Y, PT") read as a name: none a clinical word,
    every one name-like, and where case says nothing (capitals, lower case) or the span is one word, a lexicon
    name among them. "LEFT RADIAL", "Lipase", "Atenolol", "Requesting Miller" are not; "EARL RAND" is."""
    cores = [_core(w) for w in words]
    full = [c for c in cores if len(c) > 1]
    if not full or any(c in clinical_words() for c in full):
        return False
    if _uncased(" ".join(words)):
        return any(is_name_word(c, common=5.0) for c in full) and all(
            is_name_word(c, common=5.0) or could_be_name(c, common=3.0) for c in full
        )
    if len(full) == 1:  # "John", "Michael" in mixed case: a lexicon name, however common
        return is_name_word(full[0], common=6.0)
    return not all(is_plain_word(c) for c in full)  # "Wisława Szczepańska", not "Denies Discomfort"
