"""Cost-model accuracy on a real history: real studies through the platform, then a
time-ordered held-out test per pipeline (issue 5).

    .venv/bin/python benchmarks/bench_costs.py [--files 40] [--batches 4] [--workers 2]

1. Five pipelines over the same synthetic GENEActiv wrist recordings of 1 to 14 days
   at 10 to 20 Hz (random per file): the full wrist pipeline (wear, sleep, activity) with
   two activity cut-point sets, activity without sleep, and wear detection alone with two
   sets of thresholds (the pairs are what borrowed estimates are for: see
   bench_cost_answers.py, which evaluates this history exported as a CSV).
2. The files arrive in batches, as in a trial: each batch is copied in, then one
   `biomarkerflow run --workers N` scans and processes it. So the run history's time
   order is arrival order (within a batch the platform runs the largest files first).
3. Per pipeline: the oldest 80% of its runs train a model, the newest 20% test it, and
   both baselines (median, straight line on input size) are scored on the same runs:
   median and P90 relative error of cost and duration, and 80%-interval coverage.
   Coverage is also pooled over the pipelines (more runs, less granular).
4. Rolling origin: every run from the 11th on is predicted by a model trained on the
   runs that had finished before it started (many more test runs than one split).
5. Both also score the model asked as `estimate --study` asks it: size, type, and the
   sample rate and length from the file's header, no output size.

Writes benchmarks/results/costs.json. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_catalog import machine  # noqa: E402

from biomarkerflow.catalog.manager import Catalog  # noqa: E402
from biomarkerflow.cost.evaluation import (  # noqa: E402
    assess,
    evaluate,
    median_baseline,
    score,
    size_line_baseline,
    time_split,
)
from biomarkerflow.cost.history import Observation  # noqa: E402
from biomarkerflow.cost.model import CostModel, Prediction, RunInputs  # noqa: E402
from biomarkerflow.cost.prices import BUILT_IN_TABLES, DEFAULT_TABLE, PriceTable  # noqa: E402
from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin  # noqa: E402

CALIBRATE = "- CalibrateAccelerometer: {min_hours: 24}\n"
DAYS = "- GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}\n"
WEAR = "- AccelThresholdWearDetection: {}\n"
SLEEP = "- Sleep: {day_window: [12, 24]}\n"
ACTIVITY = "- ActivityLevelClassification: {cutpoints: migueles_wrist_adult}\n"
# Two pairs of pipelines share their steps and differ in a parameter, as a new study that
# changes a cut-point or a threshold starts a new pipeline: what borrowed estimates are for.
PIPELINES = {
    "wrist-full": CALIBRATE + DAYS + WEAR + SLEEP + ACTIVITY,
    "wrist-full-hildebrand": CALIBRATE
    + DAYS
    + WEAR
    + SLEEP
    + "- ActivityLevelClassification: {cutpoints: hildebrand_wrist_adult_geneactiv}\n",
    "wrist-activity": CALIBRATE + DAYS + WEAR + ACTIVITY,
    "wrist-wear": DAYS + WEAR,
    "wrist-wear-strict": DAYS + "- AccelThresholdWearDetection: {sd_crit: 0.01, window_length: 30, window_skip: 10}\n",
}
OUT = ROOT / "benchmarks" / "results" / "costs.json"
RATES = (10.0, 12.5, 20.0)  # 25 Hz and up would double the benchmark's hour


def study_config(name: str, steps: str) -> str:
    return (
        textwrap.dedent(
            f"""\
            study: {name}
            data:
              location: ../data/{name}
              include: ["*.bin"]
              subject: '(?P<subject>[A-Za-z0-9]+)_'
            pipeline:
              package: scikit-digital-health==0.17.18
              steps:
            """
        )
        + textwrap.indent(steps, "    ")
        + f"output:\n  location: ../results/{name}\n"
    )


def make_recordings(folder: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        days = round(rng.uniform(1.0, 14.0), 2)
        spec = RecordingSpec(subject=f"S{i:03d}", days=days, fs=rng.choice(RATES), seed=seed * 1000 + i)
        path = folder / f"S{i:03d}_wrist.bin"
        write_geneactiv_bin(path, spec)
        paths.append(path)
    return paths


def run_batches(root: Path, recordings: dict[str, list[Path]], batches: int, workers: int, seed: int) -> None:
    rng = random.Random(seed)
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(root / "home")}
    for name in recordings:
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
    order = {name: rng.sample(paths, len(paths)) for name, paths in recordings.items()}
    for batch in range(batches):
        for name, paths in order.items():
            for path in paths[batch::batches]:
                os.link(path, root / "data" / name / path.name)  # the recordings are shared, read-only
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "biomarkerflow.cli", "run", "--configs", str(root / "studies")]
            + ["--workers", str(workers)],
            env=env,
            capture_output=True,
            text=True,
        )
        print(
            f"batch {batch + 1}/{batches}: exit {result.returncode} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        if result.returncode != 0:
            print(result.stdout[-3000:], result.stderr[-3000:])


def before_the_run(item: RunInputs) -> RunInputs:
    """What `estimate --study` knows of a file: size, type, and the sample rate and length
    its header says (equal to the run's own figures to within one 300-sample page, see
    tests/test_headers.py); the output size is not known yet."""
    return RunInputs(
        input_bytes=item.input_bytes,
        device=item.device,
        recording_seconds=item.recording_seconds,
        sample_rate_hz=item.sample_rate_hz,
    )


@dataclass
class AsEstimated:
    """The model asked as `estimate --study` asks it."""

    model: CostModel

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        return self.model.predict([before_the_run(i) for i in inputs], table)


def rolling_origin(runs: Sequence[Observation], table: PriceTable, first: int = 10) -> dict[str, Any]:
    """Every run from the `first`-th on is predicted by models trained on the runs that had
    finished when it started, as a registry retrained before each run would predict it.
    More test runs than one 80/20 split, so coverage is measured in finer steps."""
    ordered = sorted(runs, key=lambda o: o.started_at)
    tested: list[Observation] = []
    predicted: dict[str, list[Prediction]] = {"model": [], "as_estimated": [], "median": [], "size_line": []}
    for run in ordered:
        history = [o for o in ordered if o.started_at + timedelta(seconds=o.wall_seconds) <= run.started_at]
        if len(history) < first:
            continue
        model = CostModel.fit(run.pipeline, history)
        inputs = [RunInputs.of(run)]
        tested.append(run)
        predicted["model"] += model.predict(inputs, table)
        predicted["as_estimated"] += AsEstimated(model).predict(inputs, table)
        predicted["median"] += median_baseline(history).predict(inputs, table)
        predicted["size_line"] += size_line_baseline(history).predict(inputs, table)
    return {
        "test_runs": len(tested),
        **{name: score(tested, predictions, table) for name, predictions in predicted.items()},
    }


def report(catalog: Catalog) -> dict[str, Any]:
    table = BUILT_IN_TABLES[DEFAULT_TABLE]
    out: dict[str, Any] = {}
    for pipeline in catalog.pipelines_with_history():
        runs = catalog.observations(pipeline)
        train, test = time_split(runs)
        model = CostModel.fit(pipeline, train)
        assessment = assess(model, train, test, table)
        as_estimated = evaluate(AsEstimated(model), test, table)
        study = next((r.study_id for r in catalog.runs() if r.pipeline == pipeline), pipeline)
        out[study] = {
            "pipeline": pipeline,
            "runs": len(runs),
            "model_kind": model.describe(),
            "input_mb": [round(min(o.input_bytes for o in runs) / 1e6), round(max(o.input_bytes for o in runs) / 1e6)],
            "wall_seconds": [round(min(o.wall_seconds for o in runs)), round(max(o.wall_seconds for o in runs))],
            **assessment.as_dict(),
            "model_as_estimated": as_estimated,
            "rolling_origin": rolling_origin(runs, table),
        }
    return out


def pooled_coverage(results: dict[str, Any], key: str | None = None) -> dict[str, float]:
    pooled: dict[str, float] = {}
    parts = [r[key] if key else r for r in results.values()]
    for quantity in ("cost", "wall_seconds", "peak_rss_bytes"):
        covered = sum(p["model"][quantity]["coverage"] * p["test_runs"] for p in parts)
        pooled[quantity] = round(covered / sum(p["test_runs"] for p in parts), 3)
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40, help="recordings (each runs through every pipeline)")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--report-only", type=Path, help="only report on the history in this kept folder")
    args = parser.parse_args()
    if args.report_only:
        previous = json.loads(OUT.read_text()) if OUT.exists() else {}
        for name in ("files", "batches", "workers"):  # as the history was made, not this call's defaults
            setattr(args, name, previous.get(f"{name}_per_pipeline" if name == "files" else name))
        write_summary(Catalog.for_home(args.report_only / "home"), args, previous.get("processing_seconds"))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-costs-"))
    (root / "studies").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    shared = make_recordings(root / "recordings", args.files, args.seed)
    recordings = {}
    for name, steps in PIPELINES.items():
        (root / "studies" / f"{name}.yaml").write_text(study_config(name, steps))
        recordings[name] = shared
    print(f"wrote {args.files} recordings in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    run_batches(root, recordings, args.batches, args.workers, args.seed)
    write_summary(Catalog.for_home(root / "home"), args, round(time.perf_counter() - started))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def write_summary(catalog: Catalog, args: argparse.Namespace, processing_seconds: int | None) -> None:
    results = report(catalog)
    summary = {
        "machine": machine(),
        "files_per_pipeline": args.files,
        "batches": args.batches,
        "workers": args.workers,
        "processing_seconds": processing_seconds,
        "price_table": DEFAULT_TABLE,
        "pipelines": results,
        "pooled_coverage": pooled_coverage(results),
        "pooled_coverage_rolling_origin": pooled_coverage(results, "rolling_origin"),
    }
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    for study, r in results.items():
        line = [f"{study} ({r['runs']} runs, test {r['test_runs']}, {r['model_kind']}):"]
        for quantity in ("cost", "wall_seconds"):
            m, b1, b2 = r["model"][quantity], r["median_baseline"][quantity], r["size_line_baseline"][quantity]
            line.append(
                f"  {quantity}: median {m['median_relative_error']:.1%} P90 {m['p90_relative_error']:.1%} "
                f"coverage {m['coverage']:.0%} | median baseline {b1['median_relative_error']:.1%} | "
                f"size line {b2['median_relative_error']:.1%}"
            )
        estimated = r["model_as_estimated"]["cost"]["median_relative_error"]
        line.append(f"  cost as `estimate --study` knows the file: median {estimated:.1%}")
        rolling = r["rolling_origin"]
        line.append(f"  rolling origin ({rolling['test_runs']} runs):")
        for quantity in ("cost", "wall_seconds"):
            m = rolling["model"][quantity]
            line.append(
                f"    {quantity}: median {m['median_relative_error']:.1%} P90 {m['p90_relative_error']:.1%} "
                f"coverage {m['coverage']:.0%} | as estimated "
                f"{rolling['as_estimated'][quantity]['median_relative_error']:.1%} | median baseline "
                f"{rolling['median'][quantity]['median_relative_error']:.1%} | size line "
                f"{rolling['size_line'][quantity]['median_relative_error']:.1%}"
            )
        print("\n".join(line))
    print("pooled coverage, 80/20 split:", summary["pooled_coverage"])
    print("pooled coverage, rolling origin:", summary["pooled_coverage_rolling_origin"])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
