"""Cost estimates that always answer (issue 20): how good the answers are on real histories.

    .venv/bin/python benchmarks/bench_cost_answers.py \\
        --history skdh=benchmarks/histories/skdh-wrist.csv \\
        --history wfcommons=/work/traces/wfcommons-history.csv [--workers 2]

Each history is a CSV of past runs as `biomarkerflow models import-history` reads it, and
is imported by that command into a fresh catalog (bad rows are reported, as a user would
see them). Then, per history:

1. **Answered**: of the pipelines with at least 5 runs, how many `estimate` answers (its
   champion, after `models train`'s own choice of the best candidate per quantity).
2. **80/20 split**: per pipeline with 6 runs or more, the oldest 80% train, the newest 20%
   are predicted (the model as an estimate sees a run: size, machine, device, header facts;
   no output size), next to both baselines fitted on the same runs.
3. **Rolling origin**: per pipeline, at 60, 70, 80 and 90% of its runs (by time) a model
   learns from the runs before and predicts those up to the next origin.
4. **Borrowed**: pipelines are left out whole (each alone when there are at most 12,
   else in 10 groups); the pooled model of the others predicts their runs, for every
   left-out pipeline that has a similar one (same workflow type) among the others.
5. **Extrapolation**: per pipeline whose sizes span 3x or more, the runs up to the median
   size train and the runs at least 3x larger than the largest of those are predicted.

Reported pooled over the pipelines (every test run counts once): median and P90 relative
error of wall time, 80%-interval coverage, and the baselines' median errors on the same
runs; per pipeline in the JSON. Writes benchmarks/results/cost_answers.json. Never
asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_catalog import machine  # noqa: E402

from biomarkerflow.catalog.manager import Catalog  # noqa: E402
from biomarkerflow.cost.evaluation import median_baseline, size_line_baseline, time_split  # noqa: E402
from biomarkerflow.cost.history import Observation, format_history_csv  # noqa: E402
from biomarkerflow.cost.inputs import Prediction, RunInputs  # noqa: E402
from biomarkerflow.cost.model import MIN_RUNS, CostModel  # noqa: E402
from biomarkerflow.cost.pooled import PooledModel  # noqa: E402
from biomarkerflow.cost.prices import BUILT_IN_TABLES, DEFAULT_TABLE  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "cost_answers.json"
TABLE = BUILT_IN_TABLES[DEFAULT_TABLE]
ORIGINS = (0.6, 0.7, 0.8, 0.9)
MOST_RUNS = 200  # a pipeline's newest runs evaluated: enough to make its figures steady
LEAVE_ONE_OUT_UP_TO = 12
PREDICTORS = ("champion", "size_line", "median")


def before_the_run(observation: Observation) -> RunInputs:
    """What an estimate knows of a run before it: everything but its output size."""
    return replace(RunInputs.of(observation), output_bytes=None)


@dataclass(frozen=True)
class Scored:
    """One test run: the actual wall time and each predictor's (low, point, high)."""

    pipeline: str
    actual: float
    predicted: dict[str, tuple[float, float, float]]
    extrapolating: bool = False


def _wall(prediction: Prediction) -> tuple[float, float, float]:
    return prediction.values["wall_seconds"]


def predict_with_all(pipeline: str, train: Sequence[Observation], test: Sequence[Observation]) -> list[Scored]:
    """The champion and both baselines fitted on `train`, asked for `test` as an estimate asks."""
    fitted = {
        "champion": CostModel.fit(pipeline, train),
        "size_line": size_line_baseline(train),
        "median": median_baseline(train),
    }
    inputs = [before_the_run(o) for o in test]
    predictions = {name: model.predict(inputs, TABLE) for name, model in fitted.items()}
    flagged = [p.extrapolating for p in predictions["champion"]]
    return [
        Scored(pipeline, o.wall_seconds, {name: _wall(p[i]) for name, p in predictions.items()}, flagged[i])
        for i, o in enumerate(test)
    ]


def split_case(pipeline: str, runs: Sequence[Observation]) -> list[Scored]:
    train, test = time_split(runs)
    return predict_with_all(pipeline, train, test) if len(train) >= MIN_RUNS else []


