"""Studies: registering a config, looking studies up, and marking finished results STALE."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.files import move
from biomarkerflow.catalog.models import DataFile, FileState, Study
from biomarkerflow.catalog.records import StudyRecord
from biomarkerflow.errors import CatalogError


def _study_record(row: Study) -> StudyRecord:
    return StudyRecord(
        id=row.id,
        config_source=row.config_source,
        config_sha256=row.config_sha256,
        config=dict(row.config),
        output_location=row.output_location,
        data_location=row.data_location,
        priority=row.priority,
    )


class Studies:
    """The registered studies, each with the config (and its hash) it was last scanned with."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, study_id: str) -> StudyRecord | None:
        with self._db.session() as session:
            row = session.get(Study, study_id)
            return _study_record(row) if row else None

    def all(self) -> list[StudyRecord]:
        """Every study, highest priority first."""
        with self._db.session() as session:
            rows = session.scalars(select(Study).order_by(Study.priority.desc(), Study.id))
            return [_study_record(r) for r in rows]

    def upsert(
        self,
        study_id: str,
        *,
        config_source: str,
        config_sha256: str,
        config: dict[str, Any],
        output_location: str,
        data_location: str,
        priority: int,
    ) -> str:
        """Register or update a study; returns 'new', 'changed' or 'unchanged'."""
        now = utcnow()
        with self._db.session() as session:
            row = session.get(Study, study_id)
            if row is None:
                session.add(
                    Study(
                        id=study_id,
                        config_source=config_source,
                        config_sha256=config_sha256,
                        config=config,
                        output_location=output_location,
                        data_location=data_location,
                        priority=priority,
                        registered_at=now,
                        updated_at=now,
                    )
                )
                return "new"
            if row.config_sha256 == config_sha256 and row.config_source == config_source:
                return "unchanged"
            if row.config_source != config_source:
                raise CatalogError(
                    f"study id '{study_id}' in {config_source} is already used by {row.config_source}",
                    hint="Each study needs its own id: change `study:` in one of the two configs.",
                )
            row.config_sha256 = config_sha256
            row.config = config
            row.output_location = output_location
            row.data_location = data_location
            row.priority = priority
            row.updated_at = now
            return "changed"

    def move_config(self, study_id: str, config_source: str) -> None:
        """The study's config file is now `config_source` (renamed or moved; same study id)."""
        with self._db.session() as session:
            row = session.get(Study, study_id)
            if row is None:
                raise CatalogError(f"no study '{study_id}' in the catalog")
            row.config_source = config_source
            row.updated_at = utcnow()

    def mark_stale(self, study_id: str, reason: str, subjects: Iterable[str] | None = None) -> int:
        """Finished files whose results no longer match the study's pipeline: SUCCEEDED/EXCLUDED/FAILED -> STALE.

        Their earlier results stay on disk, addressable by run id; the next process run
        recomputes them (attempts start again from zero).
        """
        finished = [FileState.SUCCEEDED.value, FileState.EXCLUDED.value, FileState.FAILED.value]
        count = 0
        with self._db.session() as session:
            query = select(DataFile.id).where(DataFile.study_id == study_id, DataFile.state.in_(finished))
            if subjects is not None:
                query = query.where(DataFile.subject.in_(list(subjects)))
            for file_id in session.scalars(query).all():
                count += move(session, file_id, finished, FileState.STALE.value, reason, attempts=0)
        return count

    def known_config_sha(self, config_source: str) -> str | None:
        """The hash of the config last registered from `config_source`: an unchanged config is skipped."""
        with self._db.session() as session:
            return session.scalar(select(Study.config_sha256).where(Study.config_source == config_source))
