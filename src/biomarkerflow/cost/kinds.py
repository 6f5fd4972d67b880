"""The predictor kinds that compete for each quantity of a pipeline, baselines included.

Every kind takes the feature matrix (log columns, input bytes first) and the log of the
quantity, and predicts logs: so all are scored, chosen and given intervals the same way.

- `loglinear`: a regularised log-log linear fit (power laws in every input).
- `affine`: a fixed part plus non-negative parts proportional to bytes, samples and
  output (start-up plus work per sample), fitted for relative error.
- `affine-size`: the same on input bytes alone.
- `size-line`: the baseline straight line on input bytes (ordinary least squares).
- `median`: the baseline median of past runs, whatever the input.
- `boosted-trees`: gradient-boosted trees, with 30 runs or more.

The baselines are candidates like the others: where a plain line on size predicts best,
it answers (issue 20), instead of nothing answering at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_RUNS_FOR_TREES = 30
TREES = "boosted-trees"
SIZE_LINE = "size-line"
MEDIAN = "median"
BASELINES = (SIZE_LINE, MEDIAN)
# How each kind is named to people (estimate, models show, the dashboard).
LABELS = {
    "loglinear": "power law",
    "affine": "affine",
    "affine-size": "affine on size",
    SIZE_LINE: "size line (baseline)",
    MEDIAN: "median of past runs (baseline)",
    TREES: "boosted trees",
}


class Affine:
    """quantity = a fixed part + non-negative parts proportional to bytes, samples (rate x
    length, when known) and output: how a job that loads its file and then walks it costs.
    With `size_only`, the input bytes alone: the size line's form, fitted for the relative
    error the models are judged by."""

    def __init__(self, logged: Sequence[str], size_only: bool = False) -> None:
        self.logged = logged  # as given: sklearn's clone checks the parameter is kept as is
        self.size_only = size_only

    def _raw(self, x: np.ndarray) -> np.ndarray:
        logged = list(self.logged)
        used = 1 if self.size_only else len(logged)  # input bytes come first
        columns = [np.exp(x[:, :used]), x[:, len(logged) :]]  # indicators (device, CPU) stay as they are
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


class SizeLine:
    """The baseline: a straight line through (input bytes, quantity), least squares; never
    below half the smallest run seen (a line can go below zero, a run cannot)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> SizeLine:
        sizes, values = np.exp(x[:, 0]), np.exp(y)
        if np.ptp(sizes) > 0:
            slope, intercept = np.polyfit(sizes, values, 1)
        else:
            slope, intercept = 0.0, float(values.mean())
        self.slope_, self.intercept_ = float(slope), float(intercept)
        self.floor_ = max(float(values.min()) * 0.5, 1e-3)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self.slope_ * np.exp(x[:, 0]) + self.intercept_, self.floor_))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> SizeLine:
        return self


class Median:
    """The baseline: every run costs what the median past run cost."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Median:
        self.median_ = float(np.median(y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.median_)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> Median:
        return self


def make(kind: str, runs: int, logged: Sequence[str]) -> Any:
    """A fresh estimator of `kind` for `runs` training runs with these log columns."""
    if kind == "loglinear":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 2, 13)))
    if kind == TREES:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=100, learning_rate=0.1, min_samples_leaf=max(3, runs // 15), random_state=0
        )
    simple: dict[str, Any] = {
        "affine": Affine(logged),
        "affine-size": Affine(logged, size_only=True),
        SIZE_LINE: SizeLine(),
        MEDIAN: Median(),
    }
    return simple[kind]


def candidates(runs: int) -> tuple[str, ...]:
    """The kinds that compete for `runs` training runs, in the order that wins a tie."""
    kinds = ("loglinear", "affine", "affine-size", SIZE_LINE, MEDIAN)
    return (*kinds, TREES) if runs >= MIN_RUNS_FOR_TREES else kinds


def follows_the_trend(kind: str) -> bool:
    """Whether a kind can answer beyond the training range (trees and the median cannot)."""
    return kind not in (TREES, MEDIAN)
