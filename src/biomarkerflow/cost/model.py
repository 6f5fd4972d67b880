"""Per-pipeline cost models: a run's duration, CPU time and peak memory from its inputs.

What a model sees of a run: input bytes, output bytes, recording duration and sample
rate (where every training run has them), the device (file type), and the machine (cores,
memory, CPU model) where runs were made on more than one. One model is fitted per set of
inputs an asker may know (FEATURE_SETS: after the run, before it with the file's header,
the size alone); a query is answered by the most informed one whose inputs it has.

Per quantity, the kinds of cost/kinds.py compete on out-of-fold error (each run predicted
by a fit that did not see it), the two baselines (a straight line on size, the median of
past runs) among them: the best answers, whichever it is. Kinds that cannot follow a
trend (trees, the median) hand inputs outside the training range to the best kind that
can, and such a prediction says it is extrapolating.

The 80% interval is split-conformal: the out-of-fold log-errors' 10th and 90th
percentiles at the finite-sample levels, added to the prediction. Beyond the training
range it widens with the distance (in log units) from the range, at a rate measured when
training: the best trend-following kind fitted on the smaller runs, asked for the larger.
Cost is not modelled on its own: it is the price table applied to the predicted usage,
so a new price table needs no retraining.

The pickled classes (CostModel and what it holds) live here, where model files look for
them; the kinds are in cost/kinds.py, a run's inputs and predictions in cost/inputs.py,
out-of-fold predictions and the conformal interval in cost/conformal.py, held-out
evaluation in cost/evaluation.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from biomarkerflow.cost import kinds as predictor_kinds
from biomarkerflow.cost.conformal import INTERVAL, interval_offsets, out_of_fold
from biomarkerflow.cost.extrapolation import bounded, clamp_into
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.inputs import QUANTITIES, REPORTED, Prediction, Predictor, RunInputs, actual_cost
from biomarkerflow.cost.kinds import MIN_RUNS_FOR_TREES, TREES, Affine, follows_the_trend
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
    "TREES",
    "Affine",
    "CostModel",
    "Features",
    "Prediction",
    "Predictor",
    "QuantityModel",
    "RunInputs",
    "UsageModel",
    "actual_cost",
]

MIN_RUNS = 5
MODEL_FORMAT = 4  # of the pickled CostModel; files of another format are not used
# How far (in log units) an unknown device or CPU counts as being outside the training range.
UNKNOWN_CATEGORY_DISTANCE = math.log(2)
# The interval widens by at least this much (log units) per log unit beyond the range.
MIN_WIDENING = 0.1
DEFAULT_WIDENING = 1.0  # when the training runs are too alike in size to measure it


# ---- features ----------------------------------------------------------------------------------


HEADER_FEATURES = ("recording_seconds", "sample_rate_hz", "uncompressed_bytes")
OPTIONAL = ("output_bytes", *HEADER_FEATURES)
MACHINE_FEATURES = ("machine_cores", "machine_memory_bytes")
# What different askers know: after a run everything; `estimate --study` the size and what
# the header says; a file of a format whose header says nothing, its size alone.
FEATURE_SETS = (OPTIONAL, HEADER_FEATURES, ())


class FeatureSpace(Protocol):
    """How runs become a matrix: `Features` here, the pooled model's in cost/pooled.py."""

    columns: list[str]  # log columns the kinds are told of, input bytes first

    def knows(self, item: RunInputs) -> bool: ...

    def matrix(self, items: Sequence[RunInputs]) -> np.ndarray: ...

    def distance(self, item: RunInputs) -> float: ...

    def clamped(self, item: RunInputs) -> tuple[RunInputs, int]: ...


def _varies(runs: Sequence[Observation], name: str) -> bool:
    """Known for every run, and not the same for all: a column a model can learn from."""
    values = [getattr(o, name) for o in runs]
    return all(v is not None for v in values) and len(set(values)) > 1


