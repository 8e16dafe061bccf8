"""The container image builds and answers /health (needs a Docker engine)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


@pytest.mark.slow
def test_image_builds_and_answers_health(tmp_path):
    if not _docker_engine():
        pytest.skip("no Docker engine on this machine (`docker info` failed): the image cannot be built here")
    tag = "clinfm-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(REPO)], check=True, timeout=3000)
    secret = tmp_path / "tenant.secret"
    secret.write_text("ab12" * 16)
    from clinfm.govern.audit_keys import generate_keys

    mac, signing, _ = generate_keys(tmp_path / "audit")
    for key in (mac, signing):
        key.chmod(0o644)  # a read-only mount the container's user (another uid) can read
    name = f"clinfm-test-{int(time.time())}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1:18765:8000",
                    "-e", "CLINFM_TENANT_SECRET_FILE=/run/tenant.secret", "-v", f"{secret}:/run/tenant.secret:ro",
                    "-e", "CLINFM_AUDIT_KEY_FILE=/run/audit.key", "-v", f"{mac}:/run/audit.key:ro",
                    "-e", "CLINFM_AUDIT_SIGNING_KEY_FILE=/run/audit-signing.pem", "-v", f"{signing}:/run/audit-signing.pem:ro",
                    tag], check=True, timeout=120)  # fmt: skip
    try:
        for _ in range(60):
            try:
                with urllib.request.urlopen("http://127.0.0.1:18765/health", timeout=2) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(1)
        pytest.fail("the container did not answer /health within 60 s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
