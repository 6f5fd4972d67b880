"""Data files and their states: registering listed files, gating, looking files up.

`move` is the state machine's one primitive: a compare-and-set UPDATE (`... WHERE state =
:current`) plus its audit event, so two schedulers or workers can never both move the same
file, whatever database is underneath. Every state change in the catalog goes through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.models import DataFile, FileEvent, FileState
from biomarkerflow.catalog.records import FileRecord, RegisterInfo

# A file some worker holds: claimed, or running.
ACTIVE_STATES = (FileState.CLAIMED.value, FileState.RUNNING.value)

# (url, relative_path, subject, size, mtime, fingerprint): one listed file.
ListedFile = tuple[str, str, str | None, int, float | None, str]


def log_event(session: Session, file_id: int, from_state: str | None, to_state: str, reason: str | None) -> None:
    """Add a file's state change to its audit trail (what `status` and `events` show)."""
    session.add(FileEvent(file_id=file_id, at=utcnow(), from_state=from_state, to_state=to_state, reason=reason))


def move(
    session: Session, file_id: int, expected: Iterable[str], to_state: str, reason: str | None, **values: Any
) -> bool:
    """Move one file from one of `expected` states to `to_state`; False if someone else moved it first."""
    expected = list(expected)
    current = session.scalar(select(DataFile.state).where(DataFile.id == file_id))
    if current not in expected:
        return False
    result = session.execute(
        update(DataFile)
        .where(DataFile.id == file_id, DataFile.state == current)
        .values(state=to_state, reason=reason, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    log_event(session, file_id, current, to_state, reason)
    return True


def file_record(row: DataFile) -> FileRecord:
    return FileRecord(
        id=row.id,
        study_id=row.study_id,
        url=row.url,
        relative_path=row.relative_path,
        subject=row.subject,
        size=row.size,
        fingerprint=row.fingerprint,
        fingerprint_seen_at=row.fingerprint_seen_at,
        state=row.state,
        reason=row.reason,
        attempts=row.attempts,
        current_run_id=row.current_run_id,
        last_error=row.last_error,
        lease_expires_at=row.lease_expires_at,
    )


# What a file that comes back goes back to: its results if it had them, else the start.
_RESTORABLE = (FileState.SUCCEEDED.value, FileState.EXCLUDED.value, FileState.FAILED.value)


def _remove(session: Session, row: DataFile) -> int:
    """A file gone from the data location: REMOVED (already so: nothing to do)."""
    if row.state == FileState.REMOVED.value:
        return 0
    return int(move(session, row.id, [row.state], FileState.REMOVED.value, "gone from the data location"))


def _state_before_removal(session: Session, file_id: int) -> str:
    before = session.scalar(
        select(FileEvent.from_state)
        .where(FileEvent.file_id == file_id, FileEvent.to_state == FileState.REMOVED.value)
        .order_by(FileEvent.id.desc())
        .limit(1)
    )
    return before if before in _RESTORABLE else FileState.DISCOVERED.value


def _restore(session: Session, row: DataFile, reason: str) -> int:
    """A REMOVED file whose content is back: the state it had (its results stand), or DISCOVERED."""
    return int(move(session, row.id, [row.state], _state_before_removal(session, row.id), reason))


def _move_to(session: Session, row: DataFile, entry: ListedFile) -> int:
    """A catalogued file found under a new name with the same content: it keeps its state and runs."""
    url, relative_path, _, size, mtime, _ = entry
    old = row.relative_path
    row.url, row.relative_path, row.size, row.mtime = url, relative_path, size, mtime
    reason = f"moved from {old} (same content)"
    if row.state == FileState.REMOVED.value:
        return _restore(session, row, reason)
    row.updated_at = utcnow()
    log_event(session, row.id, row.state, row.state, reason)
    return 1


def _new_file(study_id: str, entry: ListedFile, now: datetime) -> DataFile:
    url, relative_path, subject, size, mtime, fingerprint = entry
    return DataFile(
        study_id=study_id,
        url=url,
        relative_path=relative_path,
        subject=subject,
        size=size,
        mtime=mtime,
        fingerprint=fingerprint,
        fingerprint_seen_at=now,
        state=FileState.DISCOVERED.value,
        reason="new file",
        attempts=0,
        discovered_at=now,
        updated_at=now,
    )


class Files:
    """The files of each study: what a scan registers, the requirement gate's verdicts, lookups."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, study_id: str, entries: Iterable[ListedFile], *, complete: bool = True) -> RegisterInfo:
        """Add new files as DISCOVERED; a file whose fingerprint changed starts over.

        `entries` is the whole listing when `complete`: a catalogued file missing from it
        becomes REMOVED (unless a job holds it), and one that comes back with the same
        fingerprint gets its earlier state back; a new name with the fingerprint and subject
        of a file gone in this listing (or earlier) is that file, moved: nothing is recomputed.
        """
        now = utcnow()
        new = changed = unchanged = restored = moved = 0
        added: list[DataFile] = []
        entries = list(entries)
        with self._db.session() as session:
            known = {row.url: row for row in session.scalars(select(DataFile).where(DataFile.study_id == study_id))}
            listed = {entry[0] for entry in entries}
            gone = [
                row for url, row in known.items() if complete and url not in listed and row.state not in ACTIVE_STATES
            ]
            by_content = {(row.fingerprint, row.subject): row for row in gone}
            for entry in entries:
                url, _, subject, size, mtime, fingerprint = entry
                row = known.get(url)
                if row is None:
                    same = by_content.pop((fingerprint, subject), None)
                    if same is not None:
                        moved += _move_to(session, same, entry)
                        continue
                    added.append(_new_file(study_id, entry, now))
                    new += 1
                elif row.state == FileState.REMOVED.value and row.fingerprint == fingerprint:
                    restored += _restore(session, row, "back in the data location, unchanged")
                elif row.fingerprint != fingerprint:
                    row.size, row.mtime, row.fingerprint, row.fingerprint_seen_at = size, mtime, fingerprint, now
                    row.subject = subject
                    # A running job notices the new fingerprint when it finishes (see Runs.finish).
                    if row.state not in ACTIVE_STATES:
                        move(
                            session, row.id, [row.state], FileState.DISCOVERED.value, "file content changed", attempts=0
                        )
                    changed += 1
                else:
                    if row.subject != subject:
                        row.subject = subject
                    unchanged += 1
            removed = sum(_remove(session, row) for row in by_content.values())
            # One batched INSERT for all new files (a first scan of 100k objects), then their events.
            session.add_all(added)
            session.flush()
            for file in added:
                log_event(session, file.id, None, FileState.DISCOVERED.value, "new file")
        return RegisterInfo(
            new=new, changed=changed, unchanged=unchanged, removed=removed, restored=restored, moved=moved
        )

    def find(self, study_id: str | None = None, states: Iterable[str] | None = None) -> list[FileRecord]:
        with self._db.session() as session:
            query = select(DataFile).order_by(DataFile.study_id, DataFile.relative_path)
            if study_id is not None:
                query = query.where(DataFile.study_id == study_id)
            if states is not None:
                query = query.where(DataFile.state.in_(list(states)))
            return [file_record(r) for r in session.scalars(query)]

    def get(self, file_id: int) -> FileRecord | None:
        with self._db.session() as session:
            row = session.get(DataFile, file_id)
            return None if row is None else file_record(row)

    def named(self, urls: Iterable[str] = (), relative_path: str | None = None) -> list[FileRecord]:
        """Files whose URL is one of `urls`, or else whose path relative to its data location matches."""
        with self._db.session() as session:
            wanted = list(urls)
            rows = list(session.scalars(select(DataFile).where(DataFile.url.in_(wanted)))) if wanted else []
            if not rows and relative_path is not None:
                rows = list(session.scalars(select(DataFile).where(DataFile.relative_path == relative_path)))
            return [file_record(r) for r in rows]

    def next_retry_at(self, study_ids: list[str]) -> datetime | None:
        """The earliest time a READY file held back by a retry backoff may run."""
        with self._db.session() as session:
            return session.scalar(
                select(func.min(DataFile.not_before)).where(
                    DataFile.state == FileState.READY.value,
                    DataFile.not_before > utcnow(),
                    DataFile.study_id.in_(study_ids),
                )
            )

    def subject_counts(self, study_id: str) -> dict[str, int]:
        """Files per subject: what the "all N files of a subject arrived" requirement counts."""
        with self._db.session() as session:
            rows = session.execute(
                select(DataFile.subject, func.count())
                .where(DataFile.study_id == study_id, DataFile.subject.is_not(None))
                .group_by(DataFile.subject)
            )
            return {str(subject): int(count) for subject, count in rows}

    def set_gate(self, file_id: int, expected_state: str, ready: bool, reason: str | None) -> bool:
        """Record a requirement check: READY, or WAITING with why. No-op when nothing changed."""
        to_state = FileState.READY.value if ready else FileState.WAITING.value
        with self._db.session() as session:
            row = session.get(DataFile, file_id)
            if row is None or row.state != expected_state:
                return False
            if row.state == to_state and row.reason == reason:
                return False
            if row.state == to_state:  # same state, new reason: update without a CAS race on state
                row.reason = reason
                row.updated_at = utcnow()
                log_event(session, file_id, row.state, to_state, reason)
                return True
            return move(session, file_id, [expected_state], to_state, reason)

    def version(self, study_id: str) -> str:
        """Changes whenever a file of the study is added or changes state or reason: its count
        and latest change, two aggregates over the study's rows."""
        with self._db.session() as session:
            count, latest = session.execute(
                select(func.count(), func.max(DataFile.updated_at)).where(DataFile.study_id == study_id)
            ).one()
        return f"{count}:{latest.isoformat() if latest else '-'}"

    def events(self, file_id: int) -> list[tuple[datetime, str | None, str, str | None]]:
        """A file's audit trail: (when, from state, to state, why), oldest first."""
        with self._db.session() as session:
            rows = session.scalars(select(FileEvent).where(FileEvent.file_id == file_id).order_by(FileEvent.id))
            return [(e.at, e.from_state, e.to_state, e.reason) for e in rows]
