"""Turn a subject's MEDS timeline into the token ids the foundation model reads, and back into events.

A timeline becomes ``BOS GENDER//F AGE//40-44 <event> <event> TIME//1w <event> ... EOS`` where

* an event is one code token (``SNOMED//44054006``), followed by a value-bin token ``Q0``..``Q9`` when the
  event has a numeric value and its code has decile edges learned on the training split; with
  ``fused_values`` the code and its bin are one token instead (``LOINC//2160-0|Q3``), so a lab value costs
  one position and the model reads what the value means for that code from one embedding;
* codes seen fewer than ``min_count`` times in training are rolled up to their parent code
  (``metadata/codes.parquet`` ``parent_codes``, else :func:`schema.parent_code`), or to ``UNK``;
* a time-gap token (``TIME//5m`` .. ``TIME//5y+``, nearest bin on a log scale) sits between events at
  different times; events at the same time have none;
* the static prefix is sex (``GENDER//..``) and the 5-year age band at the start of the window
  (``MEDS_BIRTH`` itself is not a token: the age band says what it would);
* ``MEDS_DEATH`` is terminal: later events are dropped; ``EOS`` marks the end of the record (end of
  follow-up, i.e. censoring, not an outcome: rollouts never sample it).

Decisions:

* RACE and ETHNICITY static codes are *not* in the prefix. They are social categories recorded
  inconsistently across sources (Eunomia's "ethnicity" is ancestry, MIMIC mixes race and ethnicity), and the
  fairness audits use them as the groups to compare; a model conditioned on them would learn to use them
  directly. Sex is kept because it changes clinical base rates (pregnancy, prostate, ...).
* Text values (``text_value``) are ignored: only the code of such an event is a token.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from clinfm import schema
from clinfm.schema import Subject

PAD, BOS, EOS, UNK = "PAD", "BOS", "EOS", "UNK"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
TIME_PREFIX, AGE_PREFIX, BIN_PREFIX = "TIME//", "AGE//", "Q"
FUSED_SEP = "|Q"  # code|Qb: a code and its value bin in one token

MINUTE, HOUR, DAY, YEAR = 1.0, 60.0, 1440.0, 525960.0
TIME_BINS: tuple[tuple[str, float], ...] = (
    ("5m", 5 * MINUTE), ("15m", 15 * MINUTE), ("1h", HOUR), ("2h", 2 * HOUR), ("6h", 6 * HOUR),
    ("12h", 12 * HOUR), ("1d", DAY), ("3d", 3 * DAY), ("1w", 7 * DAY), ("2w", 14 * DAY), ("1mo", YEAR / 12),
    ("3mo", YEAR / 4), ("6mo", YEAR / 2), ("1y", YEAR), ("2y", 2 * YEAR), ("5y+", 5 * YEAR),
)  # fmt: skip
"""Time-gap tokens and the duration (minutes) each stands for; a gap goes to the nearest on a log scale."""
_TIME_EDGES = [math.sqrt(a[1] * b[1]) for a, b in itertools.pairwise(TIME_BINS)]  # geometric midpoints

SEXES = ("GENDER//F", "GENDER//M", "GENDER//UNKNOWN")


def time_token(gap_minutes: float) -> str:
    """The time-gap token for a positive gap (``time_token(90) == "TIME//1h"``)."""
    return TIME_PREFIX + TIME_BINS[bisect.bisect_left(_TIME_EDGES, gap_minutes)][0]


def age_token(age_years: float | None, band: int = 5, top: int = 90) -> str:
    if age_years is None or age_years < 0 or math.isnan(age_years):
        return AGE_PREFIX + "UNKNOWN"
    if age_years >= top:
        return f"{AGE_PREFIX}{top}+"
    lo = int(age_years // band) * band
    return f"{AGE_PREFIX}{lo}-{lo + band - 1}"


@dataclass
class TokenizerStats:
    """What tokenization did to a set of subjects."""

    vocab_size: int
    subjects: int
    events: int
    unk_share: float  # share of (timed) events whose code became UNK
    parent_share: float  # share of events whose code was rolled up to a parent code
    tokens_mean: float
    tokens_median: float
    tokens_p95: float


@dataclass
class DecodedEvent:
    """One event read back from tokens: the code, its value bin and edges, and time since the window start."""

    code: str
    elapsed: dt.timedelta
    value_bin: int | None = None
    value_range: tuple[float, float] | None = None  # [low, high) of the bin in the code's units


@dataclass
class EncodedSubject:
    """A whole record in tokens, before windowing: event tokens with the time of the event each came from."""

    subject_id: int
    sex: int
    birth: dt.datetime | None
    tokens: list[int] = field(default_factory=list)
    times: list[dt.datetime] = field(default_factory=list)
    complete: bool = True  # False when cut at a prediction time (no EOS)


class ClinicalTokenizer:
    """Code, value-bin and time-gap tokens for MEDS timelines; fit on the training split only.

    >>> tok = ClinicalTokenizer(min_count=5).fit(db)           # doctest: +SKIP
    >>> ids = tok.transform(db[sid], until=prediction_time)     # doctest: +SKIP
    >>> tok.decode(ids)[:3]                                     # doctest: +SKIP
    """

    def __init__(self, min_count: int = 5, n_value_bins: int = 10, age_band_years: int = 5, fused_values: bool = False) -> None:
        if n_value_bins < 1 or n_value_bins > 100:
            raise ValueError(f"n_value_bins {n_value_bins} is not in 1..100")
        self.fused_values = fused_values
        self.min_count = min_count
        self.n_value_bins = n_value_bins
        self.age_band_years = age_band_years

    # --- fitting --------------------------------------------------------------------------------------
    def fit(self, db_or_dataset, subject_ids: Iterable[int] | None = None) -> ClinicalTokenizer:
        """Learn the vocabulary, rare-code roll-ups and per-code value deciles from ``subject_ids``
        (default: the train split) of a :class:`SubjectDatabase` or a MEDS dataset folder."""
        path = Path(getattr(db_or_dataset, "path", db_or_dataset))
        if subject_ids is None:
            subject_ids = [s for s, split in _read_splits(path).items() if split == schema.TRAIN]
            if not subject_ids:
                raise ValueError(f"{path} has no train split to fit the tokenizer on; pass subject_ids")
        ids = pl.Series(schema.SUBJECT_ID, sorted({int(s) for s in subject_ids}), dtype=pl.Int64)
        events = (
            pl.scan_parquet(path / schema.DATA_DIR / "*.parquet")
            .filter(pl.col(schema.SUBJECT_ID).is_in(ids.implode()) & pl.col(schema.TIME).is_not_null())
            .filter(pl.col(schema.CODE) != schema.BIRTH)
            .select(schema.CODE, schema.NUMERIC_VALUE)
            .collect()
        )
        counts = dict(events.group_by(schema.CODE).len().iter_rows())
        parents = _read_parents(path)
        self.parents_ = {c: p for c, p in parents.items() if c in counts or p in counts}
        self.code_map_ = self._roll_up(Counter(counts))
        fixed = list(SPECIAL_TOKENS)
        fixed += [f"{BIN_PREFIX}{i}" for i in range(self.n_value_bins)]
        fixed += [TIME_PREFIX + name for name, _ in TIME_BINS]
        fixed += [age_token(a, self.age_band_years) for a in range(0, 91, self.age_band_years)]
        fixed += [AGE_PREFIX + "UNKNOWN", *SEXES]
        codes = sorted({t for t in self.code_map_.values() if t != UNK} - set(fixed))
        self.vocab_ = list(dict.fromkeys(fixed + codes))
        self._index()

        mapped = events.drop_nulls(schema.NUMERIC_VALUE).filter(pl.col(schema.NUMERIC_VALUE).is_finite())
        mapped = mapped.with_columns(
            pl.col(schema.CODE).replace_strict(self.code_map_, default=UNK).alias("token")
        ).filter(pl.col("token") != UNK)
        qs = [i / self.n_value_bins for i in range(1, self.n_value_bins)]
        edges = mapped.group_by("token").agg(
            pl.len().alias("n"), *[pl.col(schema.NUMERIC_VALUE).quantile(q, "linear").alias(f"q{i}") for i, q in enumerate(qs)]
        )
        self.value_bins_: dict[str, list[float]] = {}
        for row in edges.filter(pl.col("n") >= self.n_value_bins).sort("token").iter_rows(named=True):
            cuts = sorted({float(row[f"q{i}"]) for i in range(len(qs))})
            self.value_bins_[row["token"]] = cuts
        if self.fused_values:
            self.vocab_ += [f"{t}{FUSED_SEP}{b}" for t, cuts in self.value_bins_.items() for b in range(len(cuts) + 1)]
            self._index()
        return self

    def _roll_up(self, counts: Counter) -> dict[str, str]:
        """code -> token: frequent codes are their own token; rare ones add their count to their parent
        (deepest codes first) and take the parent's token; what stays rare with no parent is UNK."""
        for code in list(counts):
            for a in self._ancestors(code):
                counts[a] += 0  # every ancestor takes part, even one never coded directly
        depth = {c: len(self._ancestors(c)) for c in counts}
        owner = {}
        for code in sorted(counts, key=lambda c: (-depth[c], c)):
            parent = self._parent(code)
            if counts[code] < self.min_count and parent is not None:
                counts[parent] += counts[code]
                owner[code] = parent
        frequent = {c for c, n in counts.items() if n >= self.min_count}
        out = {}
        for code in list(counts):
            c = code
            while c not in frequent and c in owner:
                c = owner[c]
            out[code] = c if c in frequent else UNK
        return out

    def _parent(self, code: str) -> str | None:
        return self.parents_.get(code) or schema.parent_code(code)

    def _ancestors(self, code: str) -> list[str]:
        out, c = [], self._parent(code)
        while c is not None and c not in out:
            out.append(c)
            c = self._parent(c)
        return out

    def _index(self) -> None:
        self.token_to_id_ = {t: i for i, t in enumerate(self.vocab_)}
        self._code_ids = {c: self.token_to_id_.get(t, self.token_to_id_[UNK]) for c, t in self.code_map_.items()}
        self._bin_ids = [self.token_to_id_[f"{BIN_PREFIX}{i}"] for i in range(self.n_value_bins)]

    # --- the vocabulary ---------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "vocab_"):
            raise RuntimeError("ClinicalTokenizer is not fitted: call fit(db) or ClinicalTokenizer.load(path)")

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        return len(self.vocab_)

    def id(self, token: str) -> int:
        return self.token_to_id_[token]

    @property
    def pad_id(self) -> int:
        return self.token_to_id_[PAD]

    @property
    def bos_id(self) -> int:
        return self.token_to_id_[BOS]

    @property
    def eos_id(self) -> int:
        return self.token_to_id_[EOS]

    @property
    def unk_id(self) -> int:
        return self.token_to_id_[UNK]

    def token_kinds(self) -> np.ndarray:
        """Per token id: 0 special, 1 value bin, 2 time gap, 3 prefix (sex/age), 4 code."""
        kinds = np.full(len(self.vocab_), 4, dtype=np.int8)
        for i, t in enumerate(self.vocab_):
            if t in SPECIAL_TOKENS:
                kinds[i] = 0
            elif t.startswith(BIN_PREFIX) and t[1:].isdigit():
                kinds[i] = 1
            elif t.startswith(TIME_PREFIX):
                kinds[i] = 2
            elif t.startswith(AGE_PREFIX) or t in SEXES:
                kinds[i] = 3
        return kinds

    def time_minutes(self) -> np.ndarray:
        """Per token id: the minutes a time-gap token stands for (0 for other tokens)."""
        out = np.zeros(len(self.vocab_), dtype=np.float64)
        for name, minutes in TIME_BINS:
            out[self.token_to_id_[TIME_PREFIX + name]] = minutes
        return out

    def code_id(self, code: str) -> int:
        """The token id of a code: itself, its rolled-up parent, the nearest known ancestor, or UNK."""
        self._check_fitted()
        tid = self._code_ids.get(code)
        if tid is None:
            tid = self.unk_id
            for c in self._ancestors(code):
                if c in self.token_to_id_:
                    tid = self.token_to_id_[c]
                    break
                if c in self._code_ids and self._code_ids[c] != self.unk_id:
                    tid = self._code_ids[c]
                    break
            self._code_ids[code] = tid
        return tid

    def value_bin(self, token: str, value: float) -> int | None:
        cuts = self.value_bins_.get(token)
        if cuts is None or value is None or not math.isfinite(value):
            return None
        return bisect.bisect_right(cuts, value)

    # --- encoding -------------------------------------------------------------------------------------
    def encode(self, subject: Subject | pa.Table, until: dt.datetime | None = None) -> EncodedSubject:
        """The record's event tokens with their times (events at or before ``until`` when given)."""
        self._check_fitted()
        sid, times, codes, values = _columns(subject)
        sex, birth = SEXES[2], None
        out = EncodedSubject(subject_id=sid, sex=0, birth=None, complete=until is None)
        prev = None
        for t, code, value in zip(times, codes, values):
            if t is None:
                if code.startswith("GENDER//"):
                    sex = code if code in SEXES else SEXES[2]
                continue
            if code == schema.BIRTH:  # the age band in the prefix carries it; not an event to predict
                birth = birth or t
                continue
            if until is not None and t > until:
                break
            if prev is not None and t != prev:
                gap = (t - prev).total_seconds() / 60.0
                if gap > 0:
                    out.tokens.append(self.token_to_id_[time_token(gap)])
                    out.times.append(t)
            prev = t
            tid = self.code_id(code)
            out.tokens.append(tid)
            out.times.append(t)
            b = self.value_bin(self.vocab_[tid], value) if value is not None else None
            if b is not None and self.fused_values:
                out.tokens[-1] = self.token_to_id_[f"{self.vocab_[tid]}{FUSED_SEP}{b}"]
            elif b is not None:
                out.tokens.append(self._bin_ids[b])
                out.times.append(t)
            if code == schema.DEATH:
                out.complete = True  # nothing follows death
                break
        if birth is None:  # MEDS_BIRTH after the cut is still the birth date
            birth = next((t for t, c in zip(times, codes) if c == schema.BIRTH), None)
        out.sex, out.birth = self.token_to_id_[sex], birth
        return out

    def prefix(self, enc: EncodedSubject, start: dt.datetime | None) -> list[int]:
        """BOS, sex and the age band at ``start`` (the first event of the window)."""
        age = None
        if enc.birth is not None and start is not None:
            age = (start - enc.birth).total_seconds() / (YEAR * 60.0)
        return [self.bos_id, enc.sex, self.token_to_id_[age_token(age, self.age_band_years)]]

    def transform(self, subject: Subject | pa.Table, until: dt.datetime | None = None, max_len: int | None = None) -> list[int]:
        """Token ids of a subject's record: prefix, events (at or before ``until``), EOS when the record is
        complete. With ``max_len`` only the most recent events are kept and the age band is re-computed."""
        enc = self.encode(subject, until)
        body = enc.tokens + ([self.eos_id] if enc.complete else [])
        times = enc.times + ([enc.times[-1] if enc.times else None] if enc.complete else [])
        if max_len is not None and len(body) + 3 > max_len:
            keep = max(max_len - 3, 0)
            body, times = body[len(body) - keep :], times[len(times) - keep :]
        return self.prefix(enc, times[0] if times else until) + body

    def windows(self, enc: EncodedSubject, length: int) -> list[list[int]]:
        """Split a record into windows of at most ``length`` tokens, each starting with its own prefix."""
        body = enc.tokens + ([self.eos_id] if enc.complete else [])
        times = enc.times + ([enc.times[-1] if enc.times else None] if enc.complete else [])
        step = length - 3
        out = []
        for start in range(0, max(len(body), 1), step):
            chunk = body[start : start + step]
            out.append(self.prefix(enc, times[start] if start < len(times) else None) + chunk)
        return out

    # --- decoding -------------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> list[DecodedEvent]:
        """Token ids back to readable events: code (prefix tokens too), value bin with its edges, and the
        time elapsed since the first token (the sum of the time-gap tokens before it)."""
        self._check_fitted()
        minutes = dict(TIME_BINS)
        events: list[DecodedEvent] = []
        elapsed = 0.0
        for i in ids:
            token = self.vocab_[int(i)]
            if token in (PAD, BOS, EOS):
                continue
            if token.startswith(TIME_PREFIX):
                elapsed += minutes[token[len(TIME_PREFIX) :]]
            elif token.startswith(BIN_PREFIX) and token[1:].isdigit():
                if events and events[-1].value_bin is None:
                    self._set_bin(events[-1], int(token[1:]))
            elif FUSED_SEP in token and token.rpartition(FUSED_SEP)[2].isdigit():
                code, _, b = token.rpartition(FUSED_SEP)
                events.append(DecodedEvent(code=code, elapsed=dt.timedelta(minutes=elapsed)))
                self._set_bin(events[-1], int(b))
            else:
                events.append(DecodedEvent(code=token, elapsed=dt.timedelta(minutes=elapsed)))
        return events

    def _set_bin(self, event: DecodedEvent, b: int) -> None:
        cuts = self.value_bins_.get(event.code, [])
        lo = cuts[b - 1] if 0 < b <= len(cuts) else -math.inf
        hi = cuts[b] if b < len(cuts) else math.inf
        event.value_bin, event.value_range = b, (lo, hi)

    # --- statistics -----------------------------------------------------------------------------------
    def describe(self, db, subject_ids: Iterable[int]) -> TokenizerStats:
        """Vocabulary size, UNK and roll-up shares, and tokens per subject over ``subject_ids``."""
        return self.summarize([self.count(db.table(sid)) for sid in subject_ids])

    def count(self, subject: Subject | pa.Table) -> tuple[int, int, int, int]:
        """(timed events, events that became UNK, events rolled up to a parent, tokens) of one record."""
        self._check_fitted()
        _, times, codes, _ = _columns(subject)
        timed = [c for c, t in zip(codes, times) if t is not None and c != schema.BIRTH]  # birth is the age band
        unk = rolled = 0
        for c in timed:
            tid = self.code_id(c)
            unk += tid == self.unk_id
            rolled += tid != self.unk_id and self.vocab_[tid] != c
        return len(timed), unk, rolled, len(self.transform(subject))

    def summarize(self, counts: Sequence[tuple[int, int, int, int]]) -> TokenizerStats:
        """:class:`TokenizerStats` from per-subject :meth:`count` tuples (gathered anywhere, in any order)."""
        arr = np.asarray(counts, dtype=np.int64).reshape(-1, 4)
        events, unk, rolled = (int(v) for v in arr[:, :3].sum(0))
        lengths = arr[:, 3] if len(arr) else np.zeros(1)
        return TokenizerStats(
            vocab_size=self.vocab_size, subjects=len(arr), events=events,
            unk_share=unk / max(events, 1), parent_share=rolled / max(events, 1),
            tokens_mean=float(lengths.mean()), tokens_median=float(np.median(lengths)),
            tokens_p95=float(np.percentile(lengths, 95)),
        )  # fmt: skip

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        self._check_fitted()
        state = {
            "format": "clinfm-tokenizer-v1",
            "params": {"min_count": self.min_count, "n_value_bins": self.n_value_bins, "age_band_years": self.age_band_years,
                       **({"fused_values": True} if self.fused_values else {})},  # fmt: skip
            "vocab": self.vocab_,
            "code_map": {c: t for c, t in sorted(self.code_map_.items()) if c != t},
            "value_bins": self.value_bins_,
            "parents": dict(sorted(self.parents_.items())),
        }
        Path(path).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> ClinicalTokenizer:
        state = json.loads(Path(path).read_text())
        if state.get("format") != "clinfm-tokenizer-v1":
            raise ValueError(f"{path} is not a ClinFM tokenizer file (format {state.get('format')!r})")
        tok = cls(**state["params"])
        tok.vocab_ = state["vocab"]
        tok.code_map_ = {t: t for t in tok.vocab_} | state["code_map"]
        tok.value_bins_ = {k: list(v) for k, v in state["value_bins"].items()}
        tok.parents_ = state["parents"]
        tok._index()
        return tok

    def __repr__(self) -> str:
        size = len(self.vocab_) if hasattr(self, "vocab_") else "unfitted"
        return f"ClinicalTokenizer(min_count={self.min_count}, n_value_bins={self.n_value_bins}, vocab={size})"


