"""Out-of-fold predictions and the split-conformal 80% interval made from their errors.

Each kind is scored on predictions for runs it did not see (5-fold); the same held-out
log-errors give the interval: their 10th and 90th percentiles at the finite-sample levels,
added to the prediction."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INTERVAL = 0.80


def out_of_fold(estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Each row predicted by a fit that did not see it (5 folds); with `groups`, by a fit
    that saw no row of its group."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, KFold

    if groups is not None:
        # Ten folds: each pipeline is predicted from 90% of the others, near leave-one-out.
        splits = GroupKFold(n_splits=min(10, len(set(groups.tolist())))).split(x, y, groups)
    else:
        splits = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=0).split(x)
    predicted = np.empty_like(y)
    for train, held in splits:
        predicted[held] = clone(estimator).fit(x[train], y[train]).predict(x[held])
    return predicted


def interval_offsets(residuals: np.ndarray) -> tuple[float, float]:
    """The log-space ends of the 80% interval around a prediction, from held-out residuals."""
    # Finite-sample conformal levels: a bit wider than the plain 10th/90th percentiles.
    n = len(residuals)
    tail = (1 - INTERVAL) / 2
    low_level = max(0.0, math.floor(tail * (n + 1)) / n)
    high_level = min(1.0, math.ceil((1 - tail) * (n + 1)) / n)
    return float(np.quantile(residuals, low_level)), float(np.quantile(residuals, high_level))
