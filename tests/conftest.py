"""Shared fixtures: the real reference data beside the repository, and an Eunomia MEDS dataset built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIMIC_DEMO = SHARED_DATA / "mimic-iv-demo-2.2"


def require(path: Path) -> Path:
    """Skip (naming the missing resource) when reference data beside the repository is absent."""
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def eunomia_meds(tmp_path_factory) -> Path:
    """The embedded Eunomia CDM ingested once for the whole test session (read-only for tests)."""
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import omop

    out = tmp_path_factory.mktemp("eunomia") / "meds"
    build_dataset(omop.plan(), out, workers=1)
    return out
