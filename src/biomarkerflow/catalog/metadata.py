"""Subject metadata: the fields a study's metadata files give each subject (height, time zone, ...)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.gates import upsert_mark
from biomarkerflow.catalog.models import SubjectMetadata


class Metadata:
    """Per study and subject, the metadata fields as last ingested, and from which files."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert(self, study_id: str, rows: dict[str, dict[str, Any]], source: str) -> list[str]:
        """Store subject metadata; returns the subjects whose fields changed."""
        return list(self.ingest(study_id, rows, source))

    def ingest(
        self, study_id: str, rows: dict[str, dict[str, Any]], source: str, sources_sha256: str | None = None
    ) -> dict[str, dict[str, Any] | None]:
        """Store subject metadata and the hash of the files it came from (in one transaction: the
        next check skips files with that hash); returns each changed subject -> its fields before (None: new)."""
        changed: dict[str, dict[str, Any] | None] = {}
        now = utcnow()
        with self._db.session() as session:
            known = {
                r.subject: r
                for r in session.scalars(select(SubjectMetadata).where(SubjectMetadata.study_id == study_id))
            }
            for subject, fields in rows.items():
                row = known.get(subject)
                if row is None:
                    session.add(
                        SubjectMetadata(
                            study_id=study_id, subject=subject, fields=fields, source=source, updated_at=now
                        )
                    )
                    changed[subject] = None
                elif row.fields != fields:
                    changed[subject] = dict(row.fields)
                    row.fields, row.source, row.updated_at = fields, source, now
            # Rows stored without the files' hash (None) make the next check read the files again.
            upsert_mark(session, study_id, metadata_sha256=sources_sha256)
        return changed

    def of_study(self, study_id: str) -> dict[str, dict[str, Any]]:
        """Subject -> fields."""
        with self._db.session() as session:
            rows = session.scalars(select(SubjectMetadata).where(SubjectMetadata.study_id == study_id))
            return {r.subject: dict(r.fields) for r in rows}
