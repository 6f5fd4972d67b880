"""Platform vs. a plain Python loop calling SKDH, on the same files, in one run.

    python benchmarks/bench_platform.py [--days 2] [--out benchmarks/results/platform.json]

Files: synthetic GENEActiv wrist recordings (one multi-day, others about a day) through
the free-living wrist pipeline, and SKDH's real device samples through lumbar gait.
Measured, each in a fresh process so every contender pays SKDH's import once:
  plain    one Python process: for each file, SKDH Pipeline(reader + steps).run(...)
  1 worker `biomarkerflow run --workers 1` on a fresh catalog
  2 workers `biomarkerflow run --workers 2` on a fresh catalog
Prints wall times and ratios; writes them as JSON. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.demo.run import find_samples
from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin

WRIST_STEPS = [
    ("CalibrateAccelerometer", {"min_hours": 24}),
    ("GetDayWindowIndices", {"bases": (0, 12), "periods": (24, 24)}),
    ("AccelThresholdWearDetection", {}),
    ("Sleep", {"day_window": (12, 24)}),
    ("ActivityLevelClassification", {"cutpoints": "migueles_wrist_adult"}),
]
GAIT_FILES = ("ax3_sample.cwa", "ax6_sample.cwa", "gnactv_sample.bin")

PLAIN_LOOP = r"""
import json, sys, time, warnings
start = time.perf_counter()
import skdh
print(time.perf_counter() - start)
start = time.perf_counter()
warnings.simplefilter("ignore")
jobs = json.loads(sys.argv[1])
for job in jobs:
    reader = {"ReadBin": skdh.io.ReadBin, "ReadCwa": skdh.io.ReadCwa}[job["reader"]]()
    pipeline = skdh.Pipeline()
    pipeline.add(reader)
    for name, params in job["steps"]:
        modules = (skdh.preprocessing, skdh.sleep, skdh.activity, skdh.gait)
        cls = next(getattr(m, name) for m in modules if hasattr(m, name))
        pipeline.add(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}))
    pipeline.run(file=job["file"], height=job["height"])
print(time.perf_counter() - start)
"""


def build(root: Path, days: float) -> list[dict[str, object]]:
    wrist = root / "data" / "wrist"
    lab = root / "data" / "lab"
    wrist.mkdir(parents=True)
    lab.mkdir(parents=True)
    lengths = [days, 1.05, 1.1, 1.2, 1.05]
    jobs: list[dict[str, object]] = []
    for i, length in enumerate(lengths):
        path = wrist / f"B{i:02d}_wrist.bin"
        write_geneactiv_bin(path, RecordingSpec(subject=f"B{i:02d}", days=length, fs=50.0, seed=100 + i))
        jobs.append({"file": str(path), "reader": "ReadBin", "steps": WRIST_STEPS, "height": 1.7})
    samples = find_samples()
    if samples is None:
        raise SystemExit("../shared/data/skdh not found")
    for name in GAIT_FILES:
        shutil.copyfile(samples / name, lab / name)
        reader = "ReadCwa" if name.endswith(".cwa") else "ReadBin"
        jobs.append({"file": str(lab / name), "reader": reader, "steps": [("GaitLumbar", {})], "height": 1.7})
    (root / "data" / "subjects.csv").write_text(
        "subject,height_m\n"
        + "".join(f"B{i:02d},1.7\n" for i in range(len(lengths)))
        + "ax3,1.7\nax6,1.7\ngnactv,1.7\n"
    )
    studies = root / "studies"
    studies.mkdir()
    steps_yaml = "".join(
        f"    - {name}: {json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})}\n"
        for name, params in WRIST_STEPS
    )
    common = "metadata:\n  - location: ../data/subjects.csv\nrequirements:\n  metadata: [height_m]\n"
    (studies / "wrist.yaml").write_text(
        "study: bench-wrist\ndata:\n  location: ../data/wrist\n  include: ['*.bin']\n"
        "  subject: '(?P<subject>[A-Za-z0-9]+)_'\n"
        + common
        + "pipeline:\n  package: scikit-digital-health==0.17.18\n  steps:\n"
        + steps_yaml
        + "output:\n  location: ../results/wrist\n"
    )
    (studies / "gait.yaml").write_text(
        textwrap.dedent(
            """\
            study: bench-gait
            data:
              location: ../data/lab
              include: ['*.cwa', '*.bin']
              subject: '(?P<subject>[A-Za-z0-9]+)_'
            """
        )
        + common
        + "pipeline:\n  package: scikit-digital-health==0.17.18\n  steps:\n    - GaitLumbar: {}\n"
        + "output:\n  location: ../results/gait\n"
    )
    return jobs


def machine() -> dict[str, object]:
    """The machine the figures come from, written next to them."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def timed(command: list[str], **kwargs: object) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def platform_run(root: Path, workers: int) -> tuple[float, float]:
    """Wall time of `biomarkerflow run`, and the sum of its jobs' own wall times."""
    home = root / f"home-{workers}"
    shutil.rmtree(root / "results", ignore_errors=True)
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home)}
    command = ["run", "--configs", str(root / "studies"), "--workers", str(workers)]
    elapsed, _ = timed([sys.executable, "-m", "biomarkerflow.cli", *command], env=env)
    runs = [run for study in ("bench-wrist", "bench-gait") for run in Catalog.for_home(home).runs(study)]
    return elapsed, sum(run.wall_seconds or 0.0 for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=2.0, help="length of the multi-day recording")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions; the order rotates each round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "platform.json")
    args = parser.parse_args()
    contenders = ["plain", "platform_1_worker", "platform_2_workers"]
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    job_seconds: list[float] = []
    plain_import: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        jobs = build(root, args.days)
        for round_index in range(args.rounds):
            # Rotate the order: this VM's speed drifts by 10-20% over minutes.
            order = contenders[round_index % 3 :] + contenders[: round_index % 3]
            for name in order:
                if name == "plain":
                    elapsed, printed = timed([sys.executable, "-c", PLAIN_LOOP, json.dumps(jobs)])
                    plain_import.append(float(printed.split()[0]))
                else:
                    workers = 1 if name == "platform_1_worker" else 2
                    shutil.rmtree(root / f"home-{workers}", ignore_errors=True)
                    elapsed, jobs_total = platform_run(root, workers)
                    if workers == 1:
                        job_seconds.append(jobs_total)
                seconds[name].append(elapsed)
                print(f"round {round_index + 1}: {name} {elapsed:.1f} s", file=sys.stderr)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    figures = {
        "files": len(jobs),
        "rounds": args.rounds,
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "median_seconds": {name: round(v, 2) for name, v in median.items()},
        "plain_import_skdh_seconds": round(statistics.median(plain_import), 2),
        "platform_1_worker_sum_of_job_seconds": round(statistics.median(job_seconds), 2),
        "platform_over_plain_1_worker": round(median["platform_1_worker"] / median["plain"], 3),
        "speedup_2_over_1_workers": round(median["platform_1_worker"] / median["platform_2_workers"], 3),
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
