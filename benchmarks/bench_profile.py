"""Per-run profiling's overhead: the same SKDH job with and without the profiler, in one run.

    python benchmarks/bench_profile.py [--days 1] [--rounds 3] [--out benchmarks/results/profile.json]

The job: a synthetic GENEActiv wrist recording (`--days` long, 50 Hz) through the free-living
wrist pipeline (calibration, day windows, wear, sleep, activity) of SKDH 0.17.18, in an
isolated runtime built by uv (as a study pinning it gets; this also proves the runtime's
pyinstrument imports there), on one warm runtime process (LocalExecutor(1)). Each round runs
the job once unprofiled and once with `JobSpec.profile` (the stack sampler at 20 ms, profile.html
and speedscope JSON written into the run folder), their order alternating by round; one unmeasured
job first (lazy imports, caches). Reported: the wall and CPU time the worker metered for each
job (which include writing the profile and publishing), medians, the median of the paired
ratios, the 1-minute load average at each job (other processes on the machine), and the
profile's size and sample count. Writes JSON; never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.skdh import WORKFLOW_TYPE as SKDH
from biomarkerflow.results import writer
from biomarkerflow.runtimes import profiling
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes
from biomarkerflow.storage import store

PIN = "scikit-digital-health==0.17.18"
WRIST_STEPS = [
    {"CalibrateAccelerometer": {"min_hours": 24}},
    {"GetDayWindowIndices": {"bases": [0, 12], "periods": [24, 24]}},
    {"AccelThresholdWearDetection": {}},
    {"Sleep": {"day_window": [12, 24]}},
    {"ActivityLevelClassification": {"cutpoints": "migueles_wrist_adult"}},
]
HEIGHT_M = 1.7


def machine() -> dict[str, Any]:
    model = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def study(root: Path, days: float) -> tuple[StudyConfig, store.FileEntry]:
    data = root / "data"
    data.mkdir(parents=True)
    write_geneactiv_bin(data / "B01_wrist.bin", RecordingSpec(subject="B01", days=days, fs=50.0, seed=101))
    config = StudyConfig.model_validate(
        {
            "study": "bench-profile",
            "data": {"location": str(data), "include": ["*.bin"], "subject": "(?P<subject>[A-Za-z0-9]+)_"},
            "pipeline": {"package": PIN, "steps": WRIST_STEPS},
            "output": {"location": str(root / "results")},
        }
    )
    [entry] = store.list_files(str(data), ["*.bin"])
    return config, entry


def job_for(config: StudyConfig, entry: store.FileEntry, index: int, runtime: RuntimeRef, profile: bool) -> JobSpec:
    """A JobSpec as `processing._job_for` makes it (no catalog: ids and config hash are stand-ins)."""
    run_id = f"bench-{index:03d}-{'profiled' if profile else 'plain'}"
    return JobSpec(
        run_id=run_id,
        study_id=config.study,
        file_id=index,
        input_url=entry.url,
        relative_path=entry.relative_path,
        subject="B01",
        input_fingerprint=entry.fingerprint,
        input_size=entry.size,
        workflow_type=registry.reference(SKDH.name),
        plan=SKDH.plan_job(config),
        inputs=SKDH.subject_inputs(config, {"height_m": HEIGHT_M}),
        result_location=writer.run_folder(config.output.location, "B01", entry.relative_path, run_id),
        formats=config.output.formats,
        provenance={"config": {"source": "bench_profile.py", "sha256": "0" * 64}, "runtime": runtime.provenance()},
        profile=profile,
    )


def run(executor: LocalExecutor, runtime: RuntimeRef, job: JobSpec) -> JobOutcome:
    outcome = executor.submit(job, runtime).result()
    if not outcome.succeeded:
        raise SystemExit(f"{job.run_id} failed: {outcome.error}")
    return outcome


def profile_facts(outcome: JobOutcome) -> dict[str, Any]:
    folder = Path(str(outcome.result_location))
    provenance = json.loads((folder / "provenance.json").read_text())
    return {
        **provenance["profile"],
        "html_bytes": (folder / profiling.PROFILE_FILE).stat().st_size,
        "speedscope_bytes": (folder / profiling.SPEEDSCOPE_FILE).stat().st_size,
    }


def measure(root: Path, days: float, rounds: int) -> dict[str, Any]:
    config, entry = study(root, days)
    start = time.perf_counter()
    runtime = Runtimes(root / "runtimes", isolate_always=True).for_pin(PIN)
    build_seconds = time.perf_counter() - start
    if runtime.version_of("pyinstrument") is None:
        raise SystemExit("the runtime has no pyinstrument")
    executor = LocalExecutor(1)
    counter = iter(range(1_000))
    walls: dict[str, list[float]] = {"plain": [], "profiled": []}
    cpus: dict[str, list[float]] = {"plain": [], "profiled": []}
    load: list[float] = []
    facts: list[dict[str, Any]] = []
    try:
        executor.prestart([runtime])
        run(executor, runtime, job_for(config, entry, next(counter), runtime, False))  # warm-up, not measured
        for index in range(rounds):
            order = (False, True) if index % 2 == 0 else (True, False)
            for profile in order:
                outcome = run(executor, runtime, job_for(config, entry, next(counter), runtime, profile))
                assert outcome.wall_seconds is not None and outcome.cpu_seconds is not None
                walls["profiled" if profile else "plain"].append(outcome.wall_seconds)
                cpus["profiled" if profile else "plain"].append(outcome.cpu_seconds)
                load.append(os.getloadavg()[0])
                if profile:
                    facts.append(profile_facts(outcome))
                print(
                    f"  round {index + 1}: profile={profile} {outcome.wall_seconds:.2f} s wall, "
                    f"{outcome.cpu_seconds:.2f} s CPU, load {load[-1]:.1f}",
                    file=sys.stderr,
                )
    finally:
        executor.close()
    plain, profiled = statistics.median(walls["plain"]), statistics.median(walls["profiled"])
    paired = [p / q for p, q in zip(walls["profiled"], walls["plain"], strict=True)]
    cpu_paired = [p / q for p, q in zip(cpus["profiled"], cpus["plain"], strict=True)]
    return {
        "recording": {"days": days, "fs_hz": 50.0, "bytes": entry.size},
        "pipeline": [next(iter(step)) for step in WRIST_STEPS],
        "runtime": {"pin": PIN, "label": runtime.label, "build_seconds": round(build_seconds, 1)},
        "pyinstrument": runtime.version_of("pyinstrument"),
        "rounds": rounds,
        "wall_seconds": {name: [round(v, 3) for v in values] for name, values in walls.items()},
        "median_plain_seconds": round(plain, 3),
        "median_profiled_seconds": round(profiled, 3),
        "overhead_ratio_of_medians": round(profiled / plain, 4),
        "overhead_ratio_paired_median": round(statistics.median(paired), 4),
        "cpu_seconds": {name: [round(v, 3) for v in values] for name, values in cpus.items()},
        "cpu_overhead_ratio_of_medians": round(
            statistics.median(cpus["profiled"]) / statistics.median(cpus["plain"]), 4
        ),
        "cpu_overhead_ratio_paired_median": round(statistics.median(cpu_paired), 4),
        "load_average_1min_per_job": [round(v, 2) for v in load],
        "profiles": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=1.0, help="length of the synthetic recording")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        figures = measure(Path(tmp), args.days, args.rounds)
    figures = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), **figures}
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "profiles"}, indent=2))


if __name__ == "__main__":
    main()
