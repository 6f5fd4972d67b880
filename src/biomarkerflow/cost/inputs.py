"""What a cost model sees of a run and what it answers: a run's inputs, a prediction with
its 80% interval, and the cost of usage under a price table (see cost/model.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.prices import PriceTable, Usage, charge
from biomarkerflow.plugins.contract import RECORDING_SECONDS, SAMPLE_RATE_HZ, UNCOMPRESSED_BYTES

QUANTITIES = ("wall_seconds", "cpu_seconds", "peak_rss_bytes")
REPORTED = ("cost", "wall_seconds", "peak_rss_bytes")  # what estimates and metrics show


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
    uncompressed_bytes: float | None = None

    @classmethod
    def of_facts(cls, *, input_bytes: int, device: str | None, facts: Mapping[str, Any]) -> RunInputs:
        """Inputs from a workflow type's facts about a file; the ones named as cost features are used."""
        return cls(
            input_bytes=input_bytes,
            device=device,
            recording_seconds=_number(facts.get(RECORDING_SECONDS)),
            sample_rate_hz=_number(facts.get(SAMPLE_RATE_HZ)),
            uncompressed_bytes=_number(facts.get(UNCOMPRESSED_BYTES)),
        )

    @classmethod
    def of(cls, observation: Observation) -> RunInputs:
        return cls(
            input_bytes=observation.input_bytes,
            output_bytes=observation.output_bytes or None,
            recording_seconds=observation.recording_seconds,
            sample_rate_hz=observation.sample_rate_hz,
            uncompressed_bytes=observation.uncompressed_bytes,
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


def with_cost(usage: dict[str, tuple[float, float, float]], table: PriceTable) -> dict[str, tuple[float, float, float]]:
    """The usage intervals with the cost of each end under `table`."""
    costs = tuple(
        charge(
            Usage(usage["wall_seconds"][i], usage["cpu_seconds"][i], int(usage["peak_rss_bytes"][i])),
            table,
            table_name="",
        ).amount
        for i in range(3)
    )
    return {**usage, "cost": (costs[0], costs[1], costs[2])}
