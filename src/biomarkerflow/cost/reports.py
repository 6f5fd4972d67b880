"""Actual costs, grouped: what `biomarkerflow costs` prints. Pure functions over run rows.

Every attempt is counted in the cost, failed ones too (they were paid for). The units
the money bought are counted from succeeded runs only: subject-days of recording and
GB of input that produced results. So `per subject-day` is what a result really cost.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# The catalog returns these records and must not import cost/: they live there.
from biomarkerflow.catalog.records import CostRow, EstimateRecord

Grouping = Literal["study", "pipeline", "subject", "month"]
GROUPINGS: tuple[Grouping, ...] = ("study", "pipeline", "subject", "month")
# Old names still accepted: the pipeline was called "workflow" before it had its own name.
GROUPING_ALIASES: dict[str, Grouping] = {"workflow": "pipeline"}
GB = 1e9
DAY_SECONDS = 86_400.0


@dataclass
class CostGroup:
    """Totals of one group (a study, pipeline, subject or month)."""

    key: str
    runs: int = 0
    failed_runs: int = 0
    unpriced_runs: int = 0  # runs from before costs were recorded
    cost: float = 0.0
    currencies: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)
    input_bytes: int = 0
    recording_seconds: float = 0.0

    @property
    def subject_days(self) -> float:
        return self.recording_seconds / DAY_SECONDS

    @property
    def input_gb(self) -> float:
        return self.input_bytes / GB

    @property
    def per_subject_day(self) -> float | None:
        return self.cost / self.subject_days if self.subject_days > 0 else None

    @property
    def per_gb(self) -> float | None:
        return self.cost / self.input_gb if self.input_bytes > 0 else None

    @property
    def currency(self) -> str:
        return "/".join(sorted(self.currencies)) or "USD"

    def add(self, row: CostRow) -> None:
        self.runs += row.runs
        self.failed_runs += 0 if row.succeeded else row.runs
        self.unpriced_runs += row.unpriced_runs if row.unpriced_runs is not None else int(row.cost is None)
        if row.cost is not None:
            self.cost += row.cost
        if row.currency:
            self.currencies.add(row.currency)
        if row.succeeded:
            if row.subject:
                self.subjects.add(f"{row.study}/{row.subject}")
            self.input_bytes += row.input_bytes
            self.recording_seconds += row.recording_seconds or 0.0

    def as_dict(self, grouping: str) -> dict[str, object]:
        return {
            grouping: self.key,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "unpriced_runs": self.unpriced_runs,
            "subjects": len(self.subjects),
            "subject_days": round(self.subject_days, 4),
            "input_gb": round(self.input_gb, 6),
            "cost": round(self.cost, 6),
            "currency": self.currency,
            "cost_per_subject_day": None if self.per_subject_day is None else round(self.per_subject_day, 6),
            "cost_per_gb": None if self.per_gb is None else round(self.per_gb, 6),
        }


def _key(row: CostRow, grouping: Grouping) -> str:
    if grouping == "study":
        return row.study
    if grouping == "pipeline":
        return row.pipeline or "(unknown)"
    if grouping == "subject":
        return f"{row.study}/{row.subject or '(none)'}"
    return f"{row.started_at:%Y-%m}"


def group_costs(rows: Iterable[CostRow], grouping: Grouping) -> tuple[list[CostGroup], CostGroup]:
    """The groups, sorted by key, and the grand total."""
    groups: dict[str, CostGroup] = {}
    total = CostGroup("total")
    for row in rows:
        key = _key(row, grouping)
        groups.setdefault(key, CostGroup(key)).add(row)
        total.add(row)
    return [groups[k] for k in sorted(groups)], total


def estimate_accuracy(pairs: Iterable[EstimateRecord]) -> dict[str, dict[str, Any]]:
    """Per pipeline: how far estimates were from their runs (median and P90 relative error)
    and how often the 80% interval held the actual value; in all, and by which predictor
    answered (a model's kinds, or borrowed from similar pipelines)."""
    by_pipeline: dict[str, list[EstimateRecord]] = {}
    for pair in pairs:
        if pair.actual:
            by_pipeline.setdefault(pair.pipeline, []).append(pair)
    report: dict[str, dict[str, Any]] = {}
    for pipeline, items in sorted(by_pipeline.items()):
        by_predictor: dict[str, list[EstimateRecord]] = {}
        for item in items:
            answered = item.predicted.get("answered_by")
            by_predictor.setdefault(answered if isinstance(answered, str) else "model", []).append(item)
        report[pipeline] = {
            "pairs": len(items),
            "quantities": _accuracy(items),
            "by_predictor": {
                name: {"pairs": len(group), "quantities": _accuracy(group)}
                for name, group in sorted(by_predictor.items())
            },
        }
    return report


def _accuracy(items: list[EstimateRecord]) -> dict[str, dict[str, float]]:
    quantities: dict[str, dict[str, float]] = {}
    for quantity in ("cost", "wall_seconds", "peak_rss_bytes"):
        errors: list[float] = []
        covered: list[bool] = []
        for item in items:
            actual = (item.actual or {}).get(quantity)
            predicted = item.predicted.get(quantity)
            if not actual or not isinstance(predicted, list) or not predicted:
                continue
            low, point, high = predicted[:3]
            errors.append(abs(point - actual) / actual)
            covered.append(low <= actual <= high)
        if errors:
            quantities[quantity] = {
                "median_relative_error": statistics.median(errors),
                "p90_relative_error": _quantile(errors, 0.9),
                "coverage": sum(covered) / len(covered),
            }
    return quantities


def _quantile(values: list[float], level: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * level
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
