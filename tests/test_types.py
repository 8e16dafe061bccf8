"""The type checker holds the whole package to its types: mypy, configured once in pyproject.toml (``files``,
plugins, per-library overrides), over all of ``src/clinfm`` with zero errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_finds_no_error_in_the_package():
    pytest.importorskip("mypy", reason="mypy is a dev dependency (pip install 'clinfm[dev]')")
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    modules = len(list((REPO / "src" / "clinfm").rglob("*.py")))
    assert f"Success: no issues found in {modules} source files" in done.stdout  # every module was checked
