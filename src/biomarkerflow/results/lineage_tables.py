"""Lineage of a consolidated table (kind "table"): every run whose rows it holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from biomarkerflow.catalog.manager import Catalog, RunRecord, StudyRecord
from biomarkerflow.errors import StorageError
from biomarkerflow.results import snapshots
from biomarkerflow.results.consolidate import is_current, manifest_runs
from biomarkerflow.results.lineage_chain import _load_provenance, _runtime_section
from biomarkerflow.results.lineage_locate import PROVENANCE, LineageError, _join, _name, _normalize, _parent
from biomarkerflow.storage import store

# ---- consolidated tables (kind "table") ------------------------------------------------------


def _table_file(location: str, tables_folder: str, in_force: snapshots.Snapshot | None) -> str:
    """The file of a table named as `tables/<name>.parquet`: the snapshot in force's."""
    if _parent(location) != tables_folder:
        return location  # a snapshot's own file
    name = _name(location).removesuffix(".parquet")
    if in_force is None or name not in in_force.tables:
        raise LineageError(f"{location}: the study's tables in force have no table {name!r}")
    return in_force.tables[name]


def _rows_per_run(table: str) -> dict[str, dict[str, Any]]:
    """Run id -> rows it holds in the table, with the subject and file the rows name."""
    with store.local_copy(table) as local:
        names = pq.read_schema(local).names
        if "run_id" not in names:
            return {}
        frame = pq.read_table(local, columns=[c for c in ("run_id", "subject", "file") if c in names]).to_pylist()
    counts = Counter(str(row["run_id"]) for row in frame)
    first: dict[str, dict[str, Any]] = {}
    for row in frame:
        first.setdefault(str(row["run_id"]), row)
    return {
        run_id: {"rows": count, "subject": first[run_id].get("subject"), "file": first[run_id].get("file")}
        for run_id, count in counts.items()
    }


def _study_for_output(catalog: Catalog, output: str) -> StudyRecord | None:
    wanted = _normalize(output)
    return next((s for s in catalog.studies() if _normalize(s.output_location) == wanted), None)


def _search_run_folders(output: str) -> dict[str, str]:
    """Run id -> run folder, by listing <output>/runs/*/*/<run id>/provenance.json (no catalog at hand)."""
    try:
        entries = store.list_files(_join(output, "runs"), [f"*/{PROVENANCE}"])
    except StorageError:
        return {}
    return {_name(_parent(entry.url)): _parent(entry.url) for entry in entries}


def _run_folders(records: dict[str, RunRecord], output: str, run_ids: list[str]) -> dict[str, str]:
    """Run id -> run folder: where the catalog says, else found by searching (no catalog, or it lost track)."""
    folders = {run_id: records[run_id].result_location or "" for run_id in run_ids if run_id in records}
    folders = {run_id: folder for run_id, folder in folders.items() if folder}
    if any(run_id not in folders for run_id in run_ids):
        found = _search_run_folders(output)
        folders.update({run_id: found[run_id] for run_id in run_ids if run_id not in folders and run_id in found})
    return folders


def _table_run(
    run_id: str, rows: dict[str, Any], folder: str | None, record: RunRecord | None, current: set[str] | None
) -> dict[str, Any]:
    provenance: dict[str, Any] = {}
    if folder is not None:
        try:
            provenance = _load_provenance(folder, folder)
        except LineageError:
            provenance = {}
    runtime = _runtime_section(provenance)
    return {
        "id": run_id,
        "rows": rows.get("rows", 0),
        "subject": provenance.get("subject", rows.get("subject")),
        "file": rows.get("file"),
        "input_url": (provenance.get("input") or {}).get("url"),
        # Provenance first (what the run itself wrote), the catalog's record when it is missing.
        "package_version": runtime["package"]["version"] or (record.package_version if record else None),
        "lock_hash": runtime["lock_hash"] or (record.lock_hash if record else None),
        "config_sha256": (provenance.get("config") or {}).get("sha256"),
        "folder": folder,
        "provenance_found": bool(provenance),
        "current": None if current is None else run_id in current,
    }


def _table_lineage(location: str, tables_folder: str, catalog: Catalog | None) -> dict[str, Any]:
    output = _parent(tables_folder)
    is_table = location != tables_folder
    in_force = snapshots.current(output)  # read once: the table and its manifest of one snapshot
    rows = _rows_per_run(_table_file(location, tables_folder, in_force)) if is_table else {}
    manifest = None if in_force is None else manifest_runs(in_force.contents)
    run_ids = sorted(set(rows) | set(manifest or []))
    study = _study_for_output(catalog, output) if catalog is not None else None
    current = {r.id for _, r in catalog.current_results(study.id, excluded=True)} if catalog and study else None
    records = {r.id: r for r in catalog.runs(study.id)} if catalog and study else {}
    folders = _run_folders(records, output, run_ids)
    return {
        "kind": "table",
        "table": location if is_table else None,
        "name": _name(location).removesuffix(".parquet") if is_table else None,
        "tables_folder": tables_folder,
        "output_location": output,
        "study": study.id if study else None,
        "rows": sum(r["rows"] for r in rows.values()),
        "manifest": manifest,
        # Whether the tables hold exactly the catalog's current runs (None: no catalog to ask).
        "up_to_date": is_current(catalog, study) if catalog and study else None,
        "runs": [
            _table_run(run_id, rows.get(run_id, {}), folders.get(run_id), records.get(run_id), current)
            for run_id in run_ids
        ],
    }