def _columns(subject: Subject | pa.Table) -> tuple[int, list, list, list]:
    if isinstance(subject, pa.Table):
        sids = subject.column(schema.SUBJECT_ID)
        sid = int(sids[0].as_py()) if len(sids) else -1
        return (
            sid,
            subject.column(schema.TIME).to_pylist(),
            subject.column(schema.CODE).to_pylist(),
            subject.column(schema.NUMERIC_VALUE).to_pylist(),
        )
    ev = subject.events
    return subject.subject_id, [e.time for e in ev], [e.code for e in ev], [e.numeric_value for e in ev]


def _read_splits(path: Path) -> dict[int, str]:
    f = path / schema.SPLITS_FILE
    if not f.exists():
        return {}
    df = pl.read_parquet(f)
    return dict(zip(df[schema.SUBJECT_ID].to_list(), df["split"].to_list()))


def _read_parents(path: Path) -> dict[str, str]:
    f = path / schema.CODES_FILE
    if not f.exists():
        return {}
    df = pl.read_parquet(f, columns=["code", "parent_codes"]).filter(pl.col("parent_codes").list.len() > 0)
    return {c: ps[0] for c, ps in zip(df["code"].to_list(), df["parent_codes"].to_list()) if ps[0] != c}


def stats_as_dict(stats: TokenizerStats) -> dict:
    return asdict(stats)
