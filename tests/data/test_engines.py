"""The Ray engine runs the same task function as the local one and gives byte-identical datasets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clinfm.data.dataset import build_dataset
from clinfm.data.ingest import fhir, omop
from clinfm.deid.structured import deidentify_dataset
from clinfm.engine import Engine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_ray_and_local_engines_give_identical_datasets(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'clinfm[ray]')")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for name, make_plan in (("omop", omop.plan), ("fhir", lambda: fhir.plan(FIXTURES))):
            local = build_dataset(make_plan(), tmp_path / f"{name}-local")
            on_ray = build_dataset(make_plan(), tmp_path / f"{name}-ray", engine=Engine("ray", 2))
            assert local.events == on_ray.events > 0
            assert _digest(tmp_path / f"{name}-local") == _digest(tmp_path / f"{name}-ray"), name
        # de-identification: the same shard function on Ray and in processes, over a 3-shard dataset
        source = build_dataset(omop.plan(), tmp_path / "sharded", shards=3).path
        secret = b"s" * 32
        deidentify_dataset(source, tmp_path / "deid-local", secret, engine=Engine(workers=2))
        deidentify_dataset(source, tmp_path / "deid-ray", secret, engine=Engine("ray", 2))
        assert len(list((tmp_path / "deid-ray" / "data").glob("*.parquet"))) == 3
        assert _digest(tmp_path / "deid-local") == _digest(tmp_path / "deid-ray")
    finally:
        ray.shutdown()


def test_unknown_engine_and_bad_settings_are_named():
    with pytest.raises(ValueError, match="engine 'spark' is not one of"):
        Engine("spark")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers 0 must be at least 1"):
        Engine(workers=0)
    with pytest.raises(ValueError, match="needs the ray engine"):
        Engine("local", 2, "ray://head:10001")


def _square_plus(x: int, y: int) -> int:
    return x * x + y


def test_local_pool_keeps_order_and_reports_progress():
    seen: list[tuple[int, int]] = []
    args = [(i, 1) for i in range(6)]
    assert Engine(workers=2).map(_square_plus, args, lambda d, t: seen.append((d, t))) == [i * i + 1 for i in range(6)]
    assert seen[-1] == (6, 6) and len(seen) == 6