@dataclass
class Features:
    """How inputs become a matrix; fitted on the training runs and stored with the model."""

    columns: list[str]  # log columns, in order (device and CPU indicators follow them)
    devices: list[str]
    ranges: dict[str, tuple[float, float]]  # of the training runs: beyond them is extrapolation
    cpus: list[str] = field(default_factory=list)
    # Queries that name no machine are asked for the one most training runs used.
    usual_machine: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, runs: Sequence[Observation], wanted: Sequence[str]) -> Features:
        # A column is used only if every training run has it: a model cannot learn from
        # a value it has seen only sometimes. Machine columns only where machines differ.
        machines = Counter((o.machine_cores, o.machine_memory_bytes, o.machine_cpu) for o in runs)
        usual = machines.most_common(1)[0][0]
        return cls(
            columns=["input_bytes"]
            + [name for name in wanted if all(getattr(o, name) for o in runs)]
            + [name for name in MACHINE_FEATURES if _varies(runs, name)],
            devices=sorted({o.device for o in runs if o.device}),
            ranges={
                name: (min(values), max(values))
                for name in ("input_bytes", *HEADER_FEATURES, *MACHINE_FEATURES)
                if (values := [float(getattr(o, name)) for o in runs if getattr(o, name)])
            },
            cpus=sorted({o.machine_cpu for o in runs if o.machine_cpu}) if _varies(runs, "machine_cpu") else [],
            usual_machine=dict(zip(("machine_cores", "machine_memory_bytes", "machine_cpu"), usual, strict=True)),
        )

    def _value(self, item: RunInputs, name: str) -> Any:
        value = getattr(item, name)
        return self.usual_machine.get(name) if value is None and name.startswith("machine_") else value

    def knows(self, item: RunInputs) -> bool:
        """Whether `item` has every column this feature set uses (the machine defaults to the usual one)."""
        return all(self._value(item, name) for name in self.columns)

    def row(self, item: RunInputs) -> list[float]:
        columns = [math.log(max(float(self._value(item, name)), 1e-3)) for name in self.columns]
        if len(self.devices) > 1:
            columns += [1.0 if item.device == device else 0.0 for device in self.devices]
        cpu = self._value(item, "machine_cpu")
        columns += [1.0 if cpu == known else 0.0 for known in self.cpus]
        return columns

    def matrix(self, items: Sequence[RunInputs]) -> np.ndarray:
        return np.array([self.row(item) for item in items], dtype=float)

    def distance(self, item: RunInputs) -> float:
        """How far outside the training runs `item` lies, in log units (0: inside)."""
        far = 0.0
        for name, (low, high) in self.ranges.items():
            value = self._value(item, name)
            if value is not None and value > 0 and low > 0 and not low <= value <= high:
                far = max(far, abs(math.log(value / (low if value < low else high))))
        # A history without devices (imported from elsewhere) cannot tell a new device from an old one.
        if item.device and self.devices and item.device not in self.devices:
            far = max(far, UNKNOWN_CATEGORY_DISTANCE)
        cpu = self._value(item, "machine_cpu")
        if cpu and self.cpus and cpu not in self.cpus:
            far = max(far, UNKNOWN_CATEGORY_DISTANCE)
        return far

    def outside(self, item: RunInputs) -> bool:
        return self.distance(item) > 0

    def clamped(self, item: RunInputs) -> tuple[RunInputs, int]:
        """`item` with every figure brought inside the training range, and which way it was
        outside: +1 larger than seen, -1 smaller (0: inside, or only a new device or CPU)."""
        return clamp_into(item, self.ranges)


# ---- the model ------------------------------------------------------------------------------------


@dataclass
class QuantityModel:
    kind: str
    estimator: Any
    low_offset: float  # log-space: prediction x exp(offset) is the interval's end
    high_offset: float
    oof_error: float  # median |log error| out of fold, what chose this kind
    # Trees and the median predict a constant beyond the largest run they saw, so a file
    # three times larger would get the same duration and memory; and of the kinds that follow
    # a trend, the best inside the range need not be the best beyond it. So the kind that
    # extrapolated best within the training runs (smaller 70% -> larger 30%) answers queries
    # outside the training range, when it is not this one.
    beyond_range: QuantityModel | None = None
    scores: dict[str, float] = field(default_factory=dict)  # every candidate's out-of-fold error
    widening: float = DEFAULT_WIDENING  # log width added per log unit beyond the training range

    def for_item(self, outside: bool) -> QuantityModel:
        return self.beyond_range if outside and self.beyond_range is not None else self

    def interval(
        self, point: float, distance: float = 0.0, edge: float | None = None, direction: int = 0
    ) -> tuple[float, float, float]:
        """(low, point, high) around a log prediction, wider the further outside the range;
        beyond it the interval also reaches back to the range's edge (`edge`, the prediction
        there): a file larger than any seen may cost no more than the largest did."""
        extra = self.widening * distance
        low, high = point + self.low_offset - extra, point + self.high_offset + extra
        if edge is not None and direction > 0:
            low = min(low, edge + self.low_offset)
        elif edge is not None and direction < 0:
            high = max(high, edge + self.high_offset)
        return _exp(low), _exp(point), _exp(high)


