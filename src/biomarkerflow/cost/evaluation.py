"""Scoring predictors on held-out runs, next to the two baselines: the training runs'
median, and a straight line on input size. `assess` scores a model and both baselines on
the same held-out runs. The baselines are models of one kind each (cost/kinds.py): they
compete inside every model too, and get conformal intervals like the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.inputs import REPORTED, Prediction, Predictor, RunInputs, actual_cost
from biomarkerflow.cost.kinds import MEDIAN, SIZE_LINE
from biomarkerflow.cost.model import CostModel
from biomarkerflow.cost.prices import PriceTable

TEST_FRACTION = 0.2


def median_baseline(runs: Sequence[Observation]) -> CostModel:
    """Every run costs what the median training run cost."""
    return CostModel.fit(MEDIAN, runs, kinds=(MEDIAN,), feature_sets=((),))


def size_line_baseline(runs: Sequence[Observation]) -> CostModel:
    """A straight line through (input bytes, quantity) of the training runs."""
    return CostModel.fit(SIZE_LINE, runs, kinds=(SIZE_LINE,), feature_sets=((),))


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
        median_baseline=evaluate(median_baseline(train), test, table),
        size_line_baseline=evaluate(size_line_baseline(train), test, table),
        test_runs=len(test),
    )
