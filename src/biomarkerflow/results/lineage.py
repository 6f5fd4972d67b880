"""Lineage: trace any result number back to the exact input, configuration and package set.

`lineage(target, catalog)` answers "where does this come from?" for three kinds of target:

    result  a run's table file, its provenance.json or the run folder itself
            -> input -> config -> pipeline -> runtime -> platform -> run (+ the catalog's view)
    table   a consolidated table (<output>/tables/<name>.parquet, or the tables folder)
            -> every run whose rows it holds, each with its file, package version and lock hash
    input   a data file the catalog knows (its URL, local path, or path relative to the data location)
            -> its catalog record, every run of it, and the current run's chain

The answer is a plain JSON-ready dict (the CLI can print it with --json); `render` turns
it into a few chain-shaped lines. Provenance is read from the run folders, never rebuilt:
what is shown is what the run wrote down when it produced the numbers. Older provenance
lacks some fields (input sha256, runtime): they come out as None, shown as "not recorded".
"""

from __future__ import annotations

from typing import Any

from biomarkerflow.catalog.manager import Catalog, FileRecord, RunRecord
from biomarkerflow.results.lineage_chain import (
    INPUT_FIELDS,
    KEY_PACKAGES,
    _current_run_id,
    _result_lineage,
    _run_entry,
    chain,
    run_status,
)
from biomarkerflow.results.lineage_locate import (
    HINT,
    PROVENANCE,
    RESULT_SUFFIXES,
    SUCCESS_MARKER,
    LineageError,
    _find_input,
    _normalize,
    _run_folder_of,
    _tables_folder_of,
)
from biomarkerflow.results.lineage_render import NOT_RECORDED, render
from biomarkerflow.results.lineage_tables import _table_lineage

# The modules behind it: lineage_locate (what a target is), lineage_chain (a run's chain and the
# catalog's view of it), lineage_tables (consolidated tables), lineage_render (the text).
__all__ = [
    "HINT",
    "INPUT_FIELDS",
    "KEY_PACKAGES",
    "NOT_RECORDED",
    "PROVENANCE",
    "RESULT_SUFFIXES",
    "SUCCESS_MARKER",
    "LineageError",
    "chain",
    "lineage",
    "render",
    "run_status",
]


# ---- input files (kind "input") ---------------------------------------------------------------


def _file_entry(file: FileRecord) -> dict[str, Any]:
    return {
        "study": file.study_id,
        "url": file.url,
        "relative_path": file.relative_path,
        "subject": file.subject,
        "state": file.state,
        "reason": file.reason,
        "size": file.size,
        "fingerprint": file.fingerprint,
        "attempts": file.attempts,
        "last_error": file.last_error,
        "current_run_id": _current_run_id(file),
    }


def _current_chain(catalog: Catalog, runs: list[RunRecord], run_id: str | None) -> dict[str, Any] | None:
    """The result chain of the file's last result; an error note instead if its folder is gone."""
    run = next((r for r in runs if r.id == run_id), None)
    if run is None or not run.result_location:
        return None
    try:
        return _result_lineage(run.result_location, run.result_location, catalog)
    except LineageError as exc:
        return {"kind": "result", "error": exc.message}


def _input_lineage(file: FileRecord, catalog: Catalog) -> dict[str, Any]:
    runs = catalog.runs(file.study_id, file_id=file.id)
    entries = [{**_run_entry(run), **run_status(run, file, runs)} for run in runs]
    return {
        "kind": "input",
        "file": _file_entry(file),
        "runs": entries,
        # Even a STALE file's last result is worth tracing: it is what the tables still hold.
        "current": _current_chain(catalog, runs, file.current_run_id),
    }


# ---- entry point ------------------------------------------------------------------------------


def lineage(target: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """What `biomarkerflow lineage TARGET` shows, as a JSON-ready dict with a "kind" field.

    Raises LineageError when the target is neither a result, a consolidated table nor an
    input file the catalog knows.
    """
    location = _normalize(target)
    folder = _run_folder_of(location)
    if folder is not None:
        return _result_lineage(folder, location, catalog)
    tables_folder = _tables_folder_of(location)
    if tables_folder is not None:
        return _table_lineage(location, tables_folder, catalog)
    if catalog is not None:
        file = _find_input(catalog, target, location)
        if file is not None:
            return _input_lineage(file, catalog)
    raise LineageError(f"no result, table or catalogued input file at {target}", hint=HINT)
