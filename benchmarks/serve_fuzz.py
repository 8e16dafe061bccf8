"""Robustness: schemathesis against the live server's OpenAPI schema with a valid key, ``-n``-bounded (no
``--max-time``), counting responses with status 500 (target 0). The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_result
from serve_env import MODEL, free_port, prepare, start_server, stop_server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--max-examples", type=int, default=100, help="examples per operation")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    with tempfile.TemporaryDirectory(prefix="clinfm-serve-fuzz-") as tmp:
        setup = prepare(Path(tmp))
        port = free_port()
        proc = start_server(setup["env"], port)
        har = Path(tmp) / "fuzz.har"
        try:
            start = time.perf_counter()
            done = subprocess.run(
                [exe, "run", f"http://127.0.0.1:{port}/openapi.json", "-H", f"Authorization: Bearer {setup['key']}",
                 "--checks", "all", "-n", str(args.max_examples), "--seed", str(args.seed),
                 "--report", "har", "--report-har-path", str(har)],
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            wall = time.perf_counter() - start
        finally:
            stop_server(proc)
        output = done.stdout + done.stderr
        entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    statuses: dict[str, int] = {}
    for e in entries:
        code = str(e["response"]["status"])
        statuses[code] = statuses.get(code, 0) + 1
    summary_lines = [line for line in output.splitlines() if re.search(r"passed|failed|errored|cases|Server error", line)]
    out = {
        "benchmark": "serve_fuzz", "model": MODEL, "examples_per_operation": args.max_examples, "seed": args.seed,
        "exit_code": done.returncode, "wall_s": round(wall, 1), "requests": len(entries),
        "responses_500": statuses.get("500", 0), "responses_5xx": sum(n for c, n in statuses.items() if c.startswith("5")),
        "statuses": dict(sorted(statuses.items())), "summary": summary_lines[-15:], "target_responses_500": 0,
    }  # fmt: skip
    print(output[-4000:])
    print(json.dumps({k: out[k] for k in ("responses_500", "requests", "statuses", "exit_code", "wall_s")}))
    write_result("serve_fuzz", out)


if __name__ == "__main__":
    main()
