"""What `biomarkerflow gc` removes from a study's output location: leftovers of work that
was killed, never anything a live job or the tables in force use.

- temporary publish folders and files (`.<name>.<uuid>.tmp`: a run folder or snapshot being
  copied into place, a pointer being replaced) older than `MIN_AGE_SECONDS`;
- run folders without their `_SUCCESS` marker (an upload to an object store that was cut
  short) whose run is not running, older than `MIN_AGE_SECONDS`;
- whole run folders of runs the catalog records as not succeeded (lost, interrupted, or
  failed after it published: killed before its outcome was recorded, a store that failed
  after the upload) and that are no file's current result, older than `MIN_AGE_SECONDS`;
- snapshots of the consolidated tables out of force for longer than their grace period.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from biomarkerflow.errors import StorageError
from biomarkerflow.results import snapshots
from biomarkerflow.storage import store

MIN_AGE_SECONDS = 3600.0  # a publish takes seconds: anything temporary this old was abandoned
RUNS_FOLDER = "runs"
RUN_FOLDER_DEPTH = 3  # runs/<subject>/<file stem>/<run id>/
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class Leftover:
    kind: str  # "temporary" | "unmarked run folder" | "abandoned run folder" | "expired snapshot" | ...
    url: str
    bytes: int
    folder: bool = True  # False: one file


def _entries(location: str) -> list[store.FileEntry]:
    try:
        return store.list_files(location, ["*"]) if store.exists(location) else []
    except StorageError:
        return []


def _old(entries: Iterable[store.FileEntry], now: float) -> bool:
    """Every file untouched for MIN_AGE_SECONDS (a file without a time counts as old)."""
    return all(entry.mtime is None or now - entry.mtime >= MIN_AGE_SECONDS for entry in entries)


def _temporary(output_location: str, entries: list[store.FileEntry], now: float) -> list[Leftover]:
    """`.x.<uuid>.tmp` files, and folders with such a name, abandoned."""
    groups: dict[str, list[store.FileEntry]] = defaultdict(list)
    for entry in entries:
        parts = PurePosixPath(entry.relative_path).parts
        for depth, part in enumerate(parts):
            if _TEMPORARY.match(part):
                groups["/".join(parts[: depth + 1])].append(entry)
                break
    base = output_location.rstrip("/")
    return [
        Leftover("temporary", f"{base}/{path}", sum(e.size for e in group), folder=group[0].relative_path != path)
        for path, group in sorted(groups.items())
        if _old(group, now)
    ]


def _run_folders(
    output_location: str, entries: list[store.FileEntry], running: set[str], abandoned: set[str], now: float
) -> list[Leftover]:
    """Run folders without `_SUCCESS` (a cut-short upload) whose run is not running, and whole
    ones of abandoned runs."""
    folders: dict[str, list[store.FileEntry]] = defaultdict(list)
    for entry in entries:
        parts = PurePosixPath(entry.relative_path).parts
        if len(parts) > RUN_FOLDER_DEPTH + 1 and parts[0] == RUNS_FOLDER and not any(p.startswith(".") for p in parts):
            folders["/".join(parts[: RUN_FOLDER_DEPTH + 1])].append(entry)
    base = output_location.rstrip("/")
    found = []
    for folder, group in sorted(folders.items()):
        run_id = PurePosixPath(folder).name
        marked = any(PurePosixPath(e.relative_path).name == store.SUCCESS_MARKER for e in group)
        kind = "abandoned run folder" if marked and run_id in abandoned else "unmarked run folder"
        if (marked and run_id not in abandoned) or run_id in running or not _old(group, now):
            continue
        found.append(Leftover(kind, f"{base}/{folder}", sum(e.size for e in group)))
    return found


def _expired_snapshots(output_location: str, entries: list[store.FileEntry]) -> list[Leftover]:
    """Snapshots long out of force, found in the output's one listing (with their sizes)."""
    sizes: dict[str, int] = defaultdict(int)
    prefix = (snapshots.TABLES_FOLDER, snapshots.SNAPSHOTS_FOLDER)
    for entry in entries:
        parts = PurePosixPath(entry.relative_path).parts
        if parts[:2] == prefix and len(parts) > 3 and not parts[2].startswith("."):
            sizes[parts[2]] += entry.size
    ids = set(snapshots.expired(output_location, datetime.now(UTC), ids=list(sizes)))
    return [
        Leftover("expired snapshot", snapshots.snapshot_location(output_location, snapshot_id), sizes[snapshot_id])
        for snapshot_id in sorted(ids)
    ]


def leftovers(
    output_location: str,
    running_runs: set[str],
    abandoned_runs: Collection[str] = (),
    now: float | None = None,
) -> list[Leftover]:
    """Everything `gc` would remove under one study's output location (one listing).

    `running_runs`: runs the catalog has running (their folders are never touched);
    `abandoned_runs`: finished runs that did not succeed and are no file's current result."""
    now = time.time() if now is None else now
    entries = _entries(output_location)
    return [
        *_temporary(output_location, entries, now),
        *_run_folders(output_location, entries, running_runs, set(abandoned_runs), now),
        *_expired_snapshots(output_location, entries),
    ]


def remove(found: Iterable[Leftover]) -> None:
    for leftover in found:
        if leftover.folder:
            store.remove_folder(leftover.url)
        else:
            store.remove(leftover.url)
