"""Security probe tally: the hardening findings (tests/security/probes.py) plus schemathesis over the whole OpenAPI
(valid and invalid inputs) against an in-process app, counting requests and 5xx responses.

Run it on this checkout, and on an older one to compare (``--src`` puts that source first on the path):
``python benchmarks/security_probe.py`` / ``python benchmarks/security_probe.py --src /tmp/before/src``.
The model is the serving tests' count stand-in (no GPU, no weights); the dataset is the embedded Eunomia CDM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=REPO / "src", help="the ClinFM source to probe")
    ap.add_argument("--examples", type=int, default=12, help="schemathesis examples per operation and mode")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--out", type=Path, help="also write the tally as JSON here")
    args = ap.parse_args()
    sys.path[:0] = [str(args.src), str(REPO)]
    tmp = Path(tempfile.mkdtemp(prefix="clinfm-security-probe-"))
    os.environ["CLINFM_HOME"] = str(tmp / "home")
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

    from fastapi.testclient import TestClient

    import tests.security.test_openapi as fuzz
    from clinfm.data.dataset import build_dataset
    from clinfm.data.ingest import omop
    from clinfm.deid.structured import create_secret
    from clinfm.serve import create_app
    from clinfm.serve.settings import ServeSettings
    from tests.security.probes import PROBES
    from tests.serve.conftest import CountForecaster, build_governance

    start = time.perf_counter()
    meds = tmp / "meds"
    build_dataset(omop.plan(), meds)
    gov = build_governance(f"sqlite:///{tmp / 'registry.db'}", tmp, meds)
    settings = ServeSettings(env="test", data_dir=tmp / "data", dataset_path=meds, dataset_org="demo",
                             database_url=gov["db"], tenant_secret_file=create_secret(tmp / "tenant.key"),
                             rollout_samples=16, batch_window_ms=1.0)  # fmt: skip
    app = create_app(settings)
    app.state.serve.predictions.loader = CountForecaster
    statuses: Counter = Counter()
    findings = {}
    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/web/login", data={"api_key": gov["keys"].full}, follow_redirects=False)
        for p in PROBES:
            r = c.request(p.method, p.path, json=p.body, headers={"Authorization": f"Bearer {gov['keys'].full}"})
            statuses[r.status_code] += 1
            findings[p.name] = r.status_code
        bad_secret = gov["keys"].narrow.split("_")[1]
        for i in range(20):  # wrong secrets for one key id
            statuses[c.get("/v1/models", headers={"Authorization": f"Bearer cfm_{bad_secret}_x{i}"}).status_code] += 1
    fuzz.EXAMPLES = {m: args.examples for m in fuzz.EXAMPLES}
    fuzz_5xx = 0
    fuzz_sent = 0
    for mode in fuzz.EXAMPLES:
        app = create_app(settings)
        app.state.serve.predictions.loader = CountForecaster
        sent, bad = fuzz._fuzz(app, gov["keys"].full, mode)
        fuzz_sent += sent
        fuzz_5xx += len(bad)
    out = {
        "label": args.label, "src": str(args.src), "probe_requests": sum(statuses.values()),
        "probe_5xx": sum(n for s, n in statuses.items() if s >= 500), "probe_statuses": dict(sorted(statuses.items())),
        "finding_statuses": findings, "schemathesis_requests": fuzz_sent, "schemathesis_5xx": fuzz_5xx,
        "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
