"""Cost of the keyed audit chain: appends per second (one entry per transaction, SQLite, synchronous=FULL) and a
full ``verify_chain``, for this checkout and a baseline source given with ``--baseline-src``, each in its own
subprocess with its own empty registry. Prints the ratio (keyed / baseline)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
from clinfm.govern.audit import record, verify_chain
db = sys.argv[1]
n = int(sys.argv[2])
record("bench.warmup", actor="bench", db=db)
t0 = time.perf_counter()
for i in range(n):
    record("bench.event", actor="bench", org="acme", details={"i": i}, db=db)
append = time.perf_counter() - t0
t0 = time.perf_counter()
ok = bool(verify_chain(db=db))
print(append / n * 1000, time.perf_counter() - t0, ok)
"""


def run(src: Path, n: int) -> tuple[float, float, bool]:
    with tempfile.TemporaryDirectory(prefix="clinfm-audit-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(src), "CLINFM_HOME": str(Path(tmp) / "home")}
        out = subprocess.run([sys.executable, "-c", CHILD, f"sqlite:///{tmp}/registry.db", str(n)], env=env,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1]), out[2] == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline-src", type=Path, required=True, help="source tree of the unkeyed chain (e.g. main)")
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args()
    base, keyed = run(args.baseline_src, args.n), run(REPO / "src", args.n)
    out = {"n": args.n, "baseline_ms_per_append": round(base[0], 3), "keyed_ms_per_append": round(keyed[0], 3),
           "append_ratio": round(keyed[0] / base[0], 2), "baseline_verify_s": round(base[1], 3),
           "keyed_verify_s": round(keyed[1], 3), "verified": keyed[2] and base[2]}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
