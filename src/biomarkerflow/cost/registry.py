"""The model registry: train a challenger, test it against the champion, promote or not.

Each training is recorded, promoted or not, with its training window and held-out
metrics; the model itself is a file under `<home>/models/<pipeline>/`. A challenger is
promoted only if, on the newest runs (held out by time), it beats both baselines and
has a lower median relative cost error than the champion has on those same runs.
Otherwise nothing changes, and a notification says so.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from biomarkerflow.catalog.manager import Catalog, CostModelRecord
from biomarkerflow.cost.model import MIN_RUNS, MODEL_FORMAT, CostModel, assess, evaluate, time_split
from biomarkerflow.cost.notify import notify
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


def save_model(model: CostModel, path: Path) -> None:
    """Write the model file whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(handle.name, path)


def register_model(
    catalog: Catalog,
    home: Path,
    model: CostModel,
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


_LOADED: dict[tuple[str, int, int], CostModel] = {}
LOADED_MODELS_KEPT = 16


def load_model(record: CostModelRecord) -> CostModel:
    """The model in `record`'s file; kept in memory while the file is unchanged (the API
    estimates many times a second; reading a model of 78k runs takes tens of ms)."""
    status = os.stat(record.path)
    key = (str(record.path), status.st_mtime_ns, status.st_size)
    if key not in _LOADED:
        if len(_LOADED) >= LOADED_MODELS_KEPT:
            _LOADED.pop(next(iter(_LOADED)), None)
        _LOADED[key] = _read_model(record)
    return _LOADED[key]


def _read_model(record: CostModelRecord) -> CostModel:
    # Model files are written by this platform into its own home; nothing else is unpickled.
    with open(record.path, "rb") as handle:
        model = pickle.load(handle)  # noqa: S301
    if not isinstance(model, CostModel):
        raise TypeError(f"{record.path} does not hold a cost model")
    if getattr(model, "format_version", 1) != MODEL_FORMAT:
        raise TypeError(f"{record.path} was written by an older biomarkerflow: run `biomarkerflow models train`")
    return model


def champion(catalog: Catalog, pipeline: str) -> tuple[CostModelRecord, CostModel] | None:
    """The pipeline's current model, if it has one and its file still loads."""
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
    train_runs, test_runs = time_split(history)
    if len(train_runs) < MIN_RUNS:
        return TrainingResult(
            pipeline,
            "refused",
            f"{len(history)} past run(s) of {pipeline}: training needs at least {MIN_RUNS + 1} "
            f"({MIN_RUNS} to learn from, the newest to test on)",
        )
    challenger = CostModel.fit(pipeline, train_runs)
    assessment = assess(challenger, train_runs, test_runs, table)
    current = champion(catalog, pipeline)
    champion_metrics = evaluate(current[1], test_runs, table) if current else None
    challenger_error = assessment.model["cost"]["median_relative_error"]
    if not assessment.beats_baselines:
        promote, why = False, "it does not beat both baselines on the held-out runs"
    elif champion_metrics is not None and challenger_error >= champion_metrics["cost"]["median_relative_error"]:
        promote = False
        why = (
            f"its median cost error {challenger_error:.1%} is not below the champion's "
            f"{champion_metrics['cost']['median_relative_error']:.1%} on the same held-out runs"
        )
    else:
        promote, why = True, "it beats both baselines" + (" and the champion" if current else "")
    metrics = {"challenger": assessment.as_dict(), "champion": champion_metrics, "reason": why}
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
    if promote:
        message = f"{pipeline}: v{version} ({challenger.describe()}) is now the champion: {why}"
        log.info(message)
        return TrainingResult(pipeline, "promoted", message, version, metrics)
    kept = f"v{current[0].version} stays the champion" if current else "the pipeline still has no model"
    message = f"{pipeline}: challenger v{version} not promoted, {kept}: {why}"
    problem = notify(
        "model-not-promoted",
        message,
        {"pipeline": pipeline, "challenger_version": version, "metrics": metrics},
        webhook_url,
    )
    return TrainingResult(pipeline, "kept", message, version, metrics, problem)


def training_due(last_training: datetime | None, every_hours: float | None, now: datetime) -> bool:
    """Whether a scheduled retraining is due: never when unscheduled, at once when never trained."""
    if every_hours is None:
        return False
    return last_training is None or now - last_training >= timedelta(hours=every_hours)


def train_all(
    catalog: Catalog, home: Path, table: PriceTable, webhook_url: str | None = None, pipeline: str | None = None
) -> list[TrainingResult]:
    """Train every pipeline with history (or just `pipeline`).

    On one OpenMP thread: the models are small, and scikit-learn's default of one thread per
    core spins against anything else running (a fit of 300 runs took 156 s instead of 2.2 s
    on a busy 2-core machine: benchmarks/README.md, REST API section).
    """
    from threadpoolctl import threadpool_limits

    pipelines = [pipeline] if pipeline else catalog.pipelines_with_history()
    with threadpool_limits(limits=1, user_api="openmp"):
        return [train(catalog, name, home, table, webhook_url) for name in pipelines]
