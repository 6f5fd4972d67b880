"""The model registry: train a challenger, test it against the champion, promote or not.

Each training is recorded, promoted or not, with its training window and held-out
metrics; the model itself is a file under `<home>/models/<pipeline>/`. Inside a model
the best of the candidates answers each quantity, baselines included (cost/model.py), so
every pipeline with 5 runs gets a model. A challenger replaces the champion only if, on
the newest runs (held out by time), its median relative cost error is lower than the
champion's on those same runs. Either way a notification says what happened.

Besides the pipelines' own models, one pooled model learns across all pipelines
(cost/pooled.py): estimates for a pipeline with fewer than 5 runs borrow from it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from biomarkerflow.catalog.manager import Catalog, CostModelRecord
from biomarkerflow.cost.evaluation import assess, evaluate, time_split
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.identity import with_descriptions
from biomarkerflow.cost.inputs import WorkflowDescription
from biomarkerflow.cost.model import MIN_RUNS, MODEL_FORMAT, CostModel, candidates_of
from biomarkerflow.cost.notify import notify
from biomarkerflow.cost.pooled import MIN_PIPELINES, POOLED, PooledModel
from biomarkerflow.cost.prices import PriceTable

log = logging.getLogger("biomarkerflow.models")

Decision = Literal["promoted", "kept", "refused"]


@dataclass(frozen=True)
class TrainingResult:
    pipeline: str
    decision: Decision
    message: str
    version: int | None = None
    metrics: dict[str, Any] | None = None
    notification_problem: str | None = None


def models_folder(home: Path) -> Path:
    return home / "models"


AnyModel = CostModel | PooledModel


def save_model(model: AnyModel, path: Path) -> None:
    """Write the model file whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(handle.name, path)


def register_model(
    catalog: Catalog,
    home: Path,
    model: AnyModel,
    *,
    promote: bool,
    metrics: dict[str, Any],
    note: str | None,
    train_runs: int | None = None,
    test_runs: int = 0,
) -> int:
    """Save `model` as the pipeline's next version and record it (the champion when `promote`); its version."""
    version = catalog.next_model_version(model.pipeline)
    path = models_folder(home) / model.pipeline / f"v{version}.pkl"
    save_model(model, path)
    catalog.record_cost_model(
        model.pipeline,
        version=version,
        promote=promote,
        path=str(path.resolve()),
        trained_from=model.trained_from,
        trained_to=model.trained_to,
        train_runs=model.train_runs if train_runs is None else train_runs,
        test_runs=test_runs,
        metrics=metrics,
        note=note,
    )
    return version


_LOADED: dict[tuple[str, int, int], AnyModel] = {}
LOADED_MODELS_KEPT = 16


def load_model(record: CostModelRecord) -> AnyModel:
    """The model in `record`'s file; kept in memory while the file is unchanged (the API
    estimates many times a second; reading a model of 78k runs takes tens of ms)."""
    status = os.stat(record.path)
    key = (str(record.path), status.st_mtime_ns, status.st_size)
    if key not in _LOADED:
        if len(_LOADED) >= LOADED_MODELS_KEPT:
            _LOADED.pop(next(iter(_LOADED)), None)
        _LOADED[key] = _read_model(record)
    return _LOADED[key]


def _read_model(record: CostModelRecord) -> AnyModel:
    # Model files are written by this platform into its own home; nothing else is unpickled.
    with open(record.path, "rb") as handle:
        model = pickle.load(handle)  # noqa: S301
    if not isinstance(model, CostModel | PooledModel):
        raise TypeError(f"{record.path} does not hold a cost model")
    if getattr(model, "format_version", 1) != MODEL_FORMAT:
        raise TypeError(f"{record.path} was written by an older biomarkerflow: run `biomarkerflow models train`")
    return model


def champion(catalog: Catalog, pipeline: str) -> tuple[CostModelRecord, CostModel] | None:
    """The pipeline's current model, if it has one and its file still loads."""
    found = _champion(catalog, pipeline)
    return (found[0], found[1]) if found is not None and isinstance(found[1], CostModel) else None


def pooled_champion(catalog: Catalog) -> tuple[CostModelRecord, PooledModel] | None:
    """The current pooled model (what estimates for pipelines with little history borrow from)."""
    found = _champion(catalog, POOLED)
    return (found[0], found[1]) if found is not None and isinstance(found[1], PooledModel) else None


def _champion(catalog: Catalog, pipeline: str) -> tuple[CostModelRecord, AnyModel] | None:
    record = catalog.champion_model(pipeline)
    if record is None:
        return None
    try:
        return record, load_model(record)
    except (OSError, pickle.UnpicklingError, TypeError, AttributeError, EOFError) as exc:
        log.error("cost model %s v%s cannot be loaded from %s: %s", pipeline, record.version, record.path, exc)
        return None


