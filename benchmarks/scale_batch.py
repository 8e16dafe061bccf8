"""Scaling of the model-side batch jobs: tokenization, embedding export and zero-shot scoring.

Eunomia ingested into 4 shards and an fm-small model; each job runs three ways in one run (local engine with
1 worker, local with 2, Ray with 2 on a local instance), checks the outputs are byte-identical and prints the
wall times and the speed-up ratios against 1 worker.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from clinfm.batch import Cohort, export_embeddings, resolve_model, score_dataset  # noqa: E402
from clinfm.data.dataset import build_dataset  # noqa: E402
from clinfm.data.ingest import omop  # noqa: E402
from clinfm.defaults import packaged
from clinfm.engine import Engine
from clinfm.model.config import load_config  # noqa: E402
from clinfm.model.corpus import prepare_corpus  # noqa: E402
from clinfm.model.train import pretrain  # noqa: E402
from clinfm.tasks.config import load_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENGINES = (("local", 1), ("local", 2), ("ray", 2))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(dataset: Path, fm_run: Path, work: Path, engine: str, workers: int, score_points: Path, samples: int) -> dict:
    import ray

    kw = {"engine": Engine(engine, workers)}
    if engine == "ray":  # one Ray instance for the three jobs, as a cluster would be; its start-up is timed apart
        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        start_s = time.perf_counter() - t
    out: dict = {"engine": engine, "workers": workers}
    cfg = load_config(packaged("models/fm-small.yaml"))
    t0 = time.perf_counter()
    prepare_corpus(dataset, cfg, work / "corpus", **kw)
    t1 = time.perf_counter()
    emb = export_embeddings(fm_run, dataset, Cohort(at=dt.datetime(2010, 1, 1)), work / "emb.parquet", **kw)
    t2 = time.perf_counter()
    scores = score_dataset(resolve_model(fm_run), dataset, work / "scores.parquet", task=load_task("new_stroke"),
                           cohort=Cohort(points_file=str(score_points)), samples=samples, **kw)  # fmt: skip
    t3 = time.perf_counter()
    if engine == "ray":
        ray.shutdown()
        out["ray_start_s"] = round(start_s, 2)
    out.update(tokenize_s=round(t1 - t0, 2), embed_s=round(t2 - t1, 2), score_s=round(t3 - t2, 2),
               embeddings=emb.height, scores=scores.height,
               digests={n: sha(work / n) for n in ("corpus/windows/train.npy", "emb.parquet", "scores.parquet")})  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--score-subjects", type=int, default=200, help="subjects scored by zero-shot rollouts")
    ap.add_argument("--samples", type=int, default=8, help="sampled futures per scored point")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(dir=os.environ.get("CLINFM_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        dataset = build_dataset(omop.plan(), tmp / "meds", shards=4).path
        fm_run = tmp / "fm"
        small = load_config(packaged("models/fm-small.yaml")).model_dump()
        small["training"].update(max_steps=20, eval_interval=20, checkpoint_interval=20)
        pretrain(dataset, small, fm_run)  # the jobs' cost depends on the model's size, not on its training
        import polars as pl

        ids = pl.read_parquet(dataset / "data" / "*.parquet", columns=["subject_id"])["subject_id"].unique().sort()
        points = tmp / "points.parquet"
        pl.DataFrame({"subject_id": ids[: args.score_subjects],
                      "prediction_time": [dt.datetime(2010, 1, 1)] * min(args.score_subjects, len(ids))}).write_parquet(points)  # fmt: skip
        runs = []
        for engine, workers in ENGINES:
            work = tmp / f"{engine}-{workers}"
            work.mkdir()
            runs.append(run(dataset, fm_run, work, engine, workers, points, args.samples))
            print({k: v for k, v in runs[-1].items() if k != "digests"})
    identical = all(r["digests"] == runs[0]["digests"] for r in runs)
    base = runs[0]
    ratios = {f"{r['engine']}-{r['workers']}": {job: round(base[f"{job}_s"] / r[f"{job}_s"], 2)
                                                for job in ("tokenize", "embed", "score")} for r in runs}  # fmt: skip
    print(f"speed-up vs local 1 worker: {ratios}")
    print(f"outputs byte-identical on every engine: {identical}")
    write_result("scale_batch", {"runs": runs, "speedup_vs_local1": ratios, "identical": identical,
                                 "cpus": os.cpu_count(), "samples": args.samples})  # fmt: skip
    if not identical:
        raise SystemExit("outputs differ between engines")


if __name__ == "__main__":
    main()
