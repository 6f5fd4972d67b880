"""What `status` shows of each study: files per state, why files wait or failed, and notices.

Counted and grouped in the database: files per state and per reason come from GROUP BY
queries, so a study of 100k waiting files reads a row per distinct reason, not a row per
file. Reasons that differ only in per-file details (subject ids, file names) fold into one
group (`requirements.reason_group`) with a few example files; every file is read only when
asked for (`every_file`: `status --all`, `--json`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from biomarkerflow.catalog.connection import Database
from biomarkerflow.catalog.models import DataFile, FileState, Run
from biomarkerflow.catalog.records import FailureDetail, ReasonGroup, StudyStatus
from biomarkerflow.catalog.studies import Studies

EXAMPLES = 3  # example files shown per reason group

# Parts of a reason that differ from file to file: quoted names (subject ids, file names,
# patterns) and a changed file's age (stages/requirements.py words them).
_QUOTED = re.compile(r"'[^']*'")
_AGE = re.compile(r"changed \d+ s ago")


def reason_group(reason: str) -> str:
    """A reason without what differs from one file to the next: what `status` groups files by.

    "no metadata row for subject 'S0042'" -> "no metadata row for subject '...'".
    """
    return _AGE.sub("changed ... s ago", _QUOTED.sub("'...'", reason))


# The text each state's files are grouped by: why they wait, the error they failed with, the gates they fail.
_TEXT: dict[str, Any] = {
    FileState.WAITING.value: func.coalesce(DataFile.reason, ""),
    FileState.FAILED.value: func.coalesce(func.nullif(DataFile.last_error, ""), DataFile.reason, ""),
    FileState.EXCLUDED.value: func.coalesce(DataFile.reason, ""),
}


class StatusReport:
    """Reads a study's state for `status`: counts, reason groups, failure details, notices."""

    def __init__(self, db: Database, studies: Studies) -> None:
        self._db = db
        self._studies = studies

    def status(self, study_id: str | None = None, every_file: bool = True) -> list[StudyStatus]:
        out: list[StudyStatus] = []
        for study in self._studies.all():
            if study_id is not None and study.id != study_id:
                continue
            with self._db.session() as session:
                counts = {state.value: 0 for state in FileState}
                rows = session.execute(
                    select(DataFile.state, func.count()).where(DataFile.study_id == study.id).group_by(DataFile.state)
                )
                counts.update({state: int(n) for state, n in rows})
                groups = [g for state in _TEXT if counts.get(state) for g in _groups(session, study.id, state)]
                notices = _notices(session, study.id) if counts.get(FileState.SUCCEEDED.value) else []
                groups.extend(_notice_groups(notices))
                lists = {state: _every_file(session, study.id, state) if every_file else [] for state in _TEXT}
                shown = lists[FileState.FAILED.value] or [
                    e for g in groups if g.state == FileState.FAILED.value for e in g.examples
                ]
                details = _failure_details(session, study.id, [path for path, _ in shown])
            out.append(
                StudyStatus(
                    study_id=study.id,
                    counts=counts,
                    waiting=lists[FileState.WAITING.value],
                    failed=lists[FileState.FAILED.value],
                    excluded=lists[FileState.EXCLUDED.value],
                    failure_details=details,
                    notices=notices if every_file else [],
                    groups=groups,
                    every_file=every_file,
                )
            )
        return out


def _groups(session: Any, study_id: str, state: str) -> list[ReasonGroup]:
    """A state's files grouped by reason: one GROUP BY on the exact text, folded here."""
    text = _TEXT[state]
    where = (DataFile.study_id == study_id, DataFile.state == state)
    count, first = func.count(), func.min(DataFile.relative_path)
    folded: dict[str, list[tuple[str, str, int]]] = defaultdict(list)  # group -> (first path, text, files)
    for reason, n, path in session.execute(select(text, count, first).where(*where).group_by(text)):
        folded[reason_group(reason)].append((path, reason, int(n)))
    groups: list[ReasonGroup] = []
    for reason, exact in folded.items():
        files = sum(n for _, _, n in exact)
        examples = sorted((path, text_) for path, text_, _ in exact)[:EXAMPLES]
        if len(examples) < min(EXAMPLES, files):  # few distinct texts: more files of the same ones
            texts = [t for _, t, _ in exact]
            query = select(DataFile.relative_path, text).where(*where, text.in_(texts))
            examples = [(p, t) for p, t in session.execute(query.order_by(DataFile.relative_path).limit(EXAMPLES))]
        groups.append(ReasonGroup(state, reason, files, examples))
    return sorted(groups, key=lambda g: (-g.files, g.reason))


def _every_file(session: Any, study_id: str, state: str) -> list[tuple[str, str]]:
    query = select(DataFile.relative_path, _TEXT[state]).where(DataFile.study_id == study_id, DataFile.state == state)
    return [(path, text) for path, text in session.execute(query.order_by(DataFile.relative_path))]


def _notice_groups(notices: list[tuple[str, str]]) -> list[ReasonGroup]:
    folded: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, notice in notices:
        folded[reason_group(notice)].append((path, notice))
    groups = [ReasonGroup("NOTE", reason, len(found), sorted(found)[:EXAMPLES]) for reason, found in folded.items()]
    return sorted(groups, key=lambda g: (-g.files, g.reason))


def _failure_details(session: Any, study_id: str, paths: Iterable[str]) -> dict[str, FailureDetail]:
    """The last run of each FAILED file named: the step that raised and its traceback."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    last: dict[str, FailureDetail] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(DataFile.relative_path, Run.id, Run.failed_step, Run.traceback)
            .join(DataFile, DataFile.id == Run.file_id)
            .where(
                DataFile.study_id == study_id,
                DataFile.state == FileState.FAILED.value,
                DataFile.relative_path.in_(wanted[start : start + 500]),
            )
            .order_by(Run.started_at, Run.attempt)
        ).all()
        last.update({path: FailureDetail(step, traceback, run_id) for path, run_id, step, traceback in rows})
    return {path: last.get(path, FailureDetail(None, None, None)) for path in wanted}


def _notices(session: Any, study_id: str) -> list[tuple[str, str]]:
    """(relative path, notice) of every SUCCEEDED file whose current run has notices."""
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
