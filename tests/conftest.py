"""Shared fixtures: the real reference data beside the repository, and an Eunomia MEDS dataset built once."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
# Audit keys and checkpoints are written beside the registry home: never the user's ~/.clinfm from a test run.
os.environ.setdefault("CLINFM_HOME", tempfile.mkdtemp(prefix="clinfm-test-home-"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIMIC_DEMO = SHARED_DATA / "mimic-iv-demo-2.2"


def require(path: Path) -> Path:
    """Skip (naming the missing resource) when reference data beside the repository is absent."""
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


@pytest.fixture(autouse=True)
def _own_clinfm_home(tmp_path_factory, monkeypatch):
    """No test reads or migrates the user's ``~/.clinfm`` registry: each gets an empty home unless it sets one."""
    if "CLINFM_HOME" not in os.environ:
        monkeypatch.setenv("CLINFM_HOME", str(tmp_path_factory.mktemp("clinfm-home")))


@pytest.fixture(scope="session")
def eunomia_meds(tmp_path_factory) -> Path:
    """The embedded Eunomia CDM ingested once for the whole test session (read-only for tests)."""
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import omop

    out = tmp_path_factory.mktemp("eunomia") / "meds"
    build_dataset(omop.plan(), out)
    return out


# --- a throwaway PostgreSQL server, for the registry and the API on PostgreSQL -----------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a free port (as user ``postgres`` when run as root); skips, saying why,
    when none can be started."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need the psycopg driver (pip install 'psycopg[binary]')")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install -y postgresql")
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="clinfm-pg-"))
    if run_as:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=60, check=False)

    init = pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    start = pg(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
