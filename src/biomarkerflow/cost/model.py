"""Per-workflow cost models: a run's duration, CPU time and peak memory from its inputs.

What a model sees of a run: input bytes, output bytes, recording duration and sample
rate (when every training run has them; a query without them gets the training
runs' median per input byte), and the device (file type). Everything is modelled in
log space, where SKDH's costs are close to power laws of the recording's size.

Two kinds compete inside each training, per quantity, on out-of-fold error: a
regularised log-log linear fit, and (with 30 or more runs) gradient-boosted trees.
The 80% interval is conformal: the 10th and 90th percentiles of the out-of-fold
log-errors, added to the prediction. Cost is not modelled on its own: it is the price
table applied to the predicted usage, so a new price table needs no retraining.

Two baselines keep the models honest: the training runs' median, and a straight
line on input size. `evaluate` scores all three on the same held-out runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.prices import PriceTable, Usage, charge

QUANTITIES = ("wall_seconds", "cpu_seconds", "peak_rss_bytes")
REPORTED = ("cost", "wall_seconds", "peak_rss_bytes")  # what estimates and metrics show
MIN_RUNS = 5
INTERVAL = 0.80
TEST_FRACTION = 0.2
MIN_RUNS_FOR_TREES = 30


@dataclass(frozen=True)
class RunInputs:
    """What is known about a run before it runs."""

    input_bytes: int
    output_bytes: int | None = None
    recording_seconds: float | None = None
    sample_rate_hz: float | None = None
    device: str | None = None

    @classmethod
    def of(cls, observation: Observation) -> RunInputs:
        return cls(
            input_bytes=observation.input_bytes,
            output_bytes=observation.output_bytes or None,
            recording_seconds=observation.recording_seconds,
            sample_rate_hz=observation.sample_rate_hz,
            device=observation.device,
        )


@dataclass(frozen=True)
class Prediction:
    """Point estimate and 80% interval (low, point, high) per quantity, cost included."""

    values: dict[str, tuple[float, float, float]]
    extrapolating: bool = False
    basis: str = "model"

    def point(self, quantity: str) -> float:
        return self.values[quantity][1]


class Predictor(Protocol):
    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]: ...


def actual_cost(observation: Observation, table: PriceTable) -> float:
    """What the observed run costs under `table` (the same arithmetic as a real run's charge)."""
    usage = Usage(observation.wall_seconds, observation.cpu_seconds, observation.peak_rss_bytes)
    return charge(usage, table, table_name="").amount


def _with_cost(
    usage: dict[str, tuple[float, float, float]], table: PriceTable
) -> dict[str, tuple[float, float, float]]:
    costs = tuple(
        charge(
            Usage(usage["wall_seconds"][i], usage["cpu_seconds"][i], int(usage["peak_rss_bytes"][i])),
            table,
            table_name="",
        ).amount
        for i in range(3)
    )
    return {**usage, "cost": (costs[0], costs[1], costs[2])}


# ---- features ----------------------------------------------------------------------------------


def _median_ratio(pairs: list[tuple[float, float]]) -> float | None:
    ratios = [a / b for a, b in pairs if a and b]
    return statistics.median(ratios) if ratios else None


@dataclass
class Features:
    """How inputs become a matrix; fitted on the training runs and stored with the model."""

    devices: list[str]
    output_per_byte: float | None
    seconds_per_byte: float | None
    sample_rate: float | None
    input_range: tuple[int, int]

    @classmethod
    def fit(cls, runs: Sequence[Observation]) -> Features:
        # A column is used only if every training run has it: a model cannot learn from
        # a value it has seen only sometimes.
        def known(name: str) -> bool:
            return all(getattr(o, name) for o in runs)

        sample_rates = [o.sample_rate_hz or 0.0 for o in runs]
        return cls(
            devices=sorted({o.device for o in runs if o.device}),
            output_per_byte=_median_ratio([(o.output_bytes, o.input_bytes) for o in runs])
            if known("output_bytes")
            else None,
            seconds_per_byte=_median_ratio([(o.recording_seconds or 0.0, o.input_bytes) for o in runs])
            if known("recording_seconds")
            else None,
            sample_rate=statistics.median(sample_rates) if known("sample_rate_hz") else None,
            input_range=(min(o.input_bytes for o in runs), max(o.input_bytes for o in runs)),
        )

    def row(self, item: RunInputs) -> list[float]:
        size = max(item.input_bytes, 1)
        columns = [math.log(size)]
        if self.output_per_byte is not None:
            columns.append(math.log(max(item.output_bytes or size * self.output_per_byte, 1.0)))
        if self.seconds_per_byte is not None:
            columns.append(math.log(max(item.recording_seconds or size * self.seconds_per_byte, 1.0)))
        if self.sample_rate is not None:
            columns.append(math.log(max(item.sample_rate_hz or self.sample_rate, 1e-3)))
        if len(self.devices) > 1:
            columns += [1.0 if item.device == device else 0.0 for device in self.devices]
        return columns

    def matrix(self, items: Sequence[RunInputs]) -> np.ndarray:
        return np.array([self.row(item) for item in items], dtype=float)

    def outside(self, item: RunInputs) -> bool:
        low, high = self.input_range
        return not low <= item.input_bytes <= high or (bool(item.device) and item.device not in self.devices)


# ---- the model ------------------------------------------------------------------------------------


def _candidates(runs: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kinds: dict[str, Any] = {"loglinear": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 2, 13)))}
    if runs >= MIN_RUNS_FOR_TREES:
        kinds["boosted-trees"] = HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, min_samples_leaf=max(3, runs // 15), random_state=0
        )
    return kinds


