"""Use cases that report: status, SQL over results, lineage, what processing cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from biomarkerflow.errors import NotFoundError, UsageError
from biomarkerflow.service.base import PlatformBase

if TYPE_CHECKING:
    import pandas as pd

    from biomarkerflow.catalog.manager import RunnerRecord, StudyStatus
    from biomarkerflow.cost.reports import CostGroup

__all__ = ["CostReport", "QueryAnswer", "ReportCases", "StatusReport", "runner_json"]

# Rows the API's SQL endpoint returns at most, and how long a query may run.
API_MAX_ROWS = 10_000
QUERY_TIMEOUT_SECONDS = 30.0
COSTS_SLOWER = 15  # with the API's 2 s: cost reports at most 30 s old
# `status` names each study's newest profiled runs: at most this many, among its last runs.
STATUS_PROFILES = 5
PROFILE_LOOKBACK_RUNS = 200


@dataclass(frozen=True)
class ProfiledRun:
    """A run that recorded where its time went: its profile page (`process --profile`, `profile.every`)."""

    study_id: str
    file: str  # the input's path in the study
    run_id: str
    profile: str  # the profile page's URL, in the run folder

    def as_json(self) -> dict[str, str]:
        return {"study": self.study_id, "file": self.file, "run_id": self.run_id, "profile": self.profile}


@dataclass(frozen=True)
class StatusReport:
    """Where the catalog is, every study's files per state (with why they wait or failed,
    and SKDH's notes on partial results), and the live `process`/`watch` commands."""

    catalog: str
    studies: list[StudyStatus]
    runners: list[RunnerRecord]  # the live `process`/`watch` commands ("workers" in JSON, as before)
    profiles: list[ProfiledRun] = field(default_factory=list)  # the newest profiled runs, per study

    def as_json(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "studies": [_study_json(s) for s in self.studies],
            "workers": [runner_json(w) for w in self.runners],
            "profiles": [p.as_json() for p in self.profiles],
        }


def _study_json(status: StudyStatus) -> dict[str, Any]:
    return {
        "study": status.study_id,
        "counts": status.counts,
        "waiting": [{"file": f, "reason": r} for f, r in status.waiting],
        "failed": [_failure_json(f, e, status.failure_details.get(f)) for f, e in status.failed],
        "excluded": [{"file": f, "reason": r} for f, r in status.excluded],
        "notices": [{"file": f, "notice": n} for f, n in status.notices],
        # Files of each state grouped by reason, counted in the catalog, with a few examples.
        "groups": [
            {
                "state": g.state,
                "reason": g.reason,
                "files": g.files,
                "examples": [{"file": f, "reason": r} for f, r in g.examples],
            }
            for g in status.groups
        ],
    }


def _failure_json(file: str, error: str, detail: Any) -> dict[str, Any]:
    extra = {} if detail is None else {"step": detail.step, "run_id": detail.run_id, "traceback": detail.traceback}
    return {"file": file, "error": error, **extra}


def runner_json(worker: RunnerRecord) -> dict[str, Any]:
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


