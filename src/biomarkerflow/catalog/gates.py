"""Incremental gating, the catalog's side: what each study's last check saw (its gate mark),
the files a check must look at, and the verdicts written in batches.

A round with nothing new reads the mark and a few indexed rows and writes nothing; verdicts
are written by one prepared UPDATE run for many files (executemany) and their events in one
INSERT, each UPDATE a compare-and-set on the state and reason the check saw (as files.move
does on the state), so two schedulers gating at once never both move a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.models import DataFile, FileEvent, FileState, StudyGate

# Files per IN list and per transaction: under SQLite's bound-parameter limit, and short
# enough that a scan or a claim waiting for the write lock waits well under a second.
CHUNK = 500
TRANSACTION_FILES = 5000
# More changed subjects than this: read every waiting file of the study and filter here.
SUBJECTS_IN_QUERY = 500

ALWAYS_CHECKED = (FileState.DISCOVERED.value, FileState.STALE.value)


@dataclass(frozen=True)
class GateMark:
    """What a study's last requirement check saw; `subjects` None: never checked (or not since an upgrade)."""

    study_id: str
    metadata_sha256: str | None = None
    signature: str | None = None
    subjects: dict[str, str] | None = None
    gated_at: datetime | None = None


@dataclass(frozen=True)
class GateFile:
    """What the gate reads of one file."""

    id: int
    relative_path: str
    subject: str | None
    fingerprint_seen_at: datetime
    state: str
    reason: str | None
    recheck_at: datetime | None


@dataclass(frozen=True)
class GateVerdict:
    """A check's outcome for one file, to write when it differs from what the file holds."""

    file_id: int
    expected_state: str  # the state the check saw: the compare-and-set's condition
    ready: bool
    reason: str | None
    recheck_at: datetime | None = None

    @property
    def to_state(self) -> str:
        return FileState.READY.value if self.ready else FileState.WAITING.value


def upsert_mark(session: Session, study_id: str, **values: Any) -> None:
    """Insert or update a study's gate mark (concurrent first writers do not collide)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(StudyGate).values(study_id=study_id, **values)
    session.execute(statement.on_conflict_do_update(index_elements=[StudyGate.study_id], set_=values))


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Gates:
    """Gate marks, the files a check must read, and its verdicts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def mark(self, study_id: str) -> GateMark:
        with self._db.session() as session:
            row = session.get(StudyGate, study_id)
            if row is None:
                return GateMark(study_id)
            subjects = None if row.subjects is None else {str(k): str(v) for k, v in row.subjects.items()}
            return GateMark(study_id, row.metadata_sha256, row.signature, subjects, row.gated_at)

    def save_mark(self, study_id: str, signature: str, subjects: dict[str, str]) -> None:
        """Remember what this check saw (after its verdicts are written)."""
        with self._db.session() as session:
            upsert_mark(session, study_id, signature=signature, subjects=subjects, gated_at=utcnow())

    def files(
        self,
        study_id: str,
        *,
        subjects: Iterable[str] = (),
        every_waiting: bool = False,
        now: datetime | None = None,
        also: Sequence[str] = (),
    ) -> list[GateFile]:
        """The files a check must read: every DISCOVERED and STALE file (and of the states in
        `also`), and the WAITING ones of `subjects`, whose re-check time has come (`now`), or
        all of them (`every_waiting`)."""
        wanted = set(subjects)
        waiting = DataFile.state == FileState.WAITING.value
        columns = (
            DataFile.id,
            DataFile.relative_path,
            DataFile.subject,
            DataFile.fingerprint_seen_at,
            DataFile.state,
            DataFile.reason,
            DataFile.recheck_at,
        )
        base = select(*columns).where(DataFile.study_id == study_id)
        queries = [base.where(DataFile.state.in_([*ALWAYS_CHECKED, *also]))]
        if every_waiting or len(wanted) > SUBJECTS_IN_QUERY:
            queries.append(base.where(waiting))
        else:
            queries.extend(base.where(waiting, DataFile.subject.in_(chunk)) for chunk in _chunks(sorted(wanted)))
            if now is not None:
                queries.append(base.where(DataFile.recheck_at <= now, waiting))
        found: dict[int, GateFile] = {}
        with self._db.session() as session:
            for query in queries:
                for row in session.execute(query):
                    found[row.id] = GateFile(*row)
        if every_waiting or len(wanted) <= SUBJECTS_IN_QUERY:
            return list(found.values())
        return [
            f
            for f in found.values()
            if f.state != FileState.WAITING.value
            or f.subject in wanted
            or (now is not None and f.recheck_at is not None and f.recheck_at <= now)
        ]

    def record(self, verdicts: Iterable[GateVerdict], seen: dict[int, GateFile]) -> int:
        """Write the verdicts that change something; how many files moved or got a new reason.

        `seen` is each file as the check read it: a verdict equal to it writes nothing, and a
        file changed by someone else since (state or reason) is left alone. A change of state
        or reason is logged as the file's event (as `files.move` does); a new re-check time
        alone is not.
        """
        pending = [v for v in verdicts if _changes(v, seen[v.file_id])]
        return sum(self._write(chunk, seen) for chunk in _chunks(pending, TRANSACTION_FILES))

    def _write(self, verdicts: Sequence[GateVerdict], seen: dict[int, GateFile]) -> int:
        """One transaction: one prepared UPDATE run for every file (a compare-and-set on the
        state and reason the check saw), then the events of the files it changed."""
        now = utcnow()  # also tells the files this transaction changed from any other
        table = cast(Table, DataFile.__table__)
        cas = (
            table.c.id == bindparam("b_id"),
            table.c.state == bindparam("b_state"),
            table.c.reason.is_not_distinct_from(bindparam("b_reason")),
        )
        logged = [v for v in verdicts if _logged(v, seen[v.file_id])]
        quiet = [v for v in verdicts if not _logged(v, seen[v.file_id])]
        with self._db.session() as session:
            if logged:
                values = {"state": bindparam("to_state"), "reason": bindparam("to_reason"), "updated_at": now}
                session.execute(
                    update(table).where(*cas).values(recheck_at=bindparam("to_recheck"), **values),
                    [_params(v, seen[v.file_id]) for v in logged],
                )
            if quiet:  # the re-check time only
                session.execute(
                    update(table).where(*cas).values(recheck_at=bindparam("to_recheck")),
                    [_params(v, seen[v.file_id]) for v in quiet],
                )
            changed: list[int] = []
            for chunk in _chunks([v.file_id for v in logged]):
                query = select(DataFile.id).where(DataFile.id.in_(list(chunk)), DataFile.updated_at == now)
                changed.extend(session.scalars(query))
            by_id = {v.file_id: v for v in logged}
            events = [
                {"file_id": i, "at": now, "from_state": seen[i].state, "to_state": by_id[i].to_state}
                | {"reason": by_id[i].reason}
                for i in changed
            ]
            if events:
                session.execute(insert(FileEvent), events)
        return len(changed)


def _logged(verdict: GateVerdict, file: GateFile) -> bool:
    return file.state != verdict.to_state or file.reason != verdict.reason


def _changes(verdict: GateVerdict, file: GateFile) -> bool:
    return _logged(verdict, file) or file.recheck_at != verdict.recheck_at


def _params(verdict: GateVerdict, file: GateFile) -> dict[str, Any]:
    return {
        "b_id": file.id,
        "b_state": file.state,
        "b_reason": file.reason,
        "to_state": verdict.to_state,
        "to_reason": verdict.reason,
        "to_recheck": verdict.recheck_at,
    }