def _out_of_fold(estimator: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=0)
    predicted = np.empty_like(y)
    for train, held in folds.split(x):
        predicted[held] = clone(estimator).fit(x[train], y[train]).predict(x[held])
    return predicted


@dataclass
class QuantityModel:
    kind: str
    estimator: Any
    low_offset: float  # log-space: prediction x exp(offset) is the interval's end
    high_offset: float
    oof_error: float  # median |log error| out of fold, what chose this kind


def _fit_quantity(x: np.ndarray, y: np.ndarray) -> QuantityModel:
    best: QuantityModel | None = None
    for kind, estimator in _candidates(len(y)).items():
        residuals = y - _out_of_fold(estimator, x, y)
        error = float(np.median(np.abs(residuals)))
        if best is None or error < best.oof_error:
            # Finite-sample conformal levels: a bit wider than the plain 10th/90th percentiles.
            n = len(residuals)
            tail = (1 - INTERVAL) / 2
            low_level = max(0.0, math.floor(tail * (n + 1)) / n)
            high_level = min(1.0, math.ceil((1 - tail) * (n + 1)) / n)
            best = QuantityModel(
                kind=kind,
                estimator=estimator.fit(x, y),
                low_offset=float(np.quantile(residuals, low_level)),
                high_offset=float(np.quantile(residuals, high_level)),
                oof_error=error,
            )
    assert best is not None
    return best


@dataclass
class CostModel:
    """A trained model of one workflow: what gets pickled into the model file."""

    workflow: str
    features: Features
    quantities: dict[str, QuantityModel]
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    library_versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fit(cls, workflow: str, runs: Sequence[Observation]) -> CostModel:
        import sklearn

        if len(runs) < MIN_RUNS:
            raise ValueError(f"{len(runs)} past run(s) of {workflow}; a model needs at least {MIN_RUNS}")
        features = Features.fit(runs)
        x = features.matrix([RunInputs.of(o) for o in runs])
        quantities = {
            name: _fit_quantity(x, np.log(np.array([max(float(getattr(o, name)), 1e-3) for o in runs])))
            for name in QUANTITIES
        }
        return cls(
            workflow=workflow,
            features=features,
            quantities=quantities,
            trained_from=min(o.started_at for o in runs),
            trained_to=max(o.started_at for o in runs),
            train_runs=len(runs),
            library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        )

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        x = self.features.matrix(inputs)
        logs = {name: model.estimator.predict(x) for name, model in self.quantities.items()}
        out: list[Prediction] = []
        for i, item in enumerate(inputs):
            usage = {}
            for name, model in self.quantities.items():
                point = float(logs[name][i])
                usage[name] = (
                    math.exp(point + model.low_offset),
                    math.exp(point),
                    math.exp(point + model.high_offset),
                )
            out.append(Prediction(_with_cost(usage, table), extrapolating=self.features.outside(item)))
        return out

    def describe(self) -> str:
        kinds = sorted({m.kind for m in self.quantities.values()})
        return f"{'/'.join(kinds)} on {self.train_runs} runs"


# ---- baselines --------------------------------------------------------------------------------------


