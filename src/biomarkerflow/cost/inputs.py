"""What a cost model sees of a run and what it answers: a run's inputs (the file, the
machine, what the pipeline is), a prediction with its 80% interval, and the cost of usage
under a price table (see cost/model.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.kinds import LABELS
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
class WorkflowDescription:
    """What a pipeline is, as far as its costs go: its workflow type, its steps (or what
    decides its work per file), and its package with version. Pipelines that share much of
    it cost alike: estimates for a pipeline with little history borrow from them."""

    workflow_type: str | None = None
    steps: tuple[str, ...] = ()
    package: str | None = None

    def tokens(self) -> set[str]:
        """The description as features: one token per thing two pipelines can share."""
        tokens = {f"step:{step}" for step in self.steps}
        if self.workflow_type:
            tokens.add(f"type:{self.workflow_type}")
        if self.package:
            tokens.add(f"package:{self.package}")
            tokens.add(f"package:{self.package.split('==')[0]}")  # the same package at another version
        return tokens

    def shares_with(self, other: WorkflowDescription) -> bool:
        """Similar enough to borrow from: the same workflow type (or, where a history names no
        type, a step or package in common)."""
        if self.workflow_type and other.workflow_type:
            return self.workflow_type == other.workflow_type
        return bool(self.tokens() & other.tokens())

    @property
    def known(self) -> bool:
        return bool(self.workflow_type or self.steps or self.package)


@dataclass(frozen=True)
class Machine:
    """A machine as a cost feature: cores, memory and CPU model (any may be unknown)."""

    name: str | None = None
    cores: float | None = None
    memory_bytes: float | None = None
    cpu: str | None = None


@dataclass(frozen=True)
class RunInputs:
    """What is known about a run before it runs."""

    input_bytes: int
    output_bytes: int | None = None
    recording_seconds: float | None = None
    sample_rate_hz: float | None = None
    device: str | None = None
    uncompressed_bytes: float | None = None
    machine_cores: float | None = None
    machine_memory_bytes: float | None = None
    machine_cpu: str | None = None
    workflow: WorkflowDescription = field(default_factory=WorkflowDescription)

    def on(self, machine: Machine | None) -> RunInputs:
        """These inputs, run on `machine`."""
        if machine is None:
            return self
        return replace(
            self, machine_cores=machine.cores, machine_memory_bytes=machine.memory_bytes, machine_cpu=machine.cpu
        )

    def of_workflow(self, workflow: WorkflowDescription | None) -> RunInputs:
        return self if workflow is None else replace(self, workflow=workflow)

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
            machine_cores=observation.machine_cores,
            machine_memory_bytes=observation.machine_memory_bytes,
            machine_cpu=observation.machine_cpu,
            workflow=WorkflowDescription(observation.workflow_type, tuple(observation.steps), observation.package),
        )


@dataclass(frozen=True)
class Prediction:
    """Point estimate and 80% interval (low, point, high) per quantity, cost included."""

    values: dict[str, tuple[float, float, float]]
    extrapolating: bool = False
    basis: str = "model"  # or e.g. "borrowed from 3 similar workflows"
    predictors: Mapping[str, str] = field(default_factory=dict)  # quantity -> the kind that answered

    def point(self, quantity: str) -> float:
        return self.values[quantity][1]

    @property
    def answered_by(self) -> str:
        """Which predictor answered, in words: "affine (duration), size line (memory)"."""
        shown = {"wall_seconds": "duration", "peak_rss_bytes": "memory", "cpu_seconds": "CPU"}
        kinds: dict[str, list[str]] = {}
        for quantity, kind in self.predictors.items():
            if quantity in shown:
                kinds.setdefault(LABELS.get(kind, kind), []).append(shown[quantity])
        parts = ", ".join(f"{kind} ({'/'.join(q)})" for kind, q in kinds.items())
        if self.basis == "model":
            return parts or "model"
        return f"{self.basis}: {parts}" if parts else self.basis


class Predictor(Protocol):
    def predict(self, inputs: Sequence[RunInputs], table: PriceTable) -> list[Prediction]: ...


def actual_cost(observation: Observation, table: PriceTable) -> float:
    """What the observed run costs under `table` (the same arithmetic as a real run's charge)."""
    usage = Usage(observation.wall_seconds, observation.cpu_seconds, observation.peak_rss_bytes)
    return charge(usage, table, table_name="").amount
