"""Per-workflow cost models: a run's duration, CPU time and peak memory from its inputs.

What a model sees of a run: input bytes, output bytes, recording duration and sample
rate (where every training run has them), and the device (file type). One model is
fitted per set of inputs an asker may know (FEATURE_SETS: after the run, before it with
the file's header, the size alone); a query is answered by the most informed one whose
inputs it has. Everything is modelled in log space, where SKDH's costs are close to
power laws of the recording's size.

Kinds compete inside each training, per quantity, on out-of-fold error: a regularised
log-log linear fit (power laws), an affine fit (a fixed part plus parts proportional to
bytes and samples: start-up plus work per sample), the same on input bytes alone (fewer
parameters, for quantities that follow the file size and little else, such as the
memory of loading it), and, with 30 or more runs, gradient-boosted trees. Trees cannot
predict beyond the largest run they saw, so where they win, the best other kind answers
for inputs outside the training range (and the prediction says it is extrapolating).

The 80% interval is split-conformal: the out-of-fold log-errors' 10th and 90th
percentiles at the finite-sample levels, added to the prediction. Cost is not modelled
on its own: it is the price table applied to the predicted usage, so a new price table
needs no retraining.

Two baselines keep the models honest: the training runs' median, and a straight
line on input size. `evaluate` scores all three on the same held-out runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.prices import PriceTable, Usage, charge
from biomarkerflow.plugins.contract import RECORDING_SECONDS, SAMPLE_RATE_HZ

QUANTITIES = ("wall_seconds", "cpu_seconds", "peak_rss_bytes")
REPORTED = ("cost", "wall_seconds", "peak_rss_bytes")  # what estimates and metrics show
MIN_RUNS = 5
INTERVAL = 0.80
TEST_FRACTION = 0.2
MIN_RUNS_FOR_TREES = 30
TREES = "boosted-trees"
MODEL_FORMAT = 3  # of the pickled CostModel; files of another format are not used


def _number(value: Any) -> float | None:
    """A fact as a feature: a finite number, else None (a type's fact may be anything JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class RunInputs:
    """What is known about a run before it runs."""

    input_bytes: int
    output_bytes: int | None = None
    recording_seconds: float | None = None
    sample_rate_hz: float | None = None
    device: str | None = None

    @classmethod
    def of_facts(cls, *, input_bytes: int, device: str | None, facts: Mapping[str, Any]) -> RunInputs:
        """Inputs from a workflow type's facts about a file; the ones named as cost features are used."""
        return cls(
            input_bytes=input_bytes,
            device=device,
            recording_seconds=_number(facts.get(RECORDING_SECONDS)),
            sample_rate_hz=_number(facts.get(SAMPLE_RATE_HZ)),
        )

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


OPTIONAL = ("output_bytes", "recording_seconds", "sample_rate_hz")
# What different askers know: after a run everything; `estimate --study` the size and what
# the header says; a file of a format whose header says nothing, its size alone.
FEATURE_SETS = (OPTIONAL, ("recording_seconds", "sample_rate_hz"), ())


@dataclass
class Features:
    """How inputs become a matrix; fitted on the training runs and stored with the model."""

    columns: list[str]  # log columns, in order (device indicators follow them)
    devices: list[str]
    ranges: dict[str, tuple[float, float]]  # of the training runs: beyond them is extrapolation

    @classmethod
    def fit(cls, runs: Sequence[Observation], wanted: Sequence[str]) -> Features:
        # A column is used only if every training run has it: a model cannot learn from
        # a value it has seen only sometimes.
        return cls(
            columns=["input_bytes"] + [name for name in wanted if all(getattr(o, name) for o in runs)],
            devices=sorted({o.device for o in runs if o.device}),
            ranges={
                name: (min(values), max(values))
                for name in ("input_bytes", "recording_seconds", "sample_rate_hz")
                if (values := [float(getattr(o, name)) for o in runs if getattr(o, name)])
            },
        )

    def knows(self, item: RunInputs) -> bool:
        """Whether `item` has every column this feature set uses."""
        return all(getattr(item, name) for name in self.columns)

    def row(self, item: RunInputs) -> list[float]:
        columns = [math.log(max(float(getattr(item, name)), 1e-3)) for name in self.columns]
        if len(self.devices) > 1:
            columns += [1.0 if item.device == device else 0.0 for device in self.devices]
        return columns

    def matrix(self, items: Sequence[RunInputs]) -> np.ndarray:
        return np.array([self.row(item) for item in items], dtype=float)

    def outside(self, item: RunInputs) -> bool:
        for name, (low, high) in self.ranges.items():
            value = getattr(item, name)
            if value is not None and not low <= value <= high:
                return True
        # A history without devices (imported from elsewhere) cannot tell a new device from an old one.
        return bool(item.device and self.devices) and item.device not in self.devices


# ---- the model ------------------------------------------------------------------------------------


class Affine:
    """quantity = a fixed part + non-negative parts proportional to bytes, samples (rate x
    length, when known) and output: how a job that loads its file and then walks it costs.
    With `size_only`, the input bytes alone: the size line's form, fitted for the relative
    error the models are judged by. Fitted for relative error; takes and gives logs, like
    the other kinds."""

    def __init__(self, logged: Sequence[str], size_only: bool = False) -> None:
        self.logged = logged  # as given: sklearn's clone checks the parameter is kept as is
        self.size_only = size_only

    def _raw(self, x: np.ndarray) -> np.ndarray:
        logged = list(self.logged)
        used = 1 if self.size_only else len(logged)  # input bytes come first
        columns = [np.exp(x[:, :used]), x[:, len(logged) :]]  # device indicators stay as they are
        if not self.size_only and "recording_seconds" in logged and "sample_rate_hz" in logged:
            samples = x[:, logged.index("recording_seconds")] + x[:, logged.index("sample_rate_hz")]
            columns.append(np.exp(samples)[:, None])
        return np.hstack(columns)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Affine:
        from sklearn.linear_model import LinearRegression

        raw = self._raw(x)
        self.scale_ = np.where(raw.max(axis=0) > 0, raw.max(axis=0), 1.0)
        target = np.exp(y)
        self.linear_ = LinearRegression(positive=True).fit(raw / self.scale_, target, sample_weight=target**-2.0)
        self.floor_ = float(target.min()) / 2
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        predicted = self.linear_.predict(self._raw(x) / self.scale_)
        return np.log(np.maximum(predicted, self.floor_))

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # for sklearn's clone
        return {"logged": self.logged, "size_only": self.size_only}

    def set_params(self, **params: Any) -> Affine:
        self.logged = params.get("logged", self.logged)
        self.size_only = params.get("size_only", self.size_only)
        return self


def _candidates(runs: int, logged: Sequence[str]) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kinds: dict[str, Any] = {
        "loglinear": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 2, 13))),
        "affine": Affine(logged),
        "affine-size": Affine(logged, size_only=True),
    }
    if runs >= MIN_RUNS_FOR_TREES:
        kinds[TREES] = HistGradientBoostingRegressor(
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
    # Trees predict a constant beyond the largest run they saw, so a file three times larger
    # would get the same duration and memory. Where trees won, the best kind that follows
    # the trend answers queries outside the training range.
    beyond_range: QuantityModel | None = None

    def for_item(self, outside: bool) -> QuantityModel:
        return self.beyond_range if outside and self.beyond_range is not None else self


def _interval_offsets(residuals: np.ndarray) -> tuple[float, float]:
    """The log-space ends of the 80% interval around a prediction, from held-out residuals."""
    # Finite-sample conformal levels: a bit wider than the plain 10th/90th percentiles.
    n = len(residuals)
    tail = (1 - INTERVAL) / 2
    low_level = max(0.0, math.floor(tail * (n + 1)) / n)
    high_level = min(1.0, math.ceil((1 - tail) * (n + 1)) / n)
    return float(np.quantile(residuals, low_level)), float(np.quantile(residuals, high_level))


def _fit_quantity(x: np.ndarray, y: np.ndarray, logged: Sequence[str]) -> tuple[QuantityModel, np.ndarray]:
    """The best kind for one quantity (logs in, logs out), and its out-of-fold predictions."""
    tried: list[tuple[float, str, Any, np.ndarray]] = []
    for kind, estimator in _candidates(len(y), logged).items():
        predicted = _out_of_fold(estimator, x, y)
        tried.append((float(np.median(np.abs(y - predicted))), kind, estimator, predicted))

    def fitted(choice: tuple[float, str, Any, np.ndarray]) -> QuantityModel:
        error, kind, estimator, predicted = choice
        low, high = _interval_offsets(y - predicted)
        return QuantityModel(kind, estimator.fit(x, y), low_offset=low, high_offset=high, oof_error=error)

    best = min(tried, key=lambda t: t[0])  # the first listed wins a tie
    model = fitted(best)
    if best[1] == TREES:
        model.beyond_range = fitted(min((t for t in tried if t[1] != TREES), key=lambda t: t[0]))
    return model, best[3]


def _usage(values: np.ndarray) -> Usage:
    """A (wall, cpu, peak) row as metered usage."""
    return Usage(float(values[0]), float(values[1]), int(values[2]))


@dataclass
class UsageModel:
    """The quantities' models on one feature set, and what calibrates the cost interval: the
    training runs' actual usage next to their out-of-fold predicted usage. A cost interval
    depends on the price table, so it is calibrated when asked, under the table asked for."""

    features: Features
    quantities: dict[str, QuantityModel]
    actual: np.ndarray  # runs x (wall, cpu, peak)
    out_of_fold: np.ndarray  # the same, as predicted without seeing the run

    @classmethod
    def fit(cls, runs: Sequence[Observation], features: Features) -> UsageModel:
        x = features.matrix([RunInputs.of(o) for o in runs])
        actual = np.array([[max(float(getattr(o, name)), 1e-3) for name in QUANTITIES] for o in runs])
        quantities, predicted = {}, []
        for i, name in enumerate(QUANTITIES):
            quantities[name], oof = _fit_quantity(x, np.log(actual[:, i]), features.columns)
            predicted.append(np.exp(oof))
        return cls(features, quantities, actual, np.column_stack(predicted))

    def cost_offsets(self, table: PriceTable) -> tuple[float, float]:
        residuals = [
            math.log(charge(_usage(a), table, table_name="").amount / charge(_usage(p), table, table_name="").amount)
            for a, p in zip(self.actual, self.out_of_fold, strict=True)
        ]
        return _interval_offsets(np.array(residuals))

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        x = self.features.matrix(inputs)
        outside = [self.features.outside(item) for item in inputs]
        logs: dict[int, np.ndarray] = {}  # by model: each predicts every row in one call, not one per file
        for quantity in self.quantities.values():
            for model in (quantity, quantity.beyond_range):
                if model is not None:
                    logs[id(model)] = model.estimator.predict(x)
        low, high = self.cost_offsets(table)
        out: list[Prediction] = []
        for i in range(len(inputs)):
            values: dict[str, tuple[float, float, float]] = {}
            for name, quantity in self.quantities.items():
                model = quantity.for_item(outside[i])
                point = float(logs[id(model)][i])
                values[name] = (
                    math.exp(point + model.low_offset),
                    math.exp(point),
                    math.exp(point + model.high_offset),
                )
            point_usage = np.array([values[name][1] for name in QUANTITIES])
            cost = charge(_usage(point_usage), table, table_name="").amount
            values["cost"] = (cost * math.exp(low), cost, cost * math.exp(high))
            out.append(Prediction(values, extrapolating=outside[i]))
        return out


@dataclass
class CostModel:
    """A trained model of one workflow: what gets pickled into the model file.

    One usage model per feature set the training runs allow, most informed first; a
    query is answered by the first whose inputs it has all (see FEATURE_SETS)."""

    workflow: str
    usage_models: list[UsageModel]
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    library_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = MODEL_FORMAT

    @classmethod
    def fit(cls, workflow: str, runs: Sequence[Observation]) -> CostModel:
        import sklearn

        if len(runs) < MIN_RUNS:
            raise ValueError(f"{len(runs)} past run(s) of {workflow}; a model needs at least {MIN_RUNS}")
        feature_sets: list[Features] = []
        for wanted in FEATURE_SETS:
            features = Features.fit(runs, wanted)
            if all(features.columns != f.columns for f in feature_sets):
                feature_sets.append(features)
        return cls(
            workflow=workflow,
            usage_models=[UsageModel.fit(runs, features) for features in feature_sets],
            trained_from=min(o.started_at for o in runs),
            trained_to=max(o.started_at for o in runs),
            train_runs=len(runs),
            library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        )

    def _answering(self, item: RunInputs) -> int:
        fallback = len(self.usage_models) - 1  # size and device only
        return next((i for i, m in enumerate(self.usage_models) if m.features.knows(item)), fallback)

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(inputs)
        chosen = [self._answering(item) for item in inputs]
        for index, usage_model in enumerate(self.usage_models):
            positions = [i for i, c in enumerate(chosen) if c == index]
            if positions:
                predicted = usage_model.predict([inputs[i] for i in positions], table)
                for position, prediction in zip(positions, predicted, strict=True):
                    out[position] = prediction
        return [p for p in out if p is not None]

    def describe(self) -> str:
        kinds = sorted({m.kind for m in self.usage_models[0].quantities.values()})
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
    return score(runs, predictor.predict([RunInputs.of(o) for o in runs], table), table)


def score(
    runs: Sequence[Observation], predictions: Sequence[Prediction], table: PriceTable
) -> dict[str, dict[str, float]]:
    """The metrics of `evaluate` for predictions already made, one per run."""
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
