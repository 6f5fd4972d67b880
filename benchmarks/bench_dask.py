"""Dask execution: speed-up from 1 to 2 Dask workers, and Dask's overhead over the local pool.

    python benchmarks/bench_dask.py [--days 2] [--rounds 2]

The same files as bench_platform.py (synthetic multi-day wrist recordings and SKDH's real
samples), each contender a fresh `biomarkerflow run` on a fresh catalog, in one run:
  local_2     --executor local --workers 2          (the default pool)
  dask_1      --executor local-dask:1               (a LocalCluster of 1 worker process)
  dask_2      --executor local-dask:2               (a LocalCluster of 2 worker processes)
Wall times include starting the cluster and the workers' SKDH import. Writes
benchmarks/results/dask.json. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_platform import build, machine, timed  # noqa: E402

from biomarkerflow.catalog.manager import Catalog  # noqa: E402

CONTENDERS = {
    "local_2": ["--executor", "local", "--workers", "2"],
    "dask_1": ["--executor", "local-dask:1"],
    "dask_2": ["--executor", "local-dask:2"],
}


def run(root: Path, name: str) -> tuple[float, float]:
    """Wall time of `biomarkerflow run`, and the sum of its jobs' own wall times."""
    home = root / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home)}
    command = [sys.executable, "-m", "biomarkerflow.cli", "run", "--configs", str(root / "studies"), *CONTENDERS[name]]
    elapsed, _ = timed(command, env=env)
    runs = [r for study in ("bench-wrist", "bench-gait") for r in Catalog.for_home(home).runs(study)]
    assert all(r.outcome == "succeeded" for r in runs), [r.error for r in runs]
    return elapsed, sum(r.wall_seconds or 0.0 for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dask.json")
    args = parser.parse_args()
    names = list(CONTENDERS)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    job_seconds: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        jobs = build(root, args.days)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                elapsed, jobs_total = run(root, name)
                seconds[name].append(elapsed)
                job_seconds[name].append(jobs_total)
                print(f"round {round_index + 1}: {name} {elapsed:.1f} s (jobs {jobs_total:.1f} s)", file=sys.stderr)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    figures = {
        "files": len(jobs),
        "rounds": args.rounds,
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "median_seconds": {name: round(v, 2) for name, v in median.items()},
        "median_sum_of_job_seconds": {name: round(statistics.median(v), 2) for name, v in job_seconds.items()},
        "speedup_dask_2_over_1": round(median["dask_1"] / median["dask_2"], 3),
        "dask_2_over_local_2": round(median["dask_2"] / median["local_2"], 3),
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
