"""A SIGKILLed ingest leaves nothing that lingers or is read as data: its workers die with it, its half-written
folder is refused by readers and removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil", reason="psutil (a dev dependency) is not installed")

SLOW_BUILD = """
import sys, time
from clinfm.data.dataset import build_dataset
from clinfm.data.ingest.base import IngestTask, SourcePlan


def convert(task):
    time.sleep(60)  # killed long before this returns
    yield from ()


if __name__ == "__main__":
    plan = SourcePlan(source="test", source_path=".", tasks=[IngestTask("x", "t")], convert=convert)
    build_dataset(plan, sys.argv[1])
"""


def _run_until(tmp_path: Path, script: str, *args: str, ready) -> subprocess.Popen:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(script))
    child = subprocess.Popen([sys.executable, str(path), *args], env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not ready(child):
        assert child.poll() is None, "the child ended before it was killed"
        assert time.monotonic() < deadline, "the child never got going"
        time.sleep(0.1)
    return child


def test_half_written_folder_is_refused_and_cleaned_by_the_next_run(tmp_path, eunomia_meds):
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest.meds import plan as meds_plan
    from clinfm.data.store import SubjectDatabase

    out = tmp_path / "meds"
    child = _run_until(tmp_path, SLOW_BUILD, str(out), ready=lambda c: list(tmp_path.glob(".meds.tmp-*")))
    child.send_signal(signal.SIGKILL)
    child.wait()
    (leftover,) = tmp_path.glob(".meds.tmp-*")
    with pytest.raises(ValueError, match="half-written"):
        SubjectDatabase(leftover)
    build_dataset(meds_plan(eunomia_meds), out)
    assert not list(tmp_path.glob(".meds.tmp-*")) and SubjectDatabase(out)


def test_a_concurrent_runs_folder_is_not_removed(tmp_path):
    from clinfm.data.dataset import clean_stale_temp

    live = tmp_path / ".meds.tmp-live"
    live.mkdir()
    (live / ".in-progress").write_text(str(os.getpid()))  # this process is alive
    clean_stale_temp(tmp_path / "meds")
    assert live.exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone (or a zombie nobody reaped yet)
        return False


WORKERS = """
import time
from clinfm.engine import Engine

if __name__ == "__main__":
    Engine(workers=2).map(time.sleep, [(60,), (60,), (60,)])
"""


def test_workers_die_with_the_parent(tmp_path):
    def workers(child):
        procs = psutil.Process(child.pid).children(recursive=True)
        return [p for p in procs if "forkserver" not in " ".join(p.cmdline())] if len(procs) >= 3 else []

    child = _run_until(tmp_path, WORKERS, ready=workers)
    pids = [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "workers outlived the killed parent"
        time.sleep(0.2)
