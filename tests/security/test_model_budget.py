"""Model work has a time budget: a slow forecast answers 503 with Retry-After instead of holding the request (and
every request queued behind it), and cheap routes keep answering while the model is busy."""

from __future__ import annotations

import threading
import time

from tests.serve.conftest import CountForecaster
from tests.serve.conftest import bearer


class SlowForecaster(CountForecaster):
    """The count stand-in, taking ``delay`` seconds per batch (a long rollout)."""

    delay = 3.0
    release = threading.Event()

    def forecast_batch(self, queries):
        self.release.wait(self.delay)
        return super().forecast_batch(queries)


def test_slow_model_work_answers_503_with_retry_after(app_factory, governance, subject_id):
    from fastapi.testclient import TestClient

    app = app_factory(with_model=False, model_timeout_s=0.5)
    app.state.serve.predictions.loader = SlowForecaster
    with TestClient(app) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/predict", json={"subject_id": subject_id}, headers=bearer(governance["keys"].full))
        took = time.perf_counter() - t0
        SlowForecaster.release.set()
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1 and "time budget" in r.json()["detail"]
    assert took < 2.5


def test_queue_beyond_its_limit_is_shed_and_cheap_routes_answer(app_factory, governance, subject_id, eunomia_meds):
    from fastapi.testclient import TestClient

    from clinfm.data.store import SubjectDatabase

    SlowForecaster.release.clear()
    app = app_factory(with_model=False, model_timeout_s=5.0, model_queue_limit=1, max_batch_size=1)
    app.state.serve.predictions.loader = SlowForecaster
    others = list(SubjectDatabase(eunomia_meds))[:3]
    h = bearer(governance["keys"].full)
    with TestClient(app) as c:
        results: list[int] = []
        workers = [threading.Thread(target=lambda s=s: results.append(
            (c.post("/v1/predict", json={"subject_id": s}, headers=h).status_code, time.perf_counter()))) for s in others]  # fmt: skip
        for w in workers:
            w.start()
        time.sleep(0.5)
        t0 = time.perf_counter()
        models = c.get("/v1/models", headers=h)
        cheap = time.perf_counter() - t0
        SlowForecaster.release.set()
        for w in workers:
            w.join()
    assert models.status_code == 200 and cheap < 1.0
    assert 503 in [r[0] for r in results], results