@dataclass(frozen=True)
class QueryAnswer:
    """Rows of a query over a study's tables; `truncated` when more rows matched than `row_limit`."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    row_limit: int

    def as_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated, "row_limit": self.row_limit}


class ReportCases(PlatformBase):
    def status(self, study: str | None = None, every_file: bool = True) -> StatusReport:
        """Every study's files per state and reason groups; `every_file` also lists each
        waiting, failed and excluded file and notice (else only the groups' examples)."""
        self.require_studies([study] if study else None)
        studies = self.catalog.status(study, every_file)
        return StatusReport(
            catalog=self.catalog_name(),
            studies=studies,
            runners=self.live_runners(),
            profiles=[p for s in studies for p in self.profiled_runs(s.study_id)],
        )

    def profiled_runs(self, study: str, limit: int = STATUS_PROFILES) -> list[ProfiledRun]:
        """The study's newest runs with a profile (among its last PROFILE_LOOKBACK_RUNS), newest first."""
        from biomarkerflow.catalog.browse import RunFilter

        recent = self.catalog.runs_page(RunFilter(study_id=study, outcome="succeeded"), 0, PROFILE_LOOKBACK_RUNS)
        found: list[ProfiledRun] = []
        for run in recent.items:
            name = run.facts.get("profile")
            if isinstance(name, str) and run.result_location and len(found) < limit:
                file = self.catalog.get_file(run.file_id)
                path = file.relative_path if file else str(run.file_id)
                found.append(ProfiledRun(study, path, run.id, f"{run.result_location.rstrip('/')}/{name}"))
        return found

    def live_runners(self) -> list[RunnerRecord]:
        """The `process`/`watch` commands whose heartbeat is recent."""
        from biomarkerflow.engine.leases import HEARTBEAT_SECONDS

        return self.catalog.live_runners(within_seconds=3 * HEARTBEAT_SECONDS)

    def tables(self, study: str) -> dict[str, list[str]]:
        """The study's consolidated tables and their columns."""
        from biomarkerflow.results.query import connect, table_columns

        connection, names = connect(*self._query_target(study))
        try:
            return table_columns(connection, names)
        finally:
            connection.close()

    def sql(self, study: str, sql: str, *, max_rows: int = API_MAX_ROWS) -> QueryAnswer:
        """A read-only query over the study's tables only, at most `max_rows` rows and 30 s."""
        from biomarkerflow.results.query import run_sandboxed_query

        location, views = self._query_target(study)
        result = run_sandboxed_query(
            location, sql, max_rows=max_rows, timeout_seconds=QUERY_TIMEOUT_SECONDS, views=views
        )
        frame = result.frame
        rows = frame.astype(object).where(frame.notna(), None).values.tolist()
        return QueryAnswer([str(c) for c in frame.columns], rows, result.truncated, result.row_limit)

    def table_rows(self, study: str, table: str, offset: int = 0, limit: int = 100) -> QueryAnswer:
        """A page of one consolidated table's rows, in the table's order."""
        from biomarkerflow.results.query import quoted

        known = self.tables(study)
        if table not in known:
            raise NotFoundError(
                f"study '{study}' has no table '{table}'",
                hint="Its tables: " + (", ".join(known) or "none yet (no file has been processed)"),
            )
        return self.sql(study, f"SELECT * FROM {quoted(table)} LIMIT {int(limit)} OFFSET {int(offset)}", max_rows=limit)

    def _query_target(self, study: str) -> tuple[str, dict[str, str]]:
        """Where the study's tables are, and the views its workflow type adds over them."""
        from biomarkerflow.stages.types import workflow_type

        record = self.require_studies([study])[study]
        return record.output_location, workflow_type(record.config).views()

    def query(self, study: str, sql: str) -> pd.DataFrame:
        """SQL (DuckDB) over the study's consolidated tables."""
        from biomarkerflow.results.query import run_query

        location, views = self._query_target(study)
        return run_query(location, sql, views=views)

    def lineage(self, target: str) -> dict[str, Any]:
        """Where a result (file, run folder, table) or an input file's results came from."""
        from biomarkerflow.results.lineage import lineage

        return lineage(target, self.catalog)

    def run_lineage(self, run_id: str) -> dict[str, Any]:
        """The lineage of a run's results (its run folder); a run without results has none."""
        run = self.catalog.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run '{run_id}' in the catalog")
        if run.result_location is None:
            raise NotFoundError(
                f"run '{run_id}' has no results ({run.outcome})", hint="Only succeeded runs have a lineage."
            )
        return self.lineage(run.result_location)

    def run_quality(self, run_id: str) -> dict[str, Any] | None:
        """A run's data-quality report (its `quality` table's row, key columns left out), or
        None for a run that wrote none (another workflow type, a failed run)."""
        import pyarrow.parquet as pq

        from biomarkerflow.storage import store

        run = self.catalog.get_run(run_id)
        if run is None or run.result_location is None:
            return None
        url = run.result_location.rstrip("/") + "/quality.parquet"
        if not store.exists(url):
            return None
        with store.local_copy(url) as path:
            rows = pq.read_table(path).to_pylist()
        keys = {"study", "subject", "file", "run_id"}
        return {name: value for name, value in rows[0].items() if name not in keys} if rows else None

    def costs(self, studies: list[str] | None = None, by: str = "study") -> CostReport:
        from typing import cast

        from biomarkerflow.cost.reports import GROUPING_ALIASES, GROUPINGS, Grouping, group_costs

        by = GROUPING_ALIASES.get(by, by)
        if by not in GROUPINGS:
            raise UsageError(f"--by {by}: '{by}' is not one of: {', '.join(GROUPINGS)}")
        self.require_studies(studies)
        # Added up in the database; still a pass over every run, so a serving Platform shares
        # one for COSTS_SLOWER times as long as a study's totals.
        key = ("cost summary", None if studies is None else tuple(studies))
        rows = self.recent.get(key, lambda: self.catalog.cost_summary(studies), slower=COSTS_SLOWER)
        groups, total = group_costs(rows, cast(Grouping, by))
        records = [g.as_dict(by) for g in groups]
        return CostReport(by, groups, total, total.unpriced_runs, records)
