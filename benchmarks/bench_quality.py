"""What the per-file quality report, and the timeline with its plot, add to processing a
long recording, in one run.

    .venv/bin/python benchmarks/bench_quality.py [--days 7] [--out benchmarks/results/quality.json]

A synthetic GENEActiv wrist recording (50 Hz, `--days` long) goes through the free-living
wrist pipeline (calibration, day windows, wear, sleep, activity) the way a job runs it
(`workflow.run`, which writes the quality report). In the same process, the report alone is
then timed on the same reader output, wear bouts and calibrated signal (the median of
three). So are the subject timeline's parts on the same arrays: the per-minute grid, the
`events` table and the activity plot (PNG). The overheads are their times over the rest of
the job's. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_catalog import machine  # noqa: E402
from benchmarks.bench_platform import WRIST_STEPS as STEPS  # noqa: E402


def main() -> None:
    import skdh

    from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin
    from biomarkerflow.plugins.skdh import quality, workflow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        path = Path(tmp) / "P01_wrist.bin"
        write_geneactiv_bin(path, RecordingSpec(subject="P01", days=args.days, fs=50.0, seed=7))
        plan = workflow.JobPlan(
            None, tuple(workflow.StepPlan(name, cast(dict[str, Any], params)) for name, params in STEPS)
        )
        workflow.warm_up()
        start = time.perf_counter()
        output = workflow.run(path, plan, {"tz_name": "Europe/London"}, scratch=Path(tmp))
        job_seconds = time.perf_counter() - start

        data = skdh.io.ReadBin().predict(file=str(path), tz_name="Europe/London")
        pipeline = skdh.Pipeline()
        for name, params in STEPS:
            pipeline.add(workflow._step_instance(workflow.StepPlan(name, cast(dict[str, Any], params))), name=name)
        results = pipeline.run(**data, file=str(path), tz_name="Europe/London")
        report_seconds = []
        for _ in range(3):
            start = time.perf_counter()
            quality.report(
                data,
                calibrated_accel=results["CalibrateAccelerometer"].get("accel"),
                wear_bouts=results["AccelThresholdWearDetection"]["wear"],
                tz_name="Europe/London",
            )
            report_seconds.append(time.perf_counter() - start)
        timeline_seconds = _timeline_seconds(data, results, plan, output.tables["quality"], Path(tmp))
    report = statistics.median(report_seconds)
    timeline_total = sum(timeline_seconds.values())
    figures = {
        "machine": machine(),
        "days": args.days,
        "samples": int(output.recording["samples"]),
        "job_seconds": round(job_seconds, 2),
        "report_seconds": round(report, 3),
        "overhead_percent": round(100 * report / (job_seconds - report - timeline_total), 2),
        "timeline_seconds": {name: round(seconds, 3) for name, seconds in timeline_seconds.items()},
        "timeline_overhead_percent": round(100 * timeline_total / (job_seconds - report - timeline_total), 2),
        "report_and_timeline_overhead_percent": round(
            100 * (report + timeline_total) / (job_seconds - report - timeline_total), 2
        ),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


def _timeline_seconds(
    data: dict[str, Any], results: dict[str, Any], plan: Any, quality_row: Any, folder: Path
) -> dict[str, float]:
    """Median of three of each timeline part, as `workflow.run` calls them."""
    from biomarkerflow.plugins.skdh import plots, timeline, workflow

    names = workflow._unique_names(plan)
    calibrated = {**data, "accel": results["CalibrateAccelerometer"]["accel"]}
    times: dict[str, list[float]] = {"grid": [], "events": [], "plot": []}
    for _ in range(3):
        start = time.perf_counter()
        grid = timeline.minute_grid(calibrated)
        times["grid"].append(time.perf_counter() - start)
        start = time.perf_counter()
        found = timeline.events(data, results, plan, names, "Europe/London", [], quality_row, grid=grid)
        times["events"].append(time.perf_counter() - start)
        start = time.perf_counter()
        plots.activity_plot(grid, found, "Europe/London", folder / "activity.png", title="P01")
        times["plot"].append(time.perf_counter() - start)
    return {part: statistics.median(seconds) for part, seconds in times.items()}


if __name__ == "__main__":
    main()
