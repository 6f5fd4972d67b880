"""A study's consolidated tables as snapshots, switched in one step.

    tables/snapshots/<id>/<table>.parquet   one snapshot: every table of the study, as of one moment
    tables/_current.json                    which snapshot is in force (its id, tables, contents)
    tables/<table>.parquet                  on local disk: the file in force, for tools that read
                                            files directly (a hard link, replaced one by one)

A new snapshot is written whole beside the others (locally by one rename, on object stores
file by file with its `_SUCCESS` marker last), then `_current.json` is replaced (a rename
locally, one PUT on S3), so a reader that reads the pointer first sees every table of one
snapshot: never one table updated and another not. Snapshots no longer in force are
removed once they are `GRACE_SECONDS` old, so a reader that had just read the pointer
finishes on the snapshot it chose.

Studies consolidated before snapshots have `tables/<table>.parquet` and `tables/_runs.json`
(no pointer); they are read as they are until the next consolidation replaces them.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from biomarkerflow.errors import StorageError
from biomarkerflow.storage import store

TABLES_FOLDER = "tables"
SNAPSHOTS_FOLDER = "snapshots"
POINTER = "_current.json"
LEGACY_MANIFEST = "_runs.json"
GRACE_SECONDS = 3600.0  # a snapshot out of force stays this long for readers still on it
_ID_TIME = "%Y%m%dT%H%M%S%fZ"


def tables_location(output_location: str) -> str:
    return f"{output_location.rstrip('/')}/{TABLES_FOLDER}"


def _pointer_url(output_location: str) -> str:
    return f"{tables_location(output_location)}/{POINTER}"


def snapshot_location(output_location: str, snapshot_id: str) -> str:
    return f"{tables_location(output_location)}/{SNAPSHOTS_FOLDER}/{snapshot_id}"


@dataclass(frozen=True)
class Snapshot:
    """The snapshot in force: where its tables are, and what the manifest says they hold."""

    id: str | None  # None: tables written before snapshots (tables/<name>.parquet)
    tables: dict[str, str]  # name -> URL
    contents: Any  # the manifest: what the tables hold (see consolidate._contents)


def new_id(now: datetime | None = None) -> str:
    """A snapshot id that sorts by time and says when it was made."""
    return f"{(now or datetime.now(UTC)):{_ID_TIME}}-{uuid.uuid4().hex[:8]}"


def made_at(snapshot_id: str) -> datetime | None:
    try:
        return datetime.strptime(snapshot_id.split("-", 1)[0], _ID_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def _read_json(url: str) -> Any:
    try:
        return json.loads(store.read_bytes(url))
    except (StorageError, ValueError):
        return None


def current(output_location: str) -> Snapshot | None:
    """The study's tables in force, None when it has none yet."""
    pointer = _read_json(_pointer_url(output_location))
    if isinstance(pointer, dict) and isinstance(pointer.get("snapshot"), str):
        folder = snapshot_location(output_location, pointer["snapshot"])
        names = [str(name) for name in pointer.get("tables") or []]
        tables = {name: f"{folder}/{name}.parquet" for name in names}
        return Snapshot(pointer["snapshot"], tables, pointer.get("contents"))
    return _legacy(output_location)


def _legacy(output_location: str) -> Snapshot | None:
    location = tables_location(output_location)
    try:
        if not store.exists(location):
            return None
        entries = store.list_files(location, ["*.parquet"])
    except StorageError:
        return None
    tables = {entry.name.removesuffix(".parquet"): entry.url for entry in entries if "/" not in entry.relative_path}
    contents = _read_json(f"{location}/{LEGACY_MANIFEST}")
    return Snapshot(None, tables, contents) if tables or contents is not None else None


def publish(folder: Path, output_location: str, tables: list[str], contents: Any) -> Snapshot:
    """Make the tables in local `folder` (<name>.parquet each) the study's snapshot in force."""
    snapshot_id = new_id()
    store.publish_folder(folder, snapshot_location(output_location, snapshot_id))
    pointer = {
        "snapshot": snapshot_id,
        "tables": sorted(tables),
        "contents": contents,
        "written_at": datetime.now(UTC).isoformat(),
    }
    store.write_atomic(_pointer_url(output_location), json.dumps(pointer, indent=2).encode())
    folder_url = snapshot_location(output_location, snapshot_id)
    published = Snapshot(snapshot_id, {name: f"{folder_url}/{name}.parquet" for name in tables}, contents)
    _refresh_direct_files(output_location, published)
    expire(output_location)
    return published


def _refresh_direct_files(output_location: str, in_force: Snapshot) -> None:
    """`tables/<name>.parquet`: on local disk, each a hard link to the snapshot's file (no
    copy), swapped in one by one, for tools that read the files themselves; tables the
    snapshot no longer has, and the layout before snapshots (`_runs.json`), go. Object
    stores have no links: there, the snapshot's files are the only ones."""
    location = tables_location(output_location)
    local = store.is_local(location)
    for name, url in in_force.tables.items() if local else ():
        target = Path(location.removeprefix("file://")) / f"{name}.parquet"
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        os.link(url.removeprefix("file://"), temporary)
        os.replace(temporary, target)
    for entry in store.list_files(location, ["*.parquet", LEGACY_MANIFEST]):
        name = PurePosixPath(entry.relative_path).stem
        stale = not local or name not in in_force.tables or entry.relative_path == LEGACY_MANIFEST
        if "/" not in entry.relative_path and stale:
            store.remove(entry.url)


def snapshot_ids(output_location: str) -> list[str]:
    """Every snapshot folder of the study, oldest first."""
    location = f"{tables_location(output_location)}/{SNAPSHOTS_FOLDER}"
    try:
        if not store.exists(location):
            return []
        entries = store.list_files(location, ["*"])
    except StorageError:
        return []
    # Folders whose names start with "." are a publish in progress (or killed): not snapshots.
    folders = {PurePosixPath(entry.relative_path).parts[0] for entry in entries if "/" in entry.relative_path}
    return sorted(name for name in folders if not name.startswith("."))


def expired(
    output_location: str,
    now: datetime | None = None,
    grace_seconds: float = GRACE_SECONDS,
    ids: list[str] | None = None,
) -> list[str]:
    """Snapshots out of force for longer than the grace period (by the time the next one was
    made: the moment they went out of force), never the one in force. `ids`: the snapshots
    there are, when the caller has listed them already (else listed here)."""
    ids = snapshot_ids(output_location) if ids is None else sorted(ids)
    in_force = current(output_location)
    now = now or datetime.now(UTC)
    out: list[str] = []
    for older, newer in zip(ids, ids[1:], strict=False):
        replaced_at = made_at(newer)
        out_of_force = older != (in_force.id if in_force else None)
        if out_of_force and replaced_at is not None and now - replaced_at >= timedelta(seconds=grace_seconds):
            out.append(older)
    return out


def expire(output_location: str, now: datetime | None = None, grace_seconds: float = GRACE_SECONDS) -> list[str]:
    """Remove the expired snapshots; their ids."""
    gone = expired(output_location, now, grace_seconds)
    for snapshot_id in gone:
        store.remove_folder(snapshot_location(output_location, snapshot_id))
    return gone
