"""Per-pipeline cost models: a run's duration, CPU time and peak memory from its inputs.

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

The pickled classes (CostModel and what it holds) live here, where model files look for
them; a run's inputs and predictions are in cost/inputs.py, out-of-fold predictions and
the conformal interval in cost/conformal.py, baselines and evaluation in cost/evaluation.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from biomarkerflow.cost.conformal import INTERVAL, interval_offsets, out_of_fold
from biomarkerflow.cost.evaluation import (
    TEST_FRACTION,
    Assessment,
    MedianBaseline,
    SizeLineBaseline,
    assess,
    evaluate,
    score,
    time_split,
)
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.inputs import QUANTITIES, REPORTED, Prediction, Predictor, RunInputs, actual_cost
from biomarkerflow.cost.prices import PriceTable, Usage, charge

__all__ = [  # the names other code imports from here, wherever they are defined
    "FEATURE_SETS",
    "INTERVAL",
    "MIN_RUNS",
    "MIN_RUNS_FOR_TREES",
    "MODEL_FORMAT",
    "OPTIONAL",
    "QUANTITIES",
    "REPORTED",
    "TEST_FRACTION",
    "TREES",
    "Affine",
    "Assessment",
    "CostModel",
    "Features",
    "MedianBaseline",
    "Prediction",
    "Predictor",
    "QuantityModel",
    "RunInputs",
    "SizeLineBaseline",
    "UsageModel",
    "actual_cost",
    "assess",
    "evaluate",
    "score",
    "time_split",
]

MIN_RUNS = 5
MIN_RUNS_FOR_TREES = 30
TREES = "boosted-trees"
MODEL_FORMAT = 3  # of the pickled CostModel; files of another format are not used


# ---- features ----------------------------------------------------------------------------------


HEADER_FEATURES = ("recording_seconds", "sample_rate_hz", "uncompressed_bytes")
OPTIONAL = ("output_bytes", *HEADER_FEATURES)
# What different askers know: after a run everything; `estimate --study` the size and what
# the header says; a file of a format whose header says nothing, its size alone.
FEATURE_SETS = (OPTIONAL, HEADER_FEATURES, ())


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
                for name in ("input_bytes", *HEADER_FEATURES)
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


def _fit_quantity(x: np.ndarray, y: np.ndarray, logged: Sequence[str]) -> tuple[QuantityModel, np.ndarray]:
    """The best kind for one quantity (logs in, logs out), and its out-of-fold predictions."""
    tried: list[tuple[float, str, Any, np.ndarray]] = []
    for kind, estimator in _candidates(len(y), logged).items():
        predicted = out_of_fold(estimator, x, y)
        tried.append((float(np.median(np.abs(y - predicted))), kind, estimator, predicted))

    def fitted(choice: tuple[float, str, Any, np.ndarray]) -> QuantityModel:
        error, kind, estimator, predicted = choice
        low, high = interval_offsets(y - predicted)
        return QuantityModel(kind, estimator.fit(x, y), low_offset=low, high_offset=high, oof_error=error)

    best = min(tried, key=lambda t: t[0])  # the first listed wins a tie
    model = fitted(best)
    if best[1] == TREES:
        model.beyond_range = fitted(min((t for t in tried if t[1] != TREES), key=lambda t: t[0]))
    return model, best[3]


def _usage(values: np.ndarray) -> Usage:
    """A (wall, cpu, peak) row as metered usage."""
    return Usage(float(values[0]), float(values[1]), int(values[2]))


_PRICED = "_offsets_by_table"  # not pickled: prices change, the model does not


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
        """The cost interval's offsets under `table`; priced once per table (each training run
        is charged twice: 0.7 s for 78k runs, too slow to repeat per estimate)."""
        priced: dict[PriceTable, tuple[float, float]] = self.__dict__.setdefault(_PRICED, {})
        if table not in priced:
            priced[table] = self._price_offsets(table)
        return priced[table]

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != _PRICED}

    def _price_offsets(self, table: PriceTable) -> tuple[float, float]:
        residuals = [
            math.log(charge(_usage(a), table, table_name="").amount / charge(_usage(p), table, table_name="").amount)
            for a, p in zip(self.actual, self.out_of_fold, strict=True)
        ]
        return interval_offsets(np.array(residuals))

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
    """A trained model of one pipeline: what gets pickled into the model file.

    One usage model per feature set the training runs allow, most informed first; a
    query is answered by the first whose inputs it has all (see FEATURE_SETS)."""

    pipeline: str
    usage_models: list[UsageModel]
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    library_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = MODEL_FORMAT

    @classmethod
    def fit(cls, pipeline: str, runs: Sequence[Observation]) -> CostModel:
        import sklearn

        if len(runs) < MIN_RUNS:
            raise ValueError(f"{len(runs)} past run(s) of {pipeline}; a model needs at least {MIN_RUNS}")
        feature_sets: list[Features] = []
        for wanted in FEATURE_SETS:
            features = Features.fit(runs, wanted)
            if all(features.columns != f.columns for f in feature_sets):
                feature_sets.append(features)
        return cls(
            pipeline=pipeline,
            usage_models=[UsageModel.fit(runs, features) for features in feature_sets],
            trained_from=min(o.started_at for o in runs),
            trained_to=max(o.started_at for o in runs),
            train_runs=len(runs),
            library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Model files written before the pipeline had its own name hold it as `workflow`.
        if "workflow" in state and "pipeline" not in state:
            state = {("pipeline" if key == "workflow" else key): value for key, value in state.items()}
        self.__dict__.update(state)

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