def rolling_case(pipeline: str, runs: Sequence[Observation]) -> list[Scored]:
    ordered = sorted(runs, key=lambda o: o.started_at)
    cuts = [round(len(ordered) * origin) for origin in ORIGINS] + [len(ordered)]
    scored: list[Scored] = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        if start >= MIN_RUNS and end > start:
            scored += predict_with_all(pipeline, ordered[:start], ordered[start:end])
    return scored


def extrapolation_case(pipeline: str, runs: Sequence[Observation]) -> list[Scored]:
    sizes = np.array([o.input_bytes for o in runs], dtype=float)
    if sizes.min() <= 0 or sizes.max() < 3 * sizes.min():
        return []
    train = [o for o in runs if o.input_bytes <= np.median(sizes)]
    largest = max(o.input_bytes for o in train)
    test = [o for o in runs if o.input_bytes >= 3 * largest]
    if len(train) < MIN_RUNS or len(test) < 3:
        return []
    return predict_with_all(pipeline, train, test)


CASES: dict[str, Callable[[str, Sequence[Observation]], list[Scored]]] = {
    "split": split_case,
    "rolling": rolling_case,
    "extrapolation": extrapolation_case,
}


def _run_case(job: tuple[str, str, list[Observation]]) -> tuple[str, list[Scored]]:
    from threadpoolctl import threadpool_limits

    case, pipeline, runs = job
    with threadpool_limits(limits=1, user_api="openmp"):
        return case, CASES[case](pipeline, runs)


def summary(scored: Sequence[Scored], predictors: Sequence[str] = PREDICTORS) -> dict[str, Any]:
    """Pooled over every test run: median and P90 relative error, coverage, per predictor."""
    if not scored:
        return {"test_runs": 0}
    out: dict[str, Any] = {"test_runs": len(scored), "pipelines": len({s.pipeline for s in scored})}
    for name in predictors:
        errors = np.array([abs(s.predicted[name][1] - s.actual) / s.actual for s in scored])
        covered = np.array([s.predicted[name][0] <= s.actual <= s.predicted[name][2] for s in scored])
        out[name] = {
            "median_relative_error": round(float(np.median(errors)), 4),
            "p90_relative_error": round(float(np.quantile(errors, 0.9)), 4),
            "coverage": round(float(covered.mean()), 3),
        }
    out["extrapolating"] = sum(s.extrapolating for s in scored)
    return out


def by_pipeline(scored: Sequence[Scored]) -> dict[str, Any]:
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(s.pipeline, []).append(s)
    return {name: summary(items) for name, items in sorted(groups.items())}


def borrowed(runs: Sequence[Observation]) -> list[Scored]:
    """Pipelines left out whole; the pooled model of the others predicts them."""
    from threadpoolctl import threadpool_limits

    pipelines = sorted({o.pipeline for o in runs})
    folds = len(pipelines) if len(pipelines) <= LEAVE_ONE_OUT_UP_TO else 10
    scored: list[Scored] = []
    for fold in range(folds):
        left_out = set(pipelines[fold::folds])
        training = [o for o in runs if o.pipeline not in left_out]
        if len({o.pipeline for o in training}) < 2:
            continue
        with threadpool_limits(limits=1, user_api="openmp"):
            model = PooledModel.fit(training)
        for pipeline in sorted(left_out):
            test = [o for o in runs if o.pipeline == pipeline][-MOST_RUNS:]
            if len(test) < MIN_RUNS or not model.similar(RunInputs.of(test[0]).workflow):
                continue
            predictions = model.predict([before_the_run(o) for o in test], TABLE, pipeline=pipeline)
            scored += [
                Scored(pipeline, o.wall_seconds, {"borrowed": _wall(p)}, p.extrapolating)
                for o, p in zip(test, predictions, strict=True)
            ]
    return scored