@dataclass
class MedianBaseline:
    """Every run costs what the median training run cost."""

    medians: dict[str, float]

    @classmethod
    def fit(cls, runs: Sequence[Observation]) -> MedianBaseline:
        return cls({name: statistics.median(float(getattr(o, name)) for o in runs) for name in QUANTITIES})

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        usage = {name: (value, value, value) for name, value in self.medians.items()}
        return [Prediction(_with_cost(usage, table), basis="median of past runs") for _ in inputs]


@dataclass
class SizeLineBaseline:
    """A straight line through (input bytes, quantity) of the training runs."""

    lines: dict[str, tuple[float, float]]  # slope, intercept
    floors: dict[str, float]

    @classmethod
    def fit(cls, runs: Sequence[Observation]) -> SizeLineBaseline:
        sizes = np.array([o.input_bytes for o in runs], dtype=float)
        lines: dict[str, tuple[float, float]] = {}
        floors: dict[str, float] = {}
        for name in QUANTITIES:
            values = np.array([float(getattr(o, name)) for o in runs])
            if np.ptp(sizes) > 0:
                slope, intercept = np.polyfit(sizes, values, 1)
            else:
                slope, intercept = 0.0, float(values.mean())
            lines[name] = (float(slope), float(intercept))
            floors[name] = float(values.min()) * 0.5  # a line can go below zero; a run cannot
        return cls(lines, floors)

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        out = []
        for item in inputs:
            usage = {}
            for name, (slope, intercept) in self.lines.items():
                value = max(slope * item.input_bytes + intercept, self.floors[name], 1e-3)
                usage[name] = (value, value, value)
            out.append(Prediction(_with_cost(usage, table), basis="line on input size"))
        return out


# ---- evaluation -------------------------------------------------------------------------------------


def time_split(
    runs: Sequence[Observation], test_fraction: float = TEST_FRACTION
) -> tuple[list[Observation], list[Observation]]:
    """Oldest runs to train on, newest to test on (at least one of each)."""
    ordered = sorted(runs, key=lambda o: o.started_at)
    held = max(1, round(len(ordered) * test_fraction))
    return ordered[:-held], ordered[-held:]


def _actual(observation: Observation, quantity: str, table: PriceTable) -> float:
    return actual_cost(observation, table) if quantity == "cost" else float(getattr(observation, quantity))


def evaluate(predictor: Predictor, runs: Sequence[Observation], table: PriceTable) -> dict[str, dict[str, float]]:
    """Median and 90th-percentile relative error, and 80%-interval coverage, per reported quantity."""
    predictions = predictor.predict([RunInputs.of(o) for o in runs], table)
    metrics: dict[str, dict[str, float]] = {}
    for quantity in REPORTED:
        errors, covered = [], []
        for observation, prediction in zip(runs, predictions, strict=True):
            actual = _actual(observation, quantity, table)
            low, point, high = prediction.values[quantity]
            errors.append(abs(point - actual) / actual if actual > 0 else 0.0)
            covered.append(low <= actual <= high)
        metrics[quantity] = {
            "median_relative_error": float(np.median(errors)),
            "p90_relative_error": float(np.quantile(errors, 0.9)),
            "coverage": float(np.mean(covered)),
        }
    return metrics


@dataclass(frozen=True)
class Assessment:
    """A model and both baselines on the same held-out runs."""

    model: dict[str, dict[str, float]]
    median_baseline: dict[str, dict[str, float]]
    size_line_baseline: dict[str, dict[str, float]]
    test_runs: int

    @property
    def beats_baselines(self) -> bool:
        """Lower median relative error than both baselines, for cost and for duration."""
        return all(
            self.model[q]["median_relative_error"]
            < min(self.median_baseline[q]["median_relative_error"], self.size_line_baseline[q]["median_relative_error"])
            for q in ("cost", "wall_seconds")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "median_baseline": self.median_baseline,
            "size_line_baseline": self.size_line_baseline,
            "test_runs": self.test_runs,
            "beats_baselines": self.beats_baselines,
        }


def assess(
    model: Predictor, train: Sequence[Observation], test: Sequence[Observation], table: PriceTable
) -> Assessment:
    return Assessment(
        model=evaluate(model, test, table),
        median_baseline=evaluate(MedianBaseline.fit(train), test, table),
        size_line_baseline=evaluate(SizeLineBaseline.fit(train), test, table),
        test_runs=len(test),
    )
