"""Patient representations from the foundation model: hidden states of the history up to a prediction time.

For each (subject_id, prediction_time) the history (events at or before the prediction time, most recent
``block_size`` tokens) is encoded once; ``last`` is the final hidden state at its last token and ``mean``
the mean over its tokens. Histories are right-padded into batches: with causal attention padding after a
sequence cannot change its hidden states, so batching gives the same vectors as one-by-one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from clinfm import schema

Point = tuple[int, dt.datetime]


@torch.no_grad()
def embed_tokens(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Last-token and mean-pooled final hidden states of token sequences: two (N, C) float32 arrays.

    A sequence that is a prefix of another is not run again: with causal attention its hidden states are the
    longer sequence's first positions, so the state at its last token and the running mean are read from there
    (a subject's successive prediction times usually share one forward pass)."""
    device = model.wte.weight.device
    C = model.config.n_embd
    last = np.zeros((len(sequences), C), dtype=np.float32)
    mean = np.zeros((len(sequences), C), dtype=np.float32)
    carriers, reads = _share_prefixes(sequences)
    order = np.argsort([len(c) for c in carriers], kind="stable")  # similar lengths share a batch
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        lengths = torch.tensor([len(carriers[i]) for i in rows], device=device)
        x = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long, device=device)
        for j, i in enumerate(rows):
            x[j, : len(carriers[i])] = torch.tensor(list(carriers[i]), device=device)
        h = model.hidden_states(x).float()  # (B, T, C)
        running = h.cumsum(1) / torch.arange(1, h.size(1) + 1, device=device)[None, :, None]  # (B, T, C) prefix means
        for j, i in enumerate(rows):
            for seq_index, n in reads[i]:
                last[seq_index] = h[j, n - 1].cpu().numpy()
                mean[seq_index] = running[j, n - 1].cpu().numpy()
    return last, mean


def _share_prefixes(sequences: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Group sequences under the longest sequence they are a prefix of: (carriers, per carrier the
    (sequence index, length) pairs read from it). Only neighbours in sorted order are compared."""
    order = sorted(range(len(sequences)), key=lambda i: list(sequences[i]), reverse=True)
    carriers: list[list[int]] = []
    reads: list[list[tuple[int, int]]] = []
    for i in order:
        seq = list(sequences[i])
        if carriers and len(seq) <= len(carriers[-1]) and carriers[-1][: len(seq)] == seq and seq:
            reads[-1].append((i, len(seq)))
        else:
            carriers.append(seq)
            reads.append([(i, len(seq))])
    return carriers, reads


def embed(
    run_dir: str | Path,
    dataset_dir: str | Path,
    points: Sequence[Point],
    batch_size: int = 32,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """One row per point: subject_id, prediction_time, n_tokens, ``last`` and ``mean`` (list[f32] of width C)."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir, device=device)
    db = SubjectDatabase(dataset_dir)
    block = model.config.block_size
    sequences = []
    for i, (sid, when) in enumerate(points):
        sequences.append(tokenizer.transform(db.table(sid), until=when, max_len=block))
        if progress:
            progress(i + 1, 2 * len(points))
    last, mean = embed_tokens(model, sequences, tokenizer.pad_id, batch_size)
    if progress:
        progress(2 * len(points), 2 * len(points))
    return pl.DataFrame(
        {
            schema.SUBJECT_ID: pl.Series([int(s) for s, _ in points], dtype=pl.Int64),
            "prediction_time": pl.Series([w for _, w in points], dtype=pl.Datetime("us")),
            "n_tokens": pl.Series([len(s) for s in sequences], dtype=pl.Int32),
            "last": pl.Series(list(last), dtype=pl.Array(pl.Float32, model.config.n_embd)),
            "mean": pl.Series(list(mean), dtype=pl.Array(pl.Float32, model.config.n_embd)),
        }
    )