def import_history(csv_file: Path, home: Path) -> dict[str, Any]:
    """`biomarkerflow models import-history`, as a user runs it; its last line."""
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home)}
    command = [sys.executable, "-m", "biomarkerflow.cli", "models", "import-history", str(csv_file)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return {"exit": done.returncode, "said": lines[-1] if lines else done.stderr.strip()[-300:]}


def answered(catalog: Catalog, home: Path) -> dict[str, Any]:
    """`models train` of each pipeline with 5 runs or more (as `--pipeline P`: the pooled
    model is evaluated under "borrowed"), then an estimate for one run of each."""
    from threadpoolctl import threadpool_limits

    from biomarkerflow.cost.estimate import estimate
    from biomarkerflow.cost.registry import train

    eligible = [p for p in catalog.pipelines_with_history() if catalog.observation_count(p) >= MIN_RUNS]
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="openmp"):
        for pipeline in eligible:
            train(catalog, pipeline, home, TABLE)
    trained_seconds = time.perf_counter() - started
    answers = 0
    for pipeline in eligible:
        newest = catalog.observations(pipeline)[-1]
        (result,) = estimate(catalog, pipeline, [before_the_run(newest)], TABLE)
        answers += result.prediction is not None
    return {"eligible": len(eligible), "answered": answers, "training_seconds": round(trained_seconds, 1)}


def evaluate_history(name: str, csv_file: Path, workers: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"bench-answers-{name}-")) / "home"
    report: dict[str, Any] = {"csv": str(csv_file), "import": import_history(csv_file, home)}
    catalog = Catalog.for_home(home)
    runs = catalog.observations()
    per_pipeline: dict[str, list[Observation]] = {}
    for run in runs:
        per_pipeline.setdefault(run.pipeline, []).append(run)
    newest = {p: items[-MOST_RUNS:] for p, items in per_pipeline.items() if len(items) >= MIN_RUNS}
    report["runs"] = len(runs)
    report["pipelines"] = len(per_pipeline)
    started = time.perf_counter()
    report["answered"] = answered(catalog, home)
    jobs = [(case, p, items) for case in CASES for p, items in newest.items()]
    results: dict[str, list[Scored]] = {case: [] for case in CASES}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for case, scored in pool.map(_run_case, jobs, chunksize=4):
            results[case] += scored
    for case, scored in results.items():
        report[case] = {"pooled": summary(scored), "by_pipeline": by_pipeline(scored)}
    lent = borrowed([o for items in newest.values() for o in items])
    report["borrowed"] = {"pooled": summary(lent, ("borrowed",)), "by_pipeline": by_pipeline_borrowed(lent)}
    report["evaluation_seconds"] = round(time.perf_counter() - started)
    return report


def by_pipeline_borrowed(scored: Sequence[Scored]) -> dict[str, Any]:
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(s.pipeline, []).append(s)
    return {name: summary(items, ("borrowed",)) for name, items in sorted(groups.items())}


def export_history(home: Path, csv_file: Path) -> int:
    """A catalog's own runs as a history CSV in `models import-history`'s format, each run
    described as its study describes its pipeline (type, steps with parameters, package)."""
    from biomarkerflow.config.schema import StudyConfig
    from biomarkerflow.cost.identity import with_descriptions, workflow_description

    catalog = Catalog.for_home(home)
    pipelines = {s.id: workflow_description(StudyConfig.model_validate(s.config)) for s in catalog.studies()}
    described = dict(pipelines.values())
    names = {pipeline: study for study, (pipeline, _) in pipelines.items()}
    runs = with_descriptions(catalog.observations(), described)
    # The study's name reads better in the figures than the pipeline id.
    named = [replace(o, pipeline=names.get(o.pipeline, o.pipeline)) for o in runs]
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    csv_file.write_text(format_history_csv(named))
    return len(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", action="append", default=[], metavar="NAME=CSV")
    parser.add_argument("--export", nargs=2, metavar=("HOME", "CSV"), help="write a catalog's runs as a history CSV")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.export:
        print(f"exported {export_history(Path(args.export[0]), Path(args.export[1]))} runs", flush=True)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    histories = previous.get("histories", {})
    for item in args.history:
        name, _, path = item.partition("=")
        started = time.perf_counter()
        histories[name] = evaluate_history(name, Path(path), args.workers)
        pooled = {k: v["pooled"] if isinstance(v, dict) and "pooled" in v else v for k, v in histories[name].items()}
        print(f"{name}: {time.perf_counter() - started:.0f} s\n{json.dumps(pooled, indent=1)}", flush=True)
    if args.history:
        report = {"machine": machine(), "price_table": DEFAULT_TABLE, "histories": histories}
        OUT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
