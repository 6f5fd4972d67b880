"""Estimates borrowed from similar pipelines, for a pipeline with too little history of its own.

One pooled model learns from every pipeline's runs at once. Besides a run's inputs (size,
recording length and rate, device, machine) it sees what the pipeline is: its workflow
type, its steps with their parameters, its package and version, as one indicator per
token (cost/inputs.py, `WorkflowDescription.tokens`), and each step's indicator times
the log size (a step's cost grows with the file in its own way). A pipeline it has never
seen is then estimated from the steps and package it shares with pipelines it has.

The candidates (a power law, boosted trees) are chosen, and the 80% interval made, on
folds that leave whole pipelines out: the errors it makes on pipelines it did not see
are the errors of a borrowed estimate. So its interval is wider than a pipeline's own.
An estimate names how many similar pipelines (same workflow type) it learned from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from biomarkerflow.cost.extrapolation import clamp_into
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.inputs import Prediction, RunInputs, WorkflowDescription
from biomarkerflow.cost.kinds import TREES
from biomarkerflow.cost.model import MODEL_FORMAT, Folds, UsageModel
from biomarkerflow.cost.prices import PriceTable

POOLED = "_pooled"  # its name in the registry: no pipeline's name starts with "_"
POOLED_KINDS = ("loglinear", TREES)
MIN_PIPELINES = 2
# The newest runs per pipeline it learns from: enough to learn how a pipeline scales, and a
# pipeline with 70,000 runs does not drown the others (nor take minutes to fit).
RUNS_PER_PIPELINE = 200
NUMERIC = ("input_bytes", "recording_seconds", "sample_rate_hz", "machine_cores", "machine_memory_bytes")


def _log(value: Any) -> float | None:
    return math.log(float(value)) if value else None


@dataclass
class PooledFeatures:
    """Inputs and description as a matrix: log inputs (0 and an unknown-flag where a run does
    not say), device and token indicators, and step tokens x centred log size."""

    tokens: list[str]
    devices: list[str]
    centre: float  # mean log input size of the training runs
    ranges: dict[str, tuple[float, float]]
    columns: list[str] = field(default_factory=lambda: ["input_bytes"])  # for the kinds: input bytes first

    @classmethod
    def fit(cls, runs: Sequence[Observation]) -> PooledFeatures:
        # A token only one pipeline has tells nothing about another: only shared ones are features.
        holders: dict[str, set[str]] = {}
        for o in runs:
            for token in RunInputs.of(o).workflow.tokens():
                holders.setdefault(token, set()).add(o.pipeline)
        tokens = sorted(token for token, pipelines in holders.items() if len(pipelines) > 1)
        sizes = [float(o.input_bytes) for o in runs if o.input_bytes]
        return cls(
            tokens=tokens,
            devices=sorted({o.device for o in runs if o.device}),
            centre=float(np.mean(np.log(sizes))) if sizes else 0.0,
            ranges={"input_bytes": (min(sizes), max(sizes))} if sizes else {},
        )

    def row(self, item: RunInputs) -> list[float]:
        numbers: list[float] = []
        for name in NUMERIC:
            value = _log(getattr(item, name))
            numbers += [value if value is not None else 0.0, 0.0 if value is not None else 1.0]
        held = item.workflow.tokens()
        size = (_log(item.input_bytes) or 0.0) - self.centre
        indicators = [1.0 if token in held else 0.0 for token in self.tokens]
        steps = [flag * size for token, flag in zip(self.tokens, indicators, strict=True) if token.startswith("step:")]
        devices = [1.0 if item.device == device else 0.0 for device in self.devices]
        return numbers + indicators + steps + devices

    def matrix(self, items: Sequence[RunInputs]) -> np.ndarray:
        return np.array([self.row(item) for item in items], dtype=float)

    def knows(self, item: RunInputs) -> bool:
        return True  # what a run does not say is a feature too (the unknown-flags)

    def clamped(self, item: RunInputs) -> tuple[RunInputs, int]:
        return clamp_into(item, self.ranges)

    def distance(self, item: RunInputs) -> float:
        low, high = self.ranges.get("input_bytes", (0.0, 0.0))
        size = float(item.input_bytes)
        if low <= 0 or size <= 0 or low <= size <= high:
            return 0.0
        return abs(math.log(size / (low if size < low else high)))


def _newest(runs: Sequence[Observation]) -> list[Observation]:
    by_pipeline: dict[str, list[Observation]] = {}
    for run in sorted(runs, key=lambda o: o.started_at, reverse=True):
        kept = by_pipeline.setdefault(run.pipeline, [])
        if len(kept) < RUNS_PER_PIPELINE:
            kept.append(run)
    return [run for kept in by_pipeline.values() for run in kept]


@dataclass
class PooledModel:
    """What gets pickled as the pooled model's file."""

    usage: UsageModel
    descriptions: dict[str, WorkflowDescription]  # of the pipelines it learned from
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    library_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = MODEL_FORMAT
    pipeline: str = POOLED

    @classmethod
    def fit(cls, runs: Sequence[Observation]) -> PooledModel:
        """From described runs of at least two pipelines (the newest RUNS_PER_PIPELINE of each)."""
        import sklearn

        chosen = _newest(runs)
        pipelines = sorted({o.pipeline for o in chosen})
        if len(pipelines) < MIN_PIPELINES:
            raise ValueError(f"a pooled model needs the runs of at least {MIN_PIPELINES} pipelines")
        groups = np.array([pipelines.index(o.pipeline) for o in chosen])
        descriptions = {o.pipeline: RunInputs.of(o).workflow for o in chosen}
        # Only pipelines that have similar ones judge it: for the others no estimate is borrowed.
        alike = {
            name: any(other != name and described.shares_with(d) for other, d in descriptions.items())
            for name, described in descriptions.items()
        }
        folds = Folds(groups, np.array([alike[o.pipeline] for o in chosen]))
        return cls(
            usage=UsageModel.fit(chosen, PooledFeatures.fit(chosen), POOLED_KINDS, folds),
            descriptions=descriptions,
            trained_from=min(o.started_at for o in chosen),
            trained_to=max(o.started_at for o in chosen),
            train_runs=len(chosen),
            library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        )

    def similar(self, workflow: WorkflowDescription, leaving_out: str | None = None) -> list[str]:
        """The pipelines it learned from that are like `workflow` (see `shares_with`)."""
        return sorted(
            name for name, known in self.descriptions.items() if name != leaving_out and workflow.shares_with(known)
        )

    def predict(self, inputs: Sequence[RunInputs], table: PriceTable, pipeline: str | None = None) -> list[Prediction]:
        """Borrowed estimates for runs of `pipeline`; each says from how many similar pipelines
        (inputs with no similar pipeline get a prediction too: callers refuse those, see `similar`)."""
        out = []
        counts: dict[WorkflowDescription, int] = {}  # a study's files share one description: counted once
        for item, prediction in zip(inputs, self.usage.predict(inputs, table), strict=True):
            if item.workflow not in counts:
                counts[item.workflow] = len(self.similar(item.workflow, leaving_out=pipeline))
            count = counts[item.workflow]
            basis = f"borrowed from {count} similar workflow{'s' if count != 1 else ''}"
            out.append(replace(prediction, basis=basis))
        return out

    def describe(self) -> str:
        kinds = sorted({m.kind for m in self.usage.quantities.values()})
        return f"pooled {'/'.join(kinds)} on {self.train_runs} runs of {len(self.descriptions)} pipelines"