def train(
    catalog: Catalog, pipeline: str, home: Path, table: PriceTable, webhook_url: str | None = None
) -> TrainingResult:
    """Train a challenger for `pipeline` on its history so far and decide on promotion."""
    history = catalog.observations(pipeline)
    if len(history) < MIN_RUNS:
        return TrainingResult(
            pipeline,
            "refused",
            f"{len(history)} past run(s) of {pipeline}: a model of its own needs at least {MIN_RUNS}; "
            "until then its estimates borrow from similar pipelines",
        )
    # With just 5 runs all of them train, and a first model has nothing to be compared with.
    train_runs, test_runs = time_split(history) if len(history) > MIN_RUNS else (list(history), [])
    challenger = CostModel.fit(pipeline, train_runs)
    current = champion(catalog, pipeline)
    promote, why, metrics = _decide(challenger, current, train_runs, test_runs, table)
    version = register_model(
        catalog,
        home,
        challenger,
        promote=promote,
        metrics=metrics,
        note=why,
        train_runs=len(train_runs),
        test_runs=len(test_runs),
    )
    details = {"pipeline": pipeline, "challenger_version": version, "metrics": metrics}
    if promote:
        message = f"{pipeline}: v{version} ({challenger.describe()}) is now the champion: {why}"
        problem = notify("model-promoted", message, details, webhook_url)
        return TrainingResult(pipeline, "promoted", message, version, metrics, problem)
    kept = f"v{current[0].version} stays the champion" if current else "the pipeline still has no model"
    message = f"{pipeline}: challenger v{version} not promoted, {kept}: {why}"
    problem = notify("model-not-promoted", message, details, webhook_url)
    return TrainingResult(pipeline, "kept", message, version, metrics, problem)


def _decide(
    challenger: CostModel,
    current: tuple[CostModelRecord, CostModel] | None,
    train_runs: list[Observation],
    test_runs: list[Observation],
    table: PriceTable,
) -> tuple[bool, str, dict[str, Any]]:
    """(promote, why, the metrics recorded): the challenger against the champion on the same held-out runs."""
    assessment = assess(challenger, train_runs, test_runs, table) if test_runs else None
    champion_metrics = evaluate(current[1], test_runs, table) if current and test_runs else None
    metrics: dict[str, Any] = {
        "challenger": assessment.as_dict() if assessment else None,
        "champion": champion_metrics,
        "candidates": challenger.candidates(),
    }
    if current is None:
        why = "the first model of this pipeline; per quantity the best of its candidates (baselines included) answers"
        metrics["reason"] = why
        return True, why, metrics
    if assessment is None or champion_metrics is None:
        why = "no held-out runs to compare it with the champion on"
        metrics["reason"] = why
        return False, why, metrics
    mine = assessment.model["cost"]["median_relative_error"]
    theirs = champion_metrics["cost"]["median_relative_error"]
    held = f"the same {assessment.test_runs} held-out run(s)"
    if mine < theirs:
        promote, why = True, f"its median cost error {mine:.1%} is below the champion's {theirs:.1%} on {held}"
    else:
        promote, why = False, f"its median cost error {mine:.1%} is not below the champion's {theirs:.1%} on {held}"
    metrics["reason"] = why
    return promote, why, metrics


def train_pooled(
    catalog: Catalog,
    home: Path,
    descriptions: Mapping[str, WorkflowDescription],
    webhook_url: str | None = None,
) -> TrainingResult | None:
    """Train the pooled model across every pipeline with history; the newest always replaces
    the last (it is judged on pipelines it did not see, see cost/pooled.py). None when fewer
    than two pipelines have history."""
    runs = with_descriptions(catalog.observations(), descriptions)
    pipelines = {o.pipeline for o in runs}
    if len(pipelines) < MIN_PIPELINES:
        return None
    model = PooledModel.fit(runs)
    errors = {name: math.expm1(q.oof_error) for name, q in model.usage.quantities.items()}
    metrics = {
        "leave_pipelines_out_median_relative_error": errors,
        "pipelines": sorted(model.descriptions),
        "candidates": candidates_of(model.usage.quantities),
    }
    why = f"learned from {len(model.descriptions)} pipelines; on pipelines it did not see, median duration error " + (
        f"{errors['wall_seconds']:.1%}"
    )
    version = register_model(catalog, home, model, promote=True, metrics=metrics, note=why)
    message = f"{POOLED}: v{version} ({model.describe()}) now answers for pipelines with little history: {why}"
    problem = notify("model-promoted", message, {"pipeline": POOLED, "metrics": metrics}, webhook_url)
    return TrainingResult(POOLED, "promoted", message, version, metrics, problem)


def training_due(last_training: datetime | None, every_hours: float | None, now: datetime) -> bool:
    """Whether a scheduled retraining is due: never when unscheduled, at once when never trained."""
    if every_hours is None:
        return False
    return last_training is None or now - last_training >= timedelta(hours=every_hours)


def train_all(
    catalog: Catalog,
    home: Path,
    table: PriceTable,
    webhook_url: str | None = None,
    pipeline: str | None = None,
    descriptions: Mapping[str, WorkflowDescription] | None = None,
) -> list[TrainingResult]:
    """Train every pipeline with history (or just `pipeline`), then the pooled model
    (unless just one pipeline was asked for).

    On one OpenMP thread: the models are small, and scikit-learn's default of one thread per
    core spins against anything else running (a fit of 300 runs took 156 s instead of 2.2 s
    on a busy 2-core machine: benchmarks/README.md, REST API section).
    """
    from threadpoolctl import threadpool_limits

    pipelines = [pipeline] if pipeline else catalog.pipelines_with_history()
    with threadpool_limits(limits=1, user_api="openmp"):
        results = [train(catalog, name, home, table, webhook_url) for name in pipelines]
        pooled = None if pipeline else train_pooled(catalog, home, descriptions or {}, webhook_url)
    return results + ([pooled] if pooled else [])
