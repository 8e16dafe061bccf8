"""A throw-away serving environment for the serving benchmarks: Eunomia, a governance database with a key and a
deployed model, a tenant secret, and a uvicorn subprocess on 127.0.0.1 only.

The model is the foundation model trained here with the packaged ``fm-tiny`` config (seconds on a CPU), registered
in the governance database and served through ``clinfm.model.generate`` rollouts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SCOPES = ["system/RiskAssessment.rs", "system/Model.r", "system/ClinicalImpression.cru", "system/DetectedIssue.rs",
          "system/Patient.r"]  # fmt: skip


def prepare(work: Path) -> dict:
    """Build the dataset, governance rows and secret under ``work``; returns the environment for the server."""
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import omop
    from clinfm.deid.structured import create_secret
    from clinfm.govern import access as A
    from clinfm.govern.db import ModelVersionRecord, session_scope
    from clinfm.govern.registry import register_model

    dataset = work / "eunomia"
    build_dataset(omop.plan(), dataset)
    db = f"sqlite:///{work / 'registry.db'}"
    A.create_organization("bench", actor="bench", db=db)
    A.create_service_account("bench", "load", actor="bench", db=db)
    key = A.create_api_key("bench", "load", SCOPES, actor="bench", rate_per_minute=10_000_000, db=db).key
    from clinfm.model.train import pretrain

    run = work / "run"
    pretrain(dataset, "fm-tiny", run)
    version = register_model("fm-tiny-bench", run, dataset, "bench", org="bench", db=db)
    with session_scope(db, write=True) as s:  # the lifecycle gates are not what this measures
        s.get(ModelVersionRecord, version.id).state = "general"
    env = {
        "CLINFM_ENV": "test", "CLINFM_DATA_DIR": str(work / "data"), "CLINFM_DATASET_PATH": str(dataset),
        "CLINFM_DATASET_ORG": "bench", "CLINFM_DATABASE_URL": db,
        "CLINFM_TENANT_SECRET_FILE": str(create_secret(work / "tenant.key")),
    }  # fmt: skip
    return {"env": env, "key": key, "dataset": dataset, "version": version.id}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODEL = "clinfm.model.generate rollouts of a model trained with the packaged fm-tiny config on Eunomia"


def start_server(env: dict, port: int) -> subprocess.Popen:
    """uvicorn in a subprocess bound to 127.0.0.1 only; returns once /health answers."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import uvicorn\n"
        "from clinfm.serve import ServeSettings, create_app\n"
        "app = create_app(ServeSettings())\n"
        "uvicorn.run(app, host='127.0.0.1', port=%d, log_level='warning', access_log=False)\n"
    ) % (str(REPO), port)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
    proc.kill()
    raise RuntimeError("the server did not answer /health within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
