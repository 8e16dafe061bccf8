"""Patient-record reasoning: the foundation model's forecasts for one subject at one time, each with the events
in the record that drove it (attribution by removing groups of events), or an abstention when the record is
too thin.

Method
------
The risks and expected next diagnoses are ``model.generate.forecast_subject`` rollouts (share of sampled
futures, Wilson 95% interval). Attribution does *not* re-sample rollouts per removed group: a difference of two
Monte-Carlo shares would be mostly sampling noise. It uses a deterministic proxy read off the model's
next-token distribution:

* the **visible record** is the window of events the rollouts condition on (the same context length as
  ``forecast_subject``); events after the prediction time never enter it;
* its events are put into **groups**: one lab / drug / procedure / SNOMED code; one ICD-9/10-CM family
  (first three characters: ``ICD10CM//I50``); the visit markers of one visit type (``VISIT//IP``). At most
  ``max_groups`` groups are tested, the most recently recorded first;
* one row per history: the visible record, and the visible record re-tokenized without each group (time-gap
  tokens are recomputed, so removing an event does not leave a hole). All rows are right-padded into one
  batch: attention is causal, so padding after a row's last token cannot change that row's last-position
  logits;
* **proxy score** of a target (an outcome's tokens, or an expected diagnosis' token): the probability that
  it is the next event within ``lookahead`` tokens along the most likely target-free continuation,
  ``1 - prod_k (1 - p_k(target))``, where ``p_k`` is the softmax mass on the target's tokens at step ``k`` (with
  the tokens rollouts never sample masked out) and the continuation takes the arg-max non-target token at
  each step. ``lookahead`` batched forward passes in all, whatever the number of groups and targets;
* **delta** of a group = proxy with the group minus proxy without it: positive means the group raises the
  model's expectation of the target.

Limits (say them to whoever reads the output):

* the proxy looks ``lookahead`` tokens ahead, not over the forecast horizon: it measures what the model
  expects *next*, so a group that matters for events a year away can score low. Deltas rank groups; they are
  not changes in the rollout probability and are not comparable across patients;
* a history without a group may look like no record the model was trained on (every visit marker gone, say):
  the model's answer then changes for that reason too, and every target moves. A structural group with large
  deltas on unrelated targets is a sign of this;
* removal is one group at a time: two redundant groups (a diagnosis and the drug that treats it) can each
  look unimportant, and interactions are not measured;
* codes the model maps to ``UNK`` and the static prefix (sex, age band) are never tested as groups; events
  older than the visible window are not attributed (the model never saw them);
* the time between the last event and the prediction time is not a token, so it does not move the proxy;
* attribution explains the model, not the patient: it says which recorded events the model's expectation
  rests on, not what caused the outcome.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import torch
from pydantic import BaseModel, Field

from clinfm import schema
from clinfm.model.generate import Forecast, forecast_subject, outcome_pattern, sampling_mask
from clinfm.model.tokenizer import ClinicalTokenizer
from clinfm.model.transformer import GPT
from clinfm.schema import Event, Subject

METHOD = "group ablation on the next-token proxy"
INSUFFICIENT = "insufficient evidence"
MAX_CITED_EVENTS = 10  # per evidence item: the most recent ones; n_events says how many there are


# --- answer models ------------------------------------------------------------------------------------------

class CitedEvent(BaseModel):
    """One event of the record, at or before the prediction time, as it is stored."""

    time: dt.datetime
    code: str
    description: str | None = None
    numeric_value: float | None = None


class EvidenceItem(BaseModel):
    """A group of events and how much removing it from the history changes the model's expectation of a target."""

    group: str = Field(description="A code, an ICD family (ICD10CM//I50) or a visit type (VISIT//IP)")
    codes: list[str] = Field(description="The distinct codes of the group's events")
    description: str
    events: list[CitedEvent] = Field(description=f"The group's most recent events (at most {MAX_CITED_EVENTS})")
    n_events: int
    delta: float = Field(description="Proxy score with the group minus without it")
    score_without: float = Field(description="Proxy score of the history without the group")
    direction: Literal["raises", "lowers"]


class OutcomeForecast(BaseModel):
    outcome: str
    probability: float = Field(description="Share of sampled futures with the outcome within the horizon")
    ci_low: float
    ci_high: float
    proxy: float | None = Field(None, description="Next-token proxy score of the full history (None: no token)")
    evidence: list[EvidenceItem] = []


