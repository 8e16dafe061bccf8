"""The monitoring page in Chromium: the plots render and come before any table, and an incident links to its
windows (Debian's chromium, installed with apt by ``tests.serve.test_browser.ensure_chromium``)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest

from clinfm.monitor.policy import MonitoringPolicy
from clinfm.monitor.report import monitor_report
from tests.serve.test_browser import ARGS, ensure_chromium


def test_monitoring_page_shows_plots_before_tables(replays, tmp_path):
    chromium = ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    s = monitor_report(
        "drift", replays["store"], MonitoringPolicy(window=dt.timedelta(days=30)), tmp_path / "p.html"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(s.report_path.as_uri())
        images = page.locator("#plots img")
        assert images.count() == 10
        assert all(page.evaluate("[...document.querySelectorAll('#plots img')].map(i => i.naturalWidth > 0)"))
        first_plot = images.first.bounding_box()["y"]
        first_table = page.locator("table").first.bounding_box()["y"]
        assert first_plot < 900 < first_table  # the first screen holds plots, no table
        page.screenshot(path=str(tmp_path / "top.png"))
        shot = np.asarray(Image.open(tmp_path / "top.png").convert("RGB")).astype(int)
        # the incident bars (orange, #ff7f0e) are drawn on the first screen
        orange = (abs(shot[..., 0] - 255) < 20) & (abs(shot[..., 1] - 127) < 25) & (shot[..., 2] < 60)
        assert orange.sum() > 200
        # an incident links to the windows behind it
        incident = s.incidents[0]
        page.click(f"#{incident.id} a >> nth=0")
        assert page.url.endswith(f"#w{incident.windows[0]}")
        assert page.locator(f"#w{incident.windows[0]}").bounding_box() is not None
        page.screenshot(path=str(tmp_path / "full.png"), full_page=True)
        browser.close()
    assert Image.open(io.BytesIO((tmp_path / "full.png").read_bytes())).size[1] > 2000
