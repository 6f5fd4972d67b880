"""Use cases that report: status, SQL over results, lineage, what processing cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from biomarkerflow.errors import UsageError
from biomarkerflow.service.base import PlatformBase

if TYPE_CHECKING:
    import pandas as pd

    from biomarkerflow.catalog.manager import RunnerRecord, StudyStatus
    from biomarkerflow.cost.reports import CostGroup

__all__ = ["CostReport", "ReportCases", "StatusReport"]


@dataclass(frozen=True)
class StatusReport:
    """Where the catalog is, every study's files per state (with why they wait or failed,
    and SKDH's notes on partial results), and the live `process`/`watch` commands."""

    catalog: str
    studies: list[StudyStatus]
    runners: list[RunnerRecord]  # the live `process`/`watch` commands ("workers" in JSON, as before)

    def as_json(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "studies": [_study_json(s) for s in self.studies],
            "workers": [_runner_json(w) for w in self.runners],
        }


def _study_json(status: StudyStatus) -> dict[str, Any]:
    return {
        "study": status.study_id,
        "counts": status.counts,
        "waiting": [{"file": f, "reason": r} for f, r in status.waiting],
        "failed": [_failure_json(f, e, status.failure_details.get(f)) for f, e in status.failed],
        "notices": [{"file": f, "notice": n} for f, n in status.notices],
    }


def _failure_json(file: str, error: str, detail: Any) -> dict[str, Any]:
    extra = {} if detail is None else {"step": detail.step, "run_id": detail.run_id, "traceback": detail.traceback}
    return {"file": file, "error": error, **extra}


def _runner_json(worker: RunnerRecord) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "kind": worker.kind,
        "executor": worker.executor,
        "capacity": worker.capacity,
        "state": worker.state,
        "running_jobs": worker.running_jobs,
        "started_at": worker.started_at.isoformat(),
        "heartbeat_at": worker.heartbeat_at.isoformat(),
    }


@dataclass(frozen=True)
class CostReport:
    """What processing cost, grouped `by` study, pipeline, subject or month, with the total."""

    by: str
    groups: list[CostGroup]
    total: CostGroup
    unpriced_runs: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "groups": self.records, "total": self.total.as_dict(self.by)}


class ReportCases(PlatformBase):
    def status(self, study: str | None = None) -> StatusReport:
        from biomarkerflow.engine.leases import HEARTBEAT_SECONDS

        self.require_studies([study] if study else None)
        return StatusReport(
            catalog=self.catalog_name(),
            studies=self.catalog.status(study),
            runners=self.catalog.live_runners(within_seconds=3 * HEARTBEAT_SECONDS),
        )

    def query(self, study: str, sql: str) -> pd.DataFrame:
        """SQL (DuckDB) over the study's consolidated tables."""
        from biomarkerflow.results.query import run_query

        self.require_studies([study])
        record = self.catalog.get_study(study)
        assert record is not None
        return run_query(record.output_location, sql)

    def lineage(self, target: str) -> dict[str, Any]:
        """Where a result (file, run folder, table) or an input file's results came from."""
        from biomarkerflow.results.lineage import lineage

        return lineage(target, self.catalog)

    def costs(self, studies: list[str] | None = None, by: str = "study") -> CostReport:
        from typing import cast

        from biomarkerflow.cost.reports import GROUPING_ALIASES, GROUPINGS, Grouping, group_costs

        by = GROUPING_ALIASES.get(by, by)
        if by not in GROUPINGS:
            raise UsageError(f"--by {by}: '{by}' is not one of: {', '.join(GROUPINGS)}")
        self.require_studies(studies)
        groups, total = group_costs(self.catalog.cost_rows(studies), cast(Grouping, by))
        records = [g.as_dict(by) for g in groups]
        return CostReport(by, groups, total, total.unpriced_runs, records)