def _exp(log_value: float) -> float:
    # A power law asked far outside its range can predict beyond what a float holds.
    return math.exp(min(log_value, 700.0))


@dataclass(frozen=True)
class _Tried:
    error: float
    kind: str
    estimator: Any
    predicted: np.ndarray


@dataclass(frozen=True)
class Folds:
    """How out-of-fold errors are made: plain folds, or (`groups`) folds that keep each group
    whole, scored on the rows `scored` only (a pooled model is judged on pipelines it did
    not see and that have similar ones, as it will be used)."""

    groups: np.ndarray | None = None
    scored: np.ndarray | None = None  # boolean, per row

    def errors(self, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        errors = y - predicted
        return errors if self.scored is None or not self.scored.any() else errors[self.scored]


def _fit_quantity(
    x: np.ndarray, y: np.ndarray, logged: Sequence[str], kinds: Sequence[str], folds: Folds
) -> tuple[QuantityModel, np.ndarray]:
    """The best kind for one quantity (logs in, logs out), and its out-of-fold predictions."""
    tried: list[_Tried] = []
    for kind in kinds:
        estimator = predictor_kinds.make(kind, len(y), logged)
        predicted = out_of_fold(estimator, x, y, folds.groups)
        tried.append(_Tried(float(np.median(np.abs(folds.errors(y, predicted)))), kind, estimator, predicted))

    def fitted(choice: _Tried) -> QuantityModel:
        low, high = interval_offsets(folds.errors(y, choice.predicted))
        return QuantityModel(
            choice.kind, choice.estimator.fit(x, y), low_offset=low, high_offset=high, oof_error=choice.error
        )

    best = min(tried, key=lambda t: t.error)  # the first listed wins a tie
    model = fitted(best)
    model.scores = {t.kind: t.error for t in tried}
    # Beyond the range answers the kind that extrapolated best within the training runs.
    trend = [t for t in tried if follows_the_trend(t.kind)] or [best]
    checks = {t.kind: _extrapolation_check(t.kind, x, y, logged) for t in trend}

    def extrapolated(t: _Tried) -> float:
        check = checks[t.kind]
        return t.error if check is None else float(np.median(np.abs(check[0])))

    beyond_choice = min(trend, key=extrapolated)
    if beyond_choice.kind != best.kind:
        model.beyond_range = fitted(beyond_choice)
    beyond = model.for_item(True)
    check = checks.get(beyond.kind)
    beyond.widening = model.widening = _widening(beyond, *check) if check is not None else DEFAULT_WIDENING
    return model, best.predicted


def _extrapolation_check(
    kind: str, x: np.ndarray, y: np.ndarray, logged: Sequence[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """How `kind` does beyond the sizes it saw: fitted on the smaller 70% of the runs and asked
    for the larger; (log errors, log distances beyond) of those clearly beyond, or None when
    the runs are too alike in size to tell."""
    order = np.argsort(x[:, 0])
    cut = max(MIN_RUNS, int(len(y) * 0.7))
    small, large = order[:cut], order[cut:]
    beyond = x[large, 0] - x[small, 0].max()
    far = beyond > 0.05
    if far.sum() < 2:
        return None
    estimator = predictor_kinds.make(kind, len(small), logged).fit(x[small], y[small])
    return (y[large] - estimator.predict(x[large]))[far], beyond[far]


def _widening(model: QuantityModel, errors: np.ndarray, beyond: np.ndarray) -> float:
    """How fast errors grow beyond the largest input seen: the excess of each error of the
    extrapolation check over the interval, per log unit beyond, its 80th percentile."""
    excess = np.where(errors > 0, errors - model.high_offset, model.low_offset - errors)
    rates = np.maximum(excess, 0.0) / beyond
    return float(np.clip(np.quantile(rates, 0.8), MIN_WIDENING, 3.0))


def _usage(values: np.ndarray) -> Usage:
    """A (wall, cpu, peak) row as metered usage."""
    return Usage(float(values[0]), float(values[1]), int(values[2]))


_PRICED = "_offsets_by_table"  # not pickled: prices change, the model does not


@dataclass
class UsageModel:
    """The quantities' models on one feature set, and what calibrates the cost interval: the
    training runs' actual usage next to their out-of-fold predicted usage. A cost interval
    depends on the price table, so it is calibrated when asked, under the table asked for."""

    features: FeatureSpace
    quantities: dict[str, QuantityModel]
    actual: np.ndarray  # runs x (wall, cpu, peak)
    out_of_fold: np.ndarray  # the same, as predicted without seeing the run

    @classmethod
    def fit(
        cls,
        runs: Sequence[Observation],
        features: FeatureSpace,
        kinds: Sequence[str],
        folds: Folds | None = None,
    ) -> UsageModel:
        folds = folds or Folds()
        x = features.matrix([RunInputs.of(o) for o in runs])
        actual = np.array([[max(float(getattr(o, name)), 1e-3) for name in QUANTITIES] for o in runs])
        quantities, predicted = {}, []
        for i, name in enumerate(QUANTITIES):
            quantities[name], oof = _fit_quantity(x, np.log(actual[:, i]), features.columns, kinds, folds)
            predicted.append(np.exp(oof))
        scored = folds.scored if folds.scored is not None and folds.scored.any() else slice(None)
        return cls(features, quantities, actual[scored], np.column_stack(predicted)[scored])

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
        amounts = [
            (charge(_usage(a), table, table_name="").amount, charge(_usage(p), table, table_name="").amount)
            for a, p in zip(self.actual, self.out_of_fold, strict=True)
        ]
        # A table that charges nothing (on-premises before its prices are set) has no error to speak of.
        residuals = [math.log(actual / predicted) for actual, predicted in amounts if actual > 0 and predicted > 0]
        return interval_offsets(np.array(residuals)) if residuals else (0.0, 0.0)

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]:
        x = self.features.matrix(inputs)
        distances = [self.features.distance(item) for item in inputs]
        edges = [self.features.clamped(item) for item in inputs]
        edge_x = self.features.matrix([edge for edge, _ in edges]) if any(distances) else x
        logs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by model: all rows in one call, not one per file
        for quantity in self.quantities.values():
            for model in (quantity, quantity.beyond_range):
                if model is not None:
                    raw = model.estimator.predict(x)
                    logs[id(model)] = raw, model.estimator.predict(edge_x) if any(distances) else raw
        low, high = self.cost_offsets(table)
        out: list[Prediction] = []
        for i, distance in enumerate(distances):
            values: dict[str, tuple[float, float, float]] = {}
            predictors: dict[str, str] = {}
            for name, quantity in self.quantities.items():
                model = quantity.for_item(distance > 0)
                raw, edge = logs[id(model)]
                direction = edges[i][1]
                point = bounded(float(raw[i]), float(edge[i]), distance, direction)
                values[name] = model.interval(point, distance, float(edge[i]), direction)
                predictors[name] = model.kind
            point_usage = np.array([values[name][1] for name in QUANTITIES])
            cost = charge(_usage(point_usage), table, table_name="").amount
            # Cost follows duration: beyond the range its interval widens as duration's does.
            extra = self.quantities["wall_seconds"].for_item(distance > 0).widening * distance
            values["cost"] = (cost * _exp(low - extra), cost, cost * _exp(high + extra))
            out.append(Prediction(values, extrapolating=distance > 0, predictors=predictors))
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
    def fit(
        cls,
        pipeline: str,
        runs: Sequence[Observation],
        kinds: Sequence[str] | None = None,
        feature_sets: Sequence[Sequence[str]] = FEATURE_SETS,
    ) -> CostModel:
        """The model of `pipeline` from its `runs`; `kinds` limits the candidates (the
        baselines alone are models of one kind, on the size alone)."""
        import sklearn

        if len(runs) < MIN_RUNS:
            raise ValueError(f"{len(runs)} past run(s) of {pipeline}; a model needs at least {MIN_RUNS}")
        fitted: list[Features] = []
        for wanted in feature_sets:
            features = Features.fit(runs, wanted)
            if all(features.columns != f.columns for f in fitted):
                fitted.append(features)
        competing = tuple(kinds) if kinds is not None else predictor_kinds.candidates(len(runs))
        return cls(
            pipeline=pipeline,
            usage_models=[UsageModel.fit(runs, features, competing) for features in fitted],
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

    def candidates(self) -> dict[str, dict[str, Any]]:
        """Every candidate side by side (on the most informed inputs): see `candidates_of`."""
        return candidates_of(self.usage_models[0].quantities)


def candidates_of(quantities: dict[str, QuantityModel]) -> dict[str, dict[str, Any]]:
    """Per quantity, every candidate kind's out-of-fold median relative error and the one
    chosen: what `models show` and the models page lay side by side."""
    return {
        name: {"chosen": quantity.kind, "errors": {kind: math.expm1(error) for kind, error in quantity.scores.items()}}
        for name, quantity in quantities.items()
    }
