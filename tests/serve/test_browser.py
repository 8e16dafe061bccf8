"""The clinician pages in a real browser: Playwright driving Debian's Chromium against a live server.

Set-up installs Debian's ``chromium`` with apt when it is missing (never ``playwright install``); the test
skips, saying why, only where apt cannot run. Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.serve.conftest import CountForecaster

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("Debian chromium is not installed and apt-get is not available to install it")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for cmd in ([apt, "update"], [apt, "install", "-y", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"could not install chromium with apt ({' '.join(cmd[1:])} exited {done.returncode}: "
                        f"{done.stderr.strip().splitlines()[-1:] or ''})")  # fmt: skip
    if not CHROMIUM.exists():
        pytest.skip("apt installed chromium but /usr/bin/chromium is absent")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live_server(app_factory):
    import uvicorn

    app = app_factory()
    app.state.serve.predictions.loader = CountForecaster
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_clinician_pages(live_server, governance, subject_id, tmp_path):
    chromium = ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # Not logged in: any page leads to the login form; a bad key is refused on the page.
        page.goto(f"{live_server}/web/patients/{subject_id}")
        assert "/web/login" in page.url
        page.fill("#api_key", "cfm_000000000000_wrong")
        page.click("#login-button")
        assert "unknown" in page.inner_text("#error")
        page.fill("#api_key", governance["keys"].full)
        page.click("#login-button")
        page.wait_for_selector("#patient-id")
        cookie = next(c for c in page.context.cookies() if c["name"] == "clinfm_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # Patient page: timeline chart and list, risk panel with intervals and evidence.
        assert page.inner_text("#patient-id") == str(subject_id)
        marks = page.locator("#timeline-chart circle.mark").count()
        assert marks > 5
        assert page.locator("#event-list tbody tr").count() > 5
        assert page.locator("#risk-table .risk-row").count() >= 1
        assert "%" in page.inner_text("#risk-table") and page.locator("#risk-table .interval .bar").count() >= 1
        page.click("#timeline-chart .row-label >> nth=1")  # highlight diagnoses (JS)
        page.screenshot(path=str(shots / "patient.png"), full_page=True)

        # Search by pseudonymous id from the home page.
        page.click("#nav-patients")
        page.fill("#subject_id", str(subject_id))
        page.click("#search-button")
        page.wait_for_selector("#risk-panel")

        # The model card, reached from the risk panel.
        page.click("#risk-model-link")
        page.wait_for_selector("#model-card")
        assert page.inner_text("#card-version") == governance["versions"]["demo"]
        card = page.frame_locator("#model-card")
        assert card.locator("body").inner_text().strip()
        page.screenshot(path=str(shots / "model-card.png"), full_page=True)

        # Differential diagnosis: start, answer, see the ranked list update.
        page.click("#nav-ddx")
        page.fill("#age", "55")
        page.select_option("#sex", "male")
        page.click("#ddx-start")
        page.wait_for_selector("#candidates")
        before = page.inner_text("#candidates")
        for _ in range(3):
            if page.locator("#answer-yes").count():
                page.click("#answer-yes")
            elif page.locator("#answer-submit").count():
                page.click("#answer-submit")
            else:
                break
            page.wait_for_selector("#candidates")
        assert page.locator("#candidates li").count() >= 1
        assert page.inner_text("#candidates") != before
        assert "3 answers" in page.inner_text("main") or "answers" in page.inner_text("main")
        page.screenshot(path=str(shots / "ddx.png"), full_page=True)

        # Log out: the cookie is gone and pages ask for the key again.
        page.click("header form.logout button")
        page.goto(f"{live_server}/web/")
        assert "/web/login" in page.url
        browser.close()
    assert all((shots / n).stat().st_size > 1000 for n in ("patient.png", "model-card.png", "ddx.png"))
