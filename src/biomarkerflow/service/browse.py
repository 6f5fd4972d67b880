"""Use cases that browse the catalog page by page: the REST API's and dashboard's reads.

Everything here is paged or aggregated in the database, so a study of 100k files costs
no more to show than one of ten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from biomarkerflow.catalog.browse import FileFilter, Page, RunFilter
from biomarkerflow.catalog.records import FileRecord, RunRecord, StudyRecord
from biomarkerflow.errors import NotFoundError
from biomarkerflow.service.base import PlatformBase

__all__ = ["BrowseCases", "StudyOverview", "file_json", "page_json", "run_json"]

DETAIL_SLOWER = 5  # with the API's 2 s: a study's progress per day and subjects at most 10 s old


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def file_json(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "study": record.study_id,
        "path": record.relative_path,
        "url": record.url,
        "subject": record.subject,
        "size": record.size,
        "state": record.state,
        "reason": record.reason,
        "error": record.last_error,
        "attempts": record.attempts,
        "current_run": record.current_run_id,
    }


def run_json(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "file_id": record.file_id,
        "study": record.study_id,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "error": record.error,
        "failed_step": record.failed_step,
        "started_at": _time(record.started_at),
        "finished_at": _time(record.finished_at),
        "wall_seconds": record.wall_seconds,
        "cpu_seconds": record.cpu_seconds,
        "peak_rss_bytes": record.peak_rss_bytes,
        "bytes_read": record.bytes_read,
        "bytes_written": record.bytes_written,
        "facts": record.facts,
        "result_location": record.result_location,
        "package_version": record.package_version,
        "host": record.host,
        "pipeline": record.pipeline,
        "notices": list(record.notices),
        "cost": record.cost,
        "currency": record.currency,
        "charge": asdict(record.charge) if record.charge else None,
    }


def page_json(page: Page[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    shown = {"items": items, "total": page.total, "offset": page.offset, "limit": page.limit}
    return shown | ({"next_after": page.next_after} if page.next_after is not None else {})


@dataclass(frozen=True)
class StudyOverview:
    """One study at a glance: files per state, cost so far, last activity."""

    study: str
    counts: dict[str, int]
    cost: float
    currency: str | None
    last_activity: datetime | None
    priority: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "counts": self.counts,
            "files": self.total,
            "cost": self.cost,
            "currency": self.currency,
            "last_activity": _time(self.last_activity),
            "priority": self.priority,
        }


class BrowseCases(PlatformBase):
    def study_overviews(self, study: str | None = None) -> list[StudyOverview]:
        """Every study (or one) with its files per state, cost so far and last activity.

        A few GROUP BYs over the whole catalog, so a serving Platform answers from a count
        at most `summary_max_age` seconds old (`self.recent`).
        """
        if study is not None:
            self._study_record(study)  # an unknown study is a 404 now, not a stale answer
        return self.recent.get(("overviews", study), lambda: self._count_overviews(study))

    def _count_overviews(self, study: str | None) -> list[StudyOverview]:
        from biomarkerflow.catalog.models import FileState

        counts = self.catalog.state_counts(study)
        costs = self.catalog.cost_totals(study)
        activity = self.catalog.last_activities(study)
        records = self.catalog.studies() if study is None else [self._study_record(study)]
        return [
            StudyOverview(
                study=record.id,
                counts={state.value: counts.get(record.id, {}).get(state.value, 0) for state in FileState},
                cost=costs.get(record.id, (0.0, None))[0],
                currency=costs.get(record.id, (0.0, None))[1],
                last_activity=activity.get(record.id),
                priority=record.priority,
            )
            for record in records
        ]

    def _study_record(self, study: str) -> StudyRecord:
        record = self.known_studies().get(study) or self.known_studies(fresh=True).get(study)
        if record is None:
            raise NotFoundError(f"no study '{study}' in the catalog", hint="See the studies with: biomarkerflow status")
        return record

    def study_detail(self, study: str) -> dict[str, Any]:
        """A study's config, files per state, progress per day, why files wait, its subjects."""
        record = self._study_record(study)
        [overview] = self.study_overviews(study)
        # Progress per day and subjects change slowly and take the longest to count.
        totals = self.recent.get(("detail", study), lambda: self._study_totals(study), slower=DETAIL_SLOWER)
        return {
            **overview.as_json(),
            "config": record.config,
            "config_source": record.config_source,
            "output_location": record.output_location,
            "data_location": record.data_location,
            **totals,
        }

    def _study_totals(self, study: str) -> dict[str, Any]:
        return {
            "progress": [
                {"day": day, "state": state, "files": n} for day, state, n in self.catalog.finished_per_day(study)
            ],
            "waiting_reasons": [{"reason": r, "files": n} for r, n in self.catalog.waiting_reasons(study)],
            "subjects": len(self.subjects(study)),
        }

    def subjects(self, study: str) -> list[dict[str, Any]]:
        """Each subject of the study with its files per state."""
        self.require_studies([study])
        return self.recent.get(
            ("subjects", study),
            lambda: [{"subject": s, "counts": c} for s, c in self.catalog.subjects(study)],
            slower=DETAIL_SLOWER,
        )

    def last_runs(self, file_ids: list[int]) -> dict[int, str]:
        """Each file's newest run id (files never run are left out): one query for a page of files."""
        return self.catalog.last_runs(file_ids)

    def files_page(
        self, where: FileFilter, offset: int = 0, limit: int = 100, after: int | None = None
    ) -> Page[FileRecord]:
        """Files in id order: a page from `offset`, or (faster, deep in a long list) after file id `after`."""
        if where.study_id is not None:
            self.require_studies([where.study_id])
        # The total is a count of every match (20 ms over 100k files on PostgreSQL): shared like
        # a study's totals; the page itself is always read afresh.
        total = self.recent.get(("file count", where), lambda: self.catalog.count_files(where))
        return self.catalog.files_page(where, offset, limit, after, total=total)

    def runs_page(self, where: RunFilter, offset: int = 0, limit: int = 100) -> Page[RunRecord]:
        if where.study_id is not None:
            self.require_studies([where.study_id])
        return self.catalog.runs_page(where, offset, limit)

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """A run in full: metering, cost, the estimate made before it, its file's attempts, provenance."""
        run = self.catalog.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run '{run_id}' in the catalog", hint="Runs are listed under /api/v1/runs.")
        file = self.catalog.get_file(run.file_id)
        estimates = [e for e in self.catalog.estimates(run.pipeline) if e.run_id == run_id] if run.pipeline else []
        attempts = self.catalog.runs(file_id=run.file_id)
        return {
            **run_json(run),
            "traceback": run.traceback,
            "file": file_json(file) if file else None,
            "estimate": (
                {"predicted": estimates[-1].predicted, "actual": estimates[-1].actual, "at": _time(estimates[-1].at)}
                if estimates
                else None
            ),
            "attempts": [
                {
                    "id": r.id,
                    "attempt": r.attempt,
                    "outcome": r.outcome,
                    "error": r.error,
                    "started_at": _time(r.started_at),
                }
                for r in attempts
            ],
        }
