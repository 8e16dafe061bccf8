"""Where parallel jobs run: an :class:`Engine` value (this process, a pool of local processes, or Ray) that
maps one top-level function over a list of argument tuples, so every engine gives the same output.

Ingest, de-identification, tokenization, embedding export and batch scoring all take an ``Engine``; nothing
else in the package knows about process pools or Ray.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``, called after each finished task."""
EngineKind = Literal["local", "ray"]
ENGINES: tuple[EngineKind, ...] = ("local", "ray")
T = TypeVar("T")

_PRELOAD = ["clinfm.data.dataset", "clinfm.data.ingest.omop", "clinfm.data.ingest.fhir", "clinfm.data.ingest.mimic",
            "clinfm.data.ingest.meds", "clinfm.deid.structured"]  # fmt: skip


class EngineError(RuntimeError):
    """The engine cannot run (Ray not installed, an unknown engine kind)."""


@dataclass(frozen=True)
class Engine:
    """``kind`` local (``workers`` processes; 1 runs in this process) or ray (a local Ray instance with
    ``workers`` CPUs, or the cluster at ``address``)."""

    kind: EngineKind = "local"
    workers: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"engine {self.kind!r} is not one of {ENGINES}")
        if self.workers < 1:
            raise ValueError(f"workers {self.workers!r} must be at least 1")
        if self.address is not None and self.kind != "ray":
            raise ValueError(f"a cluster address ({self.address!r}) needs the ray engine, not {self.kind!r}")

    @property
    def parallel(self) -> bool:
        return self.kind == "ray" or self.workers > 1

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], progress: ProgressFn | None = None) -> list[T]:
        """``[fn(*a) for a in args]`` in order, here, on a pool of processes, or as Ray tasks. ``fn`` must be
        a top-level function; files travel by path, so on a cluster every node must see them."""
        if self.kind == "ray":
            return self._map_ray(fn, args, progress)
        results: list[T] = []
        if self.workers <= 1 or len(args) <= 1:
            for a in args:
                results.append(fn(*a))
                if progress:
                    progress(len(results), len(args))
            return results
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=_worker_context(),
                                 initializer=_die_with, initargs=(os.getpid(),)) as pool:  # fmt: skip
            for result in pool.map(fn, *zip(*args)):
                results.append(result)
                if progress:
                    progress(len(results), len(args))
        return results

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one Ray connection for a whole job; a no-op for the local engine or when the caller has
        already initialized Ray."""
        if self.kind != "ray":
            yield
            return
        ray = _import_ray()
        if ray.is_initialized():
            yield
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()

    def _map_ray(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], progress: ProgressFn | None) -> list[T]:
        with self.session():
            ray = _import_ray()
            remote = ray.remote(fn)
            pending = {remote.remote(*a): i for i, a in enumerate(args)}
            done: dict[int, T] = {}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    done[pending.pop(ref)] = ray.get(ref)
                if progress:
                    progress(len(done), len(args))
            return [done[i] for i in range(len(args))]


LOCAL = Engine()
"""One process, no pool: the default of every job."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError("the ray engine needs Ray: pip install 'clinfm[ray]'") from exc
    return ray


ORPHAN_CHECK_S = 0.5


def _die_with(parent_pid: int) -> None:
    """In each worker: exit as soon as the process that started the pool is gone (killed with SIGKILL, say),
    instead of finishing work nobody will collect. A forkserver worker's parent is the fork server, so the
    check is on the pool's owner by pid, not on ``getppid``."""

    def watch() -> None:
        while True:
            time.sleep(ORPHAN_CHECK_S)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process: ours is gone
                os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _worker_context() -> multiprocessing.context.BaseContext:
    """Not plain fork: polars and DuckDB hold thread pools that a forked child can deadlock on. A fork
    server that has imported the job code once starts workers far faster than spawn."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


__all__ = ["ENGINES", "LOCAL", "Engine", "EngineError", "EngineKind", "ProgressFn"]
