"""Paged, filtered reads for the REST API and dashboard: nothing here loads every file.

Each query pages and counts in the database, so a page of a 100k-file study costs the
same as one of a 10-file study (indexes: files by state and study, runs by file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, Text, func, select

from biomarkerflow.catalog.connection import Database
from biomarkerflow.catalog.files import file_record
from biomarkerflow.catalog.models import DataFile, FileEvent, Run
from biomarkerflow.catalog.records import FileRecord, RunRecord
from biomarkerflow.catalog.runs import run_record

T = TypeVar("T")

MAX_PAGE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: its items, and how many match in all."""

    items: list[T]
    total: int
    offset: int
    limit: int
    next_after: int | None = None  # for lists in id order: pass as `after` for the next page


@dataclass(frozen=True)
class FileFilter:
    """Which files: every field left None matches all. Text filters match a part, any case."""

    study_id: str | None = None
    states: tuple[str, ...] = ()
    subject: str | None = None
    reason: str | None = None
    error: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class RunFilter:
    study_id: str | None = None
    file_id: int | None = None
    subject: str | None = None
    outcome: str | None = None


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    # LIKE with the user's text escaped: '%' and '_' in a file name are literal characters.
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


def _file_query(f: FileFilter) -> Select[DataFile]:
    query = select(DataFile)
    if f.study_id is not None:
        query = query.where(DataFile.study_id == f.study_id)
    if f.states:
        query = query.where(DataFile.state.in_(f.states))
    if f.subject is not None:
        query = query.where(DataFile.subject == f.subject)
    if f.reason:
        query = query.where(_contains(DataFile.reason, f.reason))
    if f.error:
        query = query.where(_contains(DataFile.last_error, f.error))
    if f.path:
        query = query.where(_contains(DataFile.relative_path, f.path))
    return query


def _run_query(f: RunFilter) -> Select[Run]:
    query = select(Run)
    if f.study_id is not None:
        query = query.where(Run.study_id == f.study_id)
    if f.file_id is not None:
        query = query.where(Run.file_id == f.file_id)
    if f.outcome is not None:
        query = query.where(Run.outcome == f.outcome)
    if f.subject is not None:
        query = query.where(Run.file_id.in_(select(DataFile.id).where(DataFile.subject == f.subject)))
    return query


class Browse:
    def __init__(self, db: Database) -> None:
        self._db = db

    def files(
        self, f: FileFilter, offset: int = 0, limit: int = 100, after: int | None = None, total: int | None = None
    ) -> Page[FileRecord]:
        """Files in id order. `after` (the last id of the previous page) reads the next page
        through the primary key; a deep `offset` makes the database step over every row before it."""
        limit = max(1, min(limit, MAX_PAGE))
        query = _file_query(f)
        if total is None:
            total = self.count_files(f)
        with self._db.session() as session:
            page = query.order_by(DataFile.id)
            page = page.where(DataFile.id > after) if after is not None else page.offset(offset)
            items = [file_record(r) for r in session.scalars(page.limit(limit))]
            next_after = items[-1].id if len(items) == limit else None
            return Page(items, total, offset if after is None else 0, limit, next_after)

    def count_files(self, f: FileFilter) -> int:
        with self._db.session() as session:
            return session.scalar(select(func.count()).select_from(_file_query(f).subquery())) or 0

    def runs(self, f: RunFilter, offset: int = 0, limit: int = 100) -> Page[RunRecord]:
        limit = max(1, min(limit, MAX_PAGE))
        query = _run_query(f)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(Run.started_at.desc(), Run.id).offset(offset).limit(limit))
            return Page([run_record(r) for r in rows], total, offset, limit)

    def last_runs(self, file_ids: list[int]) -> dict[int, str]:
        """Each file's newest run id, for a page of files in one query (files never run are left out)."""
        if not file_ids:
            return {}
        with self._db.session() as session:
            rows = session.execute(
                select(Run.file_id, Run.id).where(Run.file_id.in_(file_ids)).order_by(Run.started_at, Run.id)
            )
            return {file_id: run_id for file_id, run_id in rows}  # the newest comes last

    def state_counts(self, study_id: str | None = None) -> dict[str, dict[str, int]]:
        """Files per state of every study (or of one), counted in the database."""
        query = select(DataFile.study_id, DataFile.state, func.count(DataFile.id))
        if study_id is not None:
            query = query.where(DataFile.study_id == study_id)
        with self._db.session() as session:
            counts: dict[str, dict[str, int]] = {}
            for study, state, n in session.execute(query.group_by(DataFile.study_id, DataFile.state)):
                counts.setdefault(study, {})[state] = int(n)
            return counts

    def cost_totals(self, study_id: str | None = None) -> dict[str, tuple[float, str | None]]:
        """What every study's (or one study's) finished runs cost so far: (sum, currency)."""
        query = select(Run.study_id, func.sum(Run.cost), func.max(Run.currency)).where(Run.cost.is_not(None))
        if study_id is not None:
            query = query.where(Run.study_id == study_id)
        with self._db.session() as session:
            rows = session.execute(query.group_by(Run.study_id))
            return {study: (float(total or 0.0), currency) for study, total, currency in rows}

    def last_activities(self, study_id: str | None = None) -> dict[str, datetime]:
        """Every study's (or one study's) latest file change: a file's `updated_at` moves with
        each state change (files.move), so the 5x larger event table is not read."""
        query = select(DataFile.study_id, func.max(DataFile.updated_at))
        if study_id is not None:
            query = query.where(DataFile.study_id == study_id)
        with self._db.session() as session:
            rows = session.execute(query.group_by(DataFile.study_id))
            return {study: at for study, at in rows if at is not None}

    def waiting_reasons(self, study_id: str, limit: int = 50) -> list[tuple[str, int]]:
        """WAITING files grouped by why, most common first."""
        with self._db.session() as session:
            count = func.count(DataFile.id)
            rows = session.execute(
                select(DataFile.reason, count)
                .where(DataFile.study_id == study_id, DataFile.state == "WAITING")
                .group_by(DataFile.reason)
                .order_by(count.desc())
                .limit(limit)
            )
            return [(reason or "", int(n)) for reason, n in rows]

    def subjects(self, study_id: str) -> list[tuple[str, dict[str, int]]]:
        """Each subject with its files per state."""
        with self._db.session() as session:
            rows = session.execute(
                select(DataFile.subject, DataFile.state, func.count(DataFile.id))
                .where(DataFile.study_id == study_id)
                .group_by(DataFile.subject, DataFile.state)
            )
            by_subject: dict[str, dict[str, int]] = {}
            for subject, state, n in rows:
                by_subject.setdefault(subject or "", {})[state] = int(n)
            return sorted(by_subject.items())

    def finished_per_day(self, study_id: str) -> list[tuple[str, str, int]]:
        """(day, state, files) for every file that reached SUCCEEDED or FAILED, per UTC day."""
        day = func.substr(func.cast(FileEvent.at, Text()), 1, 10)
        with self._db.session() as session:
            rows = session.execute(
                select(day, FileEvent.to_state, func.count(FileEvent.id))
                .join(DataFile, DataFile.id == FileEvent.file_id)
                .where(DataFile.study_id == study_id, FileEvent.to_state.in_(("SUCCEEDED", "FAILED")))
                .group_by(day, FileEvent.to_state)
                .order_by(day)
            )
            return [(str(d), state, int(n)) for d, state, n in rows]
