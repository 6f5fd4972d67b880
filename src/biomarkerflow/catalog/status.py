"""What `status` shows of each study: files per state, why files wait or failed, and notices."""

from __future__ import annotations

from sqlalchemy import select

from biomarkerflow.catalog.connection import Database
from biomarkerflow.catalog.files import Files
from biomarkerflow.catalog.models import DataFile, FileState, Run
from biomarkerflow.catalog.records import FailureDetail, FileRecord, StudyStatus
from biomarkerflow.catalog.studies import Studies


class StatusReport:
    """Reads a study's state for `status`: counts, waiting and failed files, failure details, notices."""

    def __init__(self, db: Database, studies: Studies, files: Files) -> None:
        self._db = db
        self._studies = studies
        self._files = files

    def status(self, study_id: str | None = None) -> list[StudyStatus]:
        out: list[StudyStatus] = []
        for study in self._studies.all():
            if study_id is not None and study.id != study_id:
                continue
            files = self._files.find(study.id)
            counts = {state.value: 0 for state in FileState}
            for f in files:
                counts[f.state] += 1
            failed = [f for f in files if f.state == FileState.FAILED.value]
            out.append(
                StudyStatus(
                    study_id=study.id,
                    counts=counts,
                    waiting=[(f.relative_path, f.reason or "") for f in files if f.state == FileState.WAITING.value],
                    failed=[(f.relative_path, f.last_error or f.reason or "") for f in failed],
                    excluded=[(f.relative_path, f.reason or "") for f in files if f.state == FileState.EXCLUDED.value],
                    failure_details=self._failure_details(study.id, failed),
                    notices=self._current_notices(study.id),
                )
            )
        return out

    def _failure_details(self, study_id: str, failed: list[FileRecord]) -> dict[str, FailureDetail]:
        """Each FAILED file's last run: the step that raised and its traceback."""
        if not failed:
            return {}
        with self._db.session() as session:
            rows = session.execute(
                select(Run.file_id, Run.id, Run.failed_step, Run.traceback)
                .join(DataFile, DataFile.id == Run.file_id)
                .where(DataFile.study_id == study_id, DataFile.state == FileState.FAILED.value)
                .order_by(Run.started_at, Run.attempt)
            ).all()
        last = {file_id: FailureDetail(step, traceback, run_id) for file_id, run_id, step, traceback in rows}
        return {f.relative_path: last.get(f.id, FailureDetail(None, None, None)) for f in failed}

    def _current_notices(self, study_id: str) -> list[tuple[str, str]]:
        """(relative path, notice) of every SUCCEEDED file whose current run has notices."""
        with self._db.session() as session:
            rows = session.execute(
                select(DataFile.relative_path, Run.notices)
                .join(Run, Run.id == DataFile.current_run_id)
                .where(
                    DataFile.study_id == study_id,
                    DataFile.state == FileState.SUCCEEDED.value,
                    Run.notices.is_not(None),
                )
                .order_by(DataFile.relative_path)
            ).all()
        return [(path, str(notice)) for path, notices in rows for notice in notices or ()]
