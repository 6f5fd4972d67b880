"""The `csv-stats` workflow type: row counts and column means of CSV files.

A study config of this type:

    study: lab-values
    workflow: csv-stats
    data: {location: data/csv}           # *.csv by default
    stats:
      columns: [x, y]                    # the columns to average
    metadata: [{location: subjects.csv}] # a `scale` column multiplies the subject's means

It has no pinned package (jobs run in the platform's own environment) and imports
nothing heavy at module level, as the contract asks.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from biomarkerflow.config.schema import DataConfig, StudyConfig
from biomarkerflow.plugins.contract import Problem, RunOutput, StepError, WorkflowType

if TYPE_CHECKING:
    from biomarkerflow.storage.store import FileEntry

HEADER_BYTES = 64 * 1024
STEP = "ColumnMeans"


class CsvStatsData(DataConfig):
    include: list[str] = Field(default_factory=lambda: ["**/*.csv"])


class StatsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] = Field(min_length=1, description="The numeric columns to average.")
    # For tests of jobs in flight (killed or stopped commands): a job waits until this file
    # exists, so the test, not the clock, decides when it ends. Not part of the results.
    hold_until: str | None = Field(default=None, description="A path; jobs wait until it exists.")


class CsvStatsConfig(StudyConfig):
    data: CsvStatsData
    stats: StatsConfig


def _columns(head: bytes) -> list[str]:
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    return next(csv.reader(lines[:1]), [])


class CsvStats(WorkflowType):
    name = "csv-stats"
    package = "biomarkerflow-csvstats"
    checked_sections = ("stats",)

    @property
    def config_model(self) -> type[StudyConfig]:
        return CsvStatsConfig

    def check(self, sections: Mapping[str, Any]) -> list[Problem]:
        try:
            stats = StatsConfig.model_validate(sections.get("stats"))
        except pydantic.ValidationError:
            return []  # the schema reports it
        seen: set[str] = set()
        problems: list[Problem] = []
        for i, column in enumerate(stats.columns):
            if column in seen:
                problems.append((f"stats.columns[{i}]", f"column '{column}' is named twice"))
            seen.add(column)
        return problems

    def check_files(self, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        return []  # which columns a file has is the job's to say (its header is all it needs)

    def subject_inputs(self, config: StudyConfig, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        scale = (fields or {}).get("scale")
        return {} if scale is None else {"scale": float(scale)}

    def results_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        stats = config.get("stats")
        # hold_until only decides when a job ends (tests), not its numbers.
        return {"stats": {k: v for k, v in stats.items() if k != "hold_until"} if isinstance(stats, dict) else stats}

    def cost_identity(self, config: StudyConfig) -> Any:
        return cast(CsvStatsConfig, config).stats.columns

    def header_bytes(self, relative_path: str) -> int:
        return HEADER_BYTES if PurePosixPath(relative_path).suffix.lower() == ".csv" else 0

    def header_facts(self, head: bytes, size: int, relative_path: str) -> dict[str, Any]:
        columns = _columns(head)
        return {"columns": len(columns)} if columns else {}

    def plan_job(self, config: StudyConfig) -> Any:
        stats = cast(CsvStatsConfig, config).stats
        return {"columns": list(stats.columns), "hold_until": stats.hold_until}

    def run_job(self, path: Path, plan: Any, inputs: dict[str, Any], *, subject: str | None) -> RunOutput:
        import pandas as pd

        while plan.get("hold_until") and not Path(plan["hold_until"]).exists():
            time.sleep(0.05)
        frame = pd.read_csv(io.BytesIO(path.read_bytes()))
        missing = [c for c in plan["columns"] if c not in frame.columns]
        if missing:
            raise StepError(STEP, f"{path.name} has no column {', '.join(missing)} (its columns: {', '.join(frame)})")
        scale = float(inputs.get("scale", 1.0))
        means = pd.DataFrame(
            {"column": plan["columns"], "mean": [float(frame[c].mean()) * scale for c in plan["columns"]]}
        )
        rows = pd.DataFrame({"rows": [len(frame)], "columns": [len(frame.columns)]})
        return RunOutput(
            tables={"csv_rows": rows, "csv_means": means},
            facts={"rows": len(frame)},
            steps=[{"step": STEP, "params": {"columns": plan["columns"], "scale": scale}}],
        )


WORKFLOW_TYPE = CsvStats()
