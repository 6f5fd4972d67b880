"""Predictions outside the inputs a model learned from: the inputs brought back to the
edge of the training range, and a prediction beyond it kept to a plausible growth."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from biomarkerflow.cost.inputs import RunInputs

# Beyond the training range a prediction changes by at most this power of the input's growth
# (no job we know of grows faster than n^1.5 over a range it was never tried on).
MAX_ELASTICITY = 1.5


def clamp_into(item: RunInputs, ranges: dict[str, tuple[float, float]]) -> tuple[RunInputs, int]:
    changes: dict[str, Any] = {}
    direction = 0
    for name, (low, high) in ranges.items():
        value = getattr(item, name)
        if value is None or value <= 0 or low <= value <= high:
            continue
        changes[name] = min(max(value, low), high)
        direction = 1 if value > high or direction == 1 else -1
    if "input_bytes" in changes:
        changes["input_bytes"] = int(changes["input_bytes"])
    return (replace(item, **changes) if changes else item), direction


def bounded(raw: float, edge: float, distance: float, direction: int) -> float:
    """A log prediction `distance` log units outside the range, kept to a change from the
    range's edge of at most MAX_ELASTICITY per log unit, in the direction the inputs moved:
    a power law fitted on a narrow range can say a 5x larger file takes 10^30 times as long."""
    if distance <= 0 or direction == 0:
        return raw
    change = (raw - edge) * direction
    return edge + direction * min(max(change, 0.0), MAX_ELASTICITY * distance)
