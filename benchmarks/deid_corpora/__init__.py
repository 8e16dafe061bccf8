"""Evaluation corpora for note de-identification, built by code with gold spans recorded as the text is written.

Two corpora, written independently of each other and of the notes ClinFM's recognizers are tuned on:
`hospital` (templated hospital documents, names and places from Faker's locales) and `freetext` (hurried
free text, hand-written name and place pools). Regenerate with `python -m deid_corpora` from `benchmarks/`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from . import freetext, hospital
from .builder import read_jsonl, write_jsonl

DATA = Path(__file__).resolve().parent / "data"
CORPORA: dict[str, Callable[..., Iterator[dict]]] = {
    hospital.NAME: hospital.generate,
    freetext.NAME: freetext.generate,
}
__all__ = ["CORPORA", "DATA", "read_jsonl", "write_jsonl"]