class DiagnosisExpectation(BaseModel):
    code: str
    description: str | None = None
    probability: float = Field(description="Share of sampled futures in which the diagnosis appears")
    proxy: float | None = None
    evidence: list[EvidenceItem] = []


class RecordReasoning(BaseModel):
    """Forecasts for one subject at one time with the record's events that drove them, or an abstention."""

    subject_id: int
    prediction_time: dt.datetime
    model_version: str
    method: str = METHOD
    horizon_days: float
    samples: int
    lookahead: int
    history_events: int = Field(description="Timed events at or before the prediction time")
    groups_tested: int
    forecasts: list[OutcomeForecast] = []
    expected_next_diagnoses: list[DiagnosisExpectation] = []
    warnings: list[str] = []
    abstained: bool = False
    abstention_reason: str | None = None
    seconds: float = Field(0.0, description="Wall time of the explanation, rollouts included")


# --- loading (cached: the API calls this for every request) -------------------------------------------------

@functools.lru_cache(maxsize=4)
def _checkpoint(run_dir: str, stamp: int) -> tuple[GPT, ClinicalTokenizer]:
    from clinfm.model.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir, device="cpu")
    return model, tokenizer


def load_model(run_dir: str | Path) -> tuple[GPT, ClinicalTokenizer]:
    """The run folder's model and tokenizer, loaded once per folder (and again when its weights file changes)."""
    path = Path(run_dir).resolve()
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{path} holds no model.safetensors: not a trained ClinFM run folder")
    return _checkpoint(str(path), weights.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _database(path: str, stamp: tuple[int, ...]):
    from clinfm.data.store import SubjectDatabase

    db = SubjectDatabase(path)
    return db, db.descriptions()


def open_database(dataset_dir: str | Path):
    """The dataset's ``SubjectDatabase`` and code descriptions, opened once per folder (and again when it changes)."""
    path = Path(dataset_dir).resolve()
    files = sorted((path / schema.DATA_DIR).glob("*.parquet")) + [path / schema.CODES_FILE]
    return _database(str(path), tuple(f.stat().st_mtime_ns for f in files if f.exists()))


def model_version(model: GPT, tokenizer: ClinicalTokenizer) -> str:
    """``cfg-<hash>`` of the architecture and vocabulary, for a model passed in without its run folder."""
    blob = json.dumps({"model": asdict(model.config), "vocab": tokenizer.vocab_}, sort_keys=True)
    return "cfg-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- the public entry points --------------------------------------------------------------------------------

def explain_forecast(
    model: str | Path | tuple[GPT, ClinicalTokenizer],
    data,
    subject_id: int,
    prediction_time: dt.datetime,
    outcomes: Sequence[str] = ("death", "admission"),
    top_n: int = 5,
    max_groups: int = 64,
    **options,
) -> RecordReasoning:
    """Forecasts for ``subject_id`` at ``prediction_time`` with the record's events that drove them.

    ``model`` is a run folder (loaded once, cached) or a ``(model, tokenizer)`` pair; ``data`` a MEDS dataset folder
    or a ``SubjectDatabase``. ``options`` go to :func:`explain_subject` (``horizon_days``, ``n_samples``,
    ``max_new_tokens``, ``seed``, ``lookahead``, abstention thresholds).
    """
    if isinstance(model, tuple):
        gpt, tokenizer = model
        version = model_version(gpt, tokenizer)
    else:
        gpt, tokenizer = load_model(model)
        version = Path(model).resolve().name
    if isinstance(data, (str, Path)):
        db, descriptions = open_database(data)
    else:
        db, descriptions = data, data.descriptions()
    if subject_id not in db:
        raise KeyError(f"subject {subject_id!r} is not in {getattr(db, 'path', 'the database')}")
    return explain_subject(
        gpt, tokenizer, db.table(subject_id), prediction_time, outcomes=outcomes, top_n=top_n, max_groups=max_groups,
        descriptions=descriptions, model_version=version, **options,
    )  # fmt: skip


@torch.no_grad()
def explain_subject(
    model: GPT,
    tokenizer: ClinicalTokenizer,
    subject: Subject | pa.Table,
    prediction_time: dt.datetime,
    outcomes: Sequence[str] = ("death", "admission"),
    top_n: int = 5,
    max_groups: int = 64,
    descriptions: dict[str, str] | None = None,
    model_version: str = "",
    horizon_days: float = 365.0,
    n_samples: int = 32,
    max_new_tokens: int = 256,
    seed: int = 0,
    lookahead: int = 3,
    min_events: int = 5,
    max_unknown_share: float = 0.2,
    max_entropy: float = 0.95,
    min_effect: float = 1e-4,
    forecast: Forecast | None = None,
) -> RecordReasoning:
    """:func:`explain_forecast` for a subject already in hand (a stored table or an inline ``Subject``).

    Abstains (``abstention_reason`` starts with "insufficient evidence") when the record has fewer than
    ``min_events`` timed events before ``prediction_time``, when more than ``max_unknown_share`` of them are codes
    the model does not know, when it already ends in death, or when the forecast is uninformative: the normalized
    entropy of the next-event distribution is above ``max_entropy`` or no group moves any target by ``min_effect``.
    An abstention carries no forecasts and no evidence. ``forecast`` reuses rollouts the caller already has.
    """
    t0 = time.perf_counter()
    descriptions = descriptions or {}
    when = schema.to_utc_naive(prediction_time)
    sid, static, history = _split(subject, when)
    block = model.config.block_size
    context = max(block // 2, block - max_new_tokens)  # the window forecast_subject conditions on
    if not 1 <= lookahead <= block - context:
        raise ValueError(f"lookahead {lookahead} is not in 1..{block - context} "
                         f"(context {block} tokens, window {context})")  # fmt: skip
    answer = RecordReasoning(
        subject_id=sid, prediction_time=when, model_version=model_version, horizon_days=horizon_days,
        samples=n_samples, lookahead=lookahead, history_events=len(history), groups_tested=0,
    )  # fmt: skip

    reason = _thin_record(tokenizer, history, min_events, max_unknown_share)
    if reason:
        return _abstain(answer, reason, t0)

    full = Subject(sid, static + history)
    f = forecast or forecast_subject(
        model, tokenizer, full, when, outcomes, horizon_days, n_samples, max_new_tokens, seed,
        descriptions=descriptions,
    )  # fmt: skip
    answer.samples = f.samples
    visible = _visible(tokenizer, full, when, context)
    groups = _groups(tokenizer, visible)
    if len(groups) > max_groups:
        answer.warnings.append(f"{len(groups) - max_groups} of {len(groups)} event groups were not tested "
                               f"(max_groups={max_groups}; the most recent are tested)")  # fmt: skip
        groups = groups[:max_groups]
    answer.groups_tested = len(groups)

    targets: dict[str, list[int]] = {}
    for spec in outcomes:
        ids = _target_ids(tokenizer, outcome_pattern(spec))
        if ids:
            targets[spec] = ids
        else:
            answer.warnings.append(f"outcome {spec!r} matches no token of the model: no evidence for it")
    for d in f.next_diagnoses:
        if d.code in tokenizer.token_to_id_:
            targets.setdefault(d.code, [tokenizer.id(d.code)])

    rows = [visible] + [[e for i, e in enumerate(visible) if i not in g.members] for g in groups]
    ids = [tokenizer.transform(Subject(sid, static + r), until=when, max_len=context) for r in rows]
    scores, entropy = proxy_scores(model, tokenizer, ids, list(targets.values()), lookahead)  # (G+1, J), float

    deltas = scores[0:1] - scores[1:]  # (G, J)
    if entropy > max_entropy:
        return _abstain(answer, f"the model's next-event distribution is near uniform (normalized entropy "
                                f"{entropy:.2f} > {max_entropy})", t0)  # fmt: skip
    if groups and float(deltas.abs().max()) < min_effect:
        return _abstain(answer, f"no group of events moves the forecast by {min_effect} or more", t0)

    evidence = {name: _evidence(groups, deltas[:, j], scores[1:, j], top_n, descriptions)
                for j, name in enumerate(targets)}  # fmt: skip
    proxy = {name: float(scores[0, j]) for j, name in enumerate(targets)}
    answer.forecasts = [
        OutcomeForecast(outcome=o.outcome, probability=o.probability, ci_low=o.ci_low, ci_high=o.ci_high,
                        proxy=proxy.get(o.outcome), evidence=evidence.get(o.outcome, []))
        for o in f.outcomes
    ]  # fmt: skip
    answer.expected_next_diagnoses = [
        DiagnosisExpectation(code=d.code, description=d.description or descriptions.get(d.code),
                             probability=d.probability, proxy=proxy.get(d.code), evidence=evidence.get(d.code, []))
        for d in f.next_diagnoses
    ]  # fmt: skip
    if not groups:
        answer.warnings.append("no event in the visible record could be tested (all codes unknown to the model)")
    answer.seconds = time.perf_counter() - t0
    return answer


# --- the proxy ----------------------------------------------------------------------------------------------

@torch.no_grad()
def proxy_scores(
    model: GPT, tokenizer: ClinicalTokenizer, rows: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
    lookahead: int = 3,
) -> tuple[torch.Tensor, float]:
    """Per row and target: ``1 - prod_k (1 - p_k)`` over ``lookahead`` steps of the arg-max target-free
    continuation, ``p_k`` the next-token mass on the target's ids (tokens rollouts never sample are masked).
    One batched forward pass per step. Also returns the normalized entropy of row 0's first next-token
    distribution (1 = uniform over the tokens a rollout may sample)."""
    device = model.wte.weight.device
    banned = sampling_mask(tokenizer).to(device)  # (V,)
    onehot = torch.zeros(len(targets), len(tokenizer.vocab_), device=device)  # (J, V)
    for j, ids in enumerate(targets):
        onehot[j, list(ids)] = 1.0
    no_step = banned | onehot.bool().any(0)  # the continuation never takes a target (nor a banned token)

    lengths = torch.tensor([len(r) for r in rows], device=device)  # (B,)
    width = int(lengths.max()) + lookahead - 1
    x = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long, device=device)  # (B, T)
    for b, r in enumerate(rows):
        x[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    survival = torch.ones(len(rows), len(targets), device=device)  # (B, J)
    entropy = 0.0
    rows_idx = torch.arange(len(rows), device=device)
    for k in range(lookahead):
        end = int(lengths.max())
        h = model.hidden_states(x[:, :end])[rows_idx, lengths - 1]  # (B, C): each row's last real position
        logits = model.lm_head(h).float().masked_fill(banned, -math.inf)  # (B, V)
        probs = torch.softmax(logits, dim=-1)  # (B, V)
        if k == 0:
            p0 = probs[0][~banned]
            entropy = float(-(p0 * p0.clamp_min(1e-30).log()).sum() / math.log(max(p0.numel(), 2)))
        survival *= 1.0 - (probs @ onehot.T).clamp(0.0, 1.0)  # (B, J)
        if k + 1 < lookahead:
            nxt = probs.masked_fill(no_step, -1.0).argmax(-1)  # (B,)
            x[rows_idx, lengths] = nxt
            lengths = lengths + 1
    return 1.0 - survival, entropy


# --- the record, its groups and the evidence ----------------------------------------------------------------

@dataclass
class _Group:
    key: str
    members: frozenset[int]  # indices into the visible events
    events: list[Event]  # in time order
    codes: list[str]
    last: dt.datetime


def _split(subject: Subject | pa.Table, when: dt.datetime) -> tuple[int, list[Event], list[Event]]:
    """Subject id, static events (no time, and the birth), timed events at or before ``when`` in time order."""
    if isinstance(subject, pa.Table):
        cols = [subject.column(c).to_pylist() for c in schema.EVENT_COLUMNS]
        sid = int(cols[0][0]) if cols[0] else -1
        events = [Event(*row) for row in zip(*cols[1:])]
    else:
        sid, events = subject.subject_id, list(subject.events)
    static = [e for e in events if e.time is None or e.code == schema.BIRTH]
    timed = [e for e in events if e.time is not None and e.code != schema.BIRTH and e.time <= when]
    timed.sort(key=lambda e: e.time)  # stable: same-time events keep the stored order
    return sid, static, timed


def _thin_record(tokenizer: ClinicalTokenizer, history: list[Event], min_events: int, max_unknown: float
                 ) -> str | None:  # fmt: skip
    if len(history) < min_events:
        return f"{INSUFFICIENT}: {len(history)} timed events before the prediction time (fewer than {min_events})"
    unknown = sum(tokenizer.code_id(e.code) == tokenizer.unk_id for e in history) / len(history)
    if unknown > max_unknown:
        return (f"{INSUFFICIENT}: {unknown:.0%} of the record's codes are unknown to the model "
                f"(more than {max_unknown:.0%})")  # fmt: skip
    if any(e.code == schema.DEATH for e in history):
        return f"{INSUFFICIENT}: the record ends in death at or before the prediction time"
    return None


def _abstain(answer: RecordReasoning, reason: str, t0: float) -> RecordReasoning:
    if not reason.startswith(INSUFFICIENT):
        reason = f"{INSUFFICIENT}: {reason}"
    answer.abstained, answer.abstention_reason = True, reason
    answer.forecasts, answer.expected_next_diagnoses, answer.groups_tested = [], [], 0
    answer.seconds = time.perf_counter() - t0
    return answer


def _visible(tokenizer: ClinicalTokenizer, subject: Subject, when: dt.datetime, context: int) -> list[Event]:
    """The timed events from the first time the model's window reaches (what the rollouts condition on)."""
    history = [e for e in subject.events if e.time is not None and e.code != schema.BIRTH]
    times = tokenizer.encode(subject, until=when).times
    if len(times) + 3 <= context:
        return history
    start = times[len(times) - (context - 3)]
    return [e for e in history if e.time >= start]


def group_key(code: str) -> str:
    """The group an event belongs to: ``ICD10CM//I50.9`` -> ``ICD10CM//I50``, ``VISIT//IP//START`` ->
    ``VISIT//IP``, any other code (a lab, a drug, a SNOMED concept) -> itself."""
    vocab, _, value = code.partition(schema.SEP)
    if vocab in ("ICD10CM", "ICD9CM"):
        return f"{vocab}{schema.SEP}{value[:3]}"
    if vocab == "VISIT":
        return f"{vocab}{schema.SEP}{value.partition(schema.SEP)[0]}"
    return code


def _groups(tokenizer: ClinicalTokenizer, visible: list[Event]) -> list[_Group]:
    """The testable groups (codes known to the model), most recently recorded first."""
    members: dict[str, list[int]] = {}
    for i, e in enumerate(visible):
        if tokenizer.code_id(e.code) != tokenizer.unk_id:
            members.setdefault(group_key(e.code), []).append(i)
    groups = [
        _Group(key, frozenset(idx), [visible[i] for i in idx], sorted({visible[i].code for i in idx}),
               visible[idx[-1]].time)
        for key, idx in members.items()
    ]  # fmt: skip
    return sorted(groups, key=lambda g: (-g.last.timestamp(), -len(g.members), g.key))


def _target_ids(tokenizer: ClinicalTokenizer, pattern: str) -> list[int]:
    kinds = tokenizer.token_kinds()
    return [i for i, t in enumerate(tokenizer.vocab_) if kinds[i] == 4 and fnmatch.fnmatchcase(t, pattern)]


def _describe_group(g: _Group, descriptions: dict[str, str]) -> str:
    if g.key in descriptions:
        return descriptions[g.key]
    if g.key.startswith("VISIT" + schema.SEP):
        return f"{g.key.split(schema.SEP)[1]} visits"
    named = [descriptions.get(c) or c for c in g.codes]
    return "; ".join(named[:3]) + (f" (+{len(named) - 3} more)" if len(named) > 3 else "")


def _evidence(
    groups: list[_Group], deltas: torch.Tensor, without: torch.Tensor, top_n: int, descriptions: dict[str, str]
) -> list[EvidenceItem]:
    """The ``top_n`` groups with the largest |delta| for one target, largest first."""
    order = sorted(range(len(groups)), key=lambda i: (-abs(float(deltas[i])), groups[i].key))[:top_n]
    return [_item(groups[i], float(deltas[i]), float(without[i]), descriptions) for i in order]


def _item(g: _Group, delta: float, without: float, descriptions: dict[str, str]) -> EvidenceItem:
    cited = [
        CitedEvent(time=e.time, code=e.code, description=descriptions.get(e.code), numeric_value=e.numeric_value)
        for e in g.events[-MAX_CITED_EVENTS:]
    ]
    return EvidenceItem(
        group=g.key, codes=g.codes, description=_describe_group(g, descriptions), events=cited,
        n_events=len(g.members), delta=delta, score_without=without,
        direction="raises" if delta >= 0 else "lowers",
    )  # fmt: skip
