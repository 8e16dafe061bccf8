"""Predictions under load: a result cache, one computation per concurrent duplicate, and model calls batched
across concurrent requests on one worker thread; every prediction is logged and audited.

Caching is safe because a forecast is a pure function of (model version, subject's events before the
prediction time, horizon, outcomes, samples, seed): the served dataset is read-only and an inline Bundle's
key includes a hash of its de-identified events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinfm.schema import Subject
from clinfm.serve.backends import Forecast, Forecaster, ForecastQuery
from clinfm.serve.problems import Problem

log = logging.getLogger(__name__)


def query_key(version: str, q: ForecastQuery, content: str | None = None) -> tuple:
    """The cache key: the model version, the subject (and its content for inline data), and every input."""
    return (version, q.subject.subject_id, content, q.prediction_time, q.horizon_days, q.outcomes, q.n_samples, q.seed)


def subject_fingerprint(subject: Subject) -> str:
    h = hashlib.sha256()
    for e in subject.events:
        h.update(repr((e.time, e.code, e.numeric_value, e.text_value, e.unit)).encode())
    return h.hexdigest()


def seed_for(version: str, subject_id: int, prediction_time: dt.datetime) -> int:
    """A fixed seed per (model, subject, time): the same question gets the same sampled answer."""
    digest = hashlib.sha256(f"{version}|{subject_id}|{prediction_time.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class LRUCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


@dataclass
class _Pending:
    query: ForecastQuery
    future: asyncio.Future


class BatchingForecaster:
    """Collects concurrent requests for one model for up to ``window_ms`` (or ``max_batch`` of them) and runs
    them as one ``forecast_batch`` call on a single worker thread (the model is not thread-safe)."""

    def __init__(self, model: Forecaster, window_ms: float, max_batch: int, cache_size: int,
                 timeout_s: float = 30.0, queue_limit: int = 64) -> None:  # fmt: skip
        self.model = model
        self.timeout_s = timeout_s
        self.queue_limit = queue_limit
        self.window_s = window_ms / 1000.0
        # A model that loops over a batch (no true batched rollouts) answers each request as soon as its own
        # forecast is done: one query per call, so an early request never waits for a whole batch.
        self.max_batch = max(1, min(max_batch, getattr(model, "max_batch", max_batch)))
        self.cache = LRUCache(cache_size)
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{model.version}")
        self.batches = self.batched_queries = 0

    async def forecast(self, query: ForecastQuery, key: Hashable) -> tuple[Forecast, bool]:
        """The forecast and whether it came from the cache (or a concurrent identical request)."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached, True
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running), True
        self._ensure_worker()
        assert self._queue is not None
        if self._queue.qsize() >= self.queue_limit:
            raise self._busy(f"{self._queue.qsize()} forecasts are already queued for this model")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._inflight[key] = future
        try:
            await self._queue.put(_Pending(query, future))
            try:
                result = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
            except TimeoutError:
                # Every waiter on this key gets the 503; the worker skips it if it has not started it yet.
                busy = self._busy(f"the forecast did not finish within its time budget of {self.timeout_s:g} s")
                if not future.done():
                    future.set_exception(busy)
                    future.exception()  # retrieved: no "never retrieved" warning for a shed request
                raise busy from None
            self.cache.put(key, result)
            return result, False
        finally:
            self._inflight.pop(key, None)

    def _busy(self, why: str) -> Problem:
        retry = max(1, math.ceil(self.timeout_s))
        return Problem(503, f"the model is busy: {why}; retry in {retry} s", slug="model-busy",
                       headers={"Retry-After": str(retry)})  # fmt: skip

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if first.future.done():  # timed out while queued: never start work nobody waits for
                continue
            batch = [first]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                if not item.future.done():
                    batch.append(item)
            self.batches += 1
            self.batched_queries += len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self.model.forecast_batch, [p.query for p in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, r in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(r)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class JsonlLog:
    """An append-only JSON-lines file, one object per line, written under a lock (one process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def new_id() -> str:
    return str(uuid.uuid4())
