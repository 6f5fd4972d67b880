"""Lineage, step one: what a target is (a run folder, a consolidated table, a catalogued input file).

Locations are strings, not paths: "s3://bucket/..." and local paths alike. Errors that
name a target lineage cannot trace are `LineageError`s, defined here for every lineage module.
"""

from __future__ import annotations

import os

from biomarkerflow.catalog.manager import Catalog, FileRecord
from biomarkerflow.errors import BiomarkerflowError, Category, StorageError
from biomarkerflow.results.snapshots import LEGACY_MANIFEST, POINTER, SNAPSHOTS_FOLDER, TABLES_FOLDER
from biomarkerflow.storage import store

PROVENANCE = "provenance.json"
SUCCESS_MARKER = "_SUCCESS"
RESULT_SUFFIXES = (".parquet", ".csv", ".png")  # tables, and the pictures a run draws
HINT = (
    "Pass a file under <output>/runs/... or <output>/tables/..., or an input file the catalog knows; "
    "see `biomarkerflow status`."
)


class LineageError(BiomarkerflowError):
    """The target is not something lineage can trace; like a usage error, fixed by another argument."""

    category = Category.INVALID_INPUT


# ---- locations ---------------------------------------------------------------------------


def _normalize(target: str) -> str:
    """Local paths become absolute and normalized, as the catalog stores them; URLs stay as written."""
    target = target.removeprefix("file://")
    if "://" in target:
        return target.rstrip("/")
    return os.path.abspath(os.path.expanduser(target))


def _parent(location: str) -> str:
    # Not PurePosixPath: it would fold the "//" of "s3://bucket".
    return location.rstrip("/").rsplit("/", 1)[0]


def _name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"


def _exists(location: str) -> bool:
    """Whether something is there; an unreachable location counts as absent, so the caller's error names it."""
    try:
        return store.exists(location)
    except StorageError:
        return False


def _in_runs_layout(folder: str) -> bool:
    """runs/<subject>/<file stem>/<run id>: a run folder by its place, even when its provenance is missing."""
    parts = folder.rstrip("/").split("/")
    return len(parts) >= 4 and parts[-4] == "runs"


def _is_run_folder(folder: str) -> bool:
    return _exists(_join(folder, PROVENANCE)) or (_in_runs_layout(folder) and _exists(folder))


def _run_folder_of(location: str) -> str | None:
    """The run folder `location` points into (file, provenance.json or the folder), or None."""
    if not _exists(location):
        return None
    if _name(location) == PROVENANCE:
        return _parent(location)
    if location.endswith(RESULT_SUFFIXES) and _is_run_folder(_parent(location)):
        return _parent(location)
    return location if _is_run_folder(location) else None


def _is_tables_folder(location: str) -> bool:
    return _name(location) == TABLES_FOLDER and (
        _exists(_join(location, POINTER)) or _exists(_join(location, LEGACY_MANIFEST))
    )


def _tables_folder_of(location: str) -> str | None:
    """The consolidated tables folder `location` is (or is a table of), or None. A table is
    named as `tables/<name>.parquet` (the one in force) or by its snapshot's file."""
    if _is_tables_folder(location):
        return location
    if not location.endswith(".parquet"):
        return None
    if _is_tables_folder(_parent(location)):
        return _parent(location)
    snapshot_folder = _parent(_parent(location))
    if _name(snapshot_folder) == SNAPSHOTS_FOLDER and _is_tables_folder(_parent(snapshot_folder)) and _exists(location):
        return _parent(snapshot_folder)
    return None


# ---- input files the catalog knows ------------------------------------------------------------


def _find_input(catalog: Catalog, target: str, location: str) -> FileRecord | None:
    """The catalogued file `target` names: by URL or local path, else by path relative to its data location."""
    names = {target, location, target.removeprefix("file://"), f"file://{location}"}
    relative = os.path.normpath(target).replace(os.sep, "/")
    matches = catalog.files_named(sorted(names), relative_path=relative)
    if len(matches) > 1:
        where = ", ".join(f"{f.study_id}: {f.url}" for f in matches)
        raise LineageError(f"{target} matches several catalogued files ({where})", hint="Pass the full path or URL.")
    return matches[0] if matches else None
