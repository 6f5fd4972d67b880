"""Per-study consolidated tables: the current run of every SUCCEEDED file, one table each.

Rebuilt from the catalog's list of current runs (never by scanning folders), all of a
study's tables at once as a new snapshot switched in one step (`snapshots`), so a query
sees every table as of one moment. A file
EXCLUDED by a quality gate contributes only its quality report (the workflow type's
`quality_tables`); for a type that measures quality, `inclusion` lists every subject with
its valid days and why any of its files is out (as GGIR's part 5 does).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biomarkerflow.catalog.manager import Catalog, FileRecord, StudyRecord
from biomarkerflow.catalog.models import FileState
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import WorkflowType, quality_measures_of
from biomarkerflow.results import snapshots
from biomarkerflow.results.snapshots import TABLES_FOLDER, tables_location  # noqa: F401 (re-exported)
from biomarkerflow.storage import store

INCLUSION_TABLE = "inclusion"


def _manifest(output_location: str) -> Any:
    """What the tables in force hold, as their manifest says; None without tables."""
    in_force = snapshots.current(output_location)
    return None if in_force is None else in_force.contents


def manifest_runs(manifest: Any) -> list[str] | None:
    """The runs whose rows a manifest says the tables hold (included and excluded ones)."""
    if isinstance(manifest, dict):
        return [str(run_id) for key in ("runs", "excluded") for run_id in manifest.get(key) or []]
    if isinstance(manifest, list):
        return [str(run_id) for run_id in manifest]
    return None


def _contents(catalog: Catalog, study: StudyRecord) -> Any:
    """What the consolidated tables hold, as their manifest says it: the current runs (a plain
    list, as before exclusions existed), with the excluded ones and, for a study with an
    inclusion table, the version of its files' states (a count and the latest change: two
    aggregates, where building the table would read every file)."""
    runs = catalog.current_run_ids(study.id)
    excluded = catalog.current_run_ids(study.id, FileState.EXCLUDED.value)
    with_inclusion = _measures_quality(study)
    if not excluded and not with_inclusion:
        return runs
    return {"runs": runs, "excluded": excluded, "files": catalog.files_version(study.id) if with_inclusion else None}


def is_current(catalog: Catalog, study: StudyRecord) -> bool:
    """True when the consolidated tables hold exactly the study's current runs."""
    return _manifest(study.output_location) == _contents(catalog, study)


def _measures_quality(study: StudyRecord) -> bool:
    workflow_type = _workflow_type(study)
    return workflow_type is not None and bool(workflow_type.quality_measures)


def _workflow_type(study: StudyRecord) -> WorkflowType | None:
    return registry.find(study.config.get("workflow"))


def inclusion_table(catalog: Catalog, study: StudyRecord) -> pd.DataFrame | None:
    """Every subject with its files per outcome, valid days and why any file is out; None for a
    workflow type that measures no quality."""
    if not _measures_quality(study):
        return None
    measured = {
        file.id: quality_measures_of(run.facts) or {} for file, run in catalog.current_results(study.id, excluded=True)
    }
    by_subject: dict[str | None, list[FileRecord]] = defaultdict(list)
    for file in catalog.files(study.id):
        if file.state != FileState.REMOVED.value:  # no longer part of the study
            by_subject[file.subject].append(file)
    rows = [_inclusion_row(study.id, subject, files, measured) for subject, files in by_subject.items()]
    columns = [
        "study", "subject", "files", "included", "excluded", "failed", "pending",
        "valid_days", "valid_days_included", "in_analysis", "why_out",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("subject", na_position="last", kind="stable").reset_index(drop=True)


def _valid_days(files: list[FileRecord], measured: dict[int, Mapping[str, Any]]) -> float | None:
    values = [measured[f.id].get("valid_days") for f in files if f.id in measured]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) if numbers else None


def _why_out(file: FileRecord) -> str | None:
    if file.state == FileState.SUCCEEDED.value:
        return None
    if file.state == FileState.EXCLUDED.value:
        return f"{file.relative_path}: {file.reason}"
    if file.state == FileState.FAILED.value:
        return f"{file.relative_path}: failed: {file.last_error or file.reason}"
    # The state only, not its reason: a waiting reason changes every minute ("changed 3 s ago").
    return f"{file.relative_path}: not processed yet ({file.state})"


def _inclusion_row(
    study_id: str, subject: str | None, files: list[FileRecord], measured: dict[int, Mapping[str, Any]]
) -> dict[str, Any]:
    states = [f.state for f in files]
    included = [f for f in files if f.state == FileState.SUCCEEDED.value]
    out = [text for text in map(_why_out, sorted(files, key=lambda f: f.relative_path)) if text]
    return {
        "study": study_id,
        "subject": subject,
        "files": len(files),
        "included": len(included),
        "excluded": states.count(FileState.EXCLUDED.value),
        "failed": states.count(FileState.FAILED.value),
        "pending": len(files)
        - len(included)
        - states.count(FileState.EXCLUDED.value)
        - states.count(FileState.FAILED.value),
        "valid_days": _valid_days(files, measured),
        "valid_days_included": _valid_days(included, measured),
        "in_analysis": bool(included),
        "why_out": " | ".join(out) or None,
    }


def _unified_type(types: list[pa.DataType]) -> pa.DataType:
    distinct = {t for t in types if not pa.types.is_null(t)}
    if len(distinct) <= 1:
        return distinct.pop() if distinct else pa.null()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in distinct):
        return pa.float64()
    if all(pa.types.is_timestamp(t) for t in distinct):
        zoned = {t.tz is not None for t in distinct}
        if zoned == {True}:  # instants in several zones (runs written before times were UTC): UTC
            return pa.timestamp("us", tz="UTC")
        if zoned == {False}:  # wall-clock times in several units
            return pa.timestamp("us")
    return pa.large_string()


def unified_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for run tables whose column types may differ between runs, losing no value.

    SKDH gives e.g. an all-NaN (float) column in one recording and text in another;
    such columns become text, mixed integer/float become float, missing columns null.
    """
    names: list[str] = []
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for column in schema:
            if column.name not in types:
                names.append(column.name)
                types[column.name] = []
            types[column.name].append(column.type)
    return pa.schema([(name, _unified_type(types[name])) for name in names])


def aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in `schema`: columns cast where their type differs, missing ones null."""
    columns = []
    for column in schema:
        if column.name in table.column_names:
            values = table[column.name]
            columns.append(values if values.type == column.type else values.cast(column.type))
        else:
            columns.append(pa.nulls(table.num_rows, column.type))
    return pa.Table.from_arrays(columns, schema=schema)


def combine(tables: list[pa.Table]) -> pa.Table:
    """Stack run tables in memory (see `unified_schema`); `consolidate_study` streams instead."""
    tables = [t.replace_schema_metadata(None) for t in tables if t.num_rows > 0] or tables[:1]
    schema = unified_schema([t.schema for t in tables])
    return pa.concat_tables([aligned(t, schema) for t in tables])


def published_tables(run_folder: str) -> list[store.FileEntry]:
    """The Parquet tables of a run folder, or none when it lacks its `_SUCCESS` marker.

    On object stores a run folder is uploaded file by file with the marker last, so a
    folder without it may be half written: it is not trusted.
    """
    entries = store.list_files(run_folder, ["*.parquet", store.SUCCESS_MARKER])
    if not any(entry.relative_path == store.SUCCESS_MARKER for entry in entries):
        return []
    return [entry for entry in entries if entry.relative_path != store.SUCCESS_MARKER]


def consolidate_study(catalog: Catalog, study: StudyRecord) -> dict[str, int]:
    """Write a new snapshot of every result table, and switch to it; returns rows per table."""
    # Read before the tables: a change meanwhile makes the next check redo them, never the reverse.
    contents = _contents(catalog, study)
    workflow_type = _workflow_type(study)
    kept_when_excluded = set(workflow_type.quality_tables if workflow_type else ())
    sources: dict[str, list[str]] = defaultdict(list)
    for file, run in catalog.current_results(study.id, excluded=True):
        if not run.result_location:
            continue
        excluded = file.state == FileState.EXCLUDED.value
        for table_path in published_tables(run.result_location):
            name = Path(table_path.relative_path).stem
            if not excluded or name in kept_when_excluded:
                sources[name].append(table_path.url)
    inclusion = inclusion_table(catalog, study)
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-tables-") as tmp:
        folder = Path(tmp) / "snapshot"
        folder.mkdir()
        rows = {name: _stack(urls, folder / f"{name}.parquet") for name, urls in sorted(sources.items())}
        if inclusion is not None:
            pq.write_table(pa.Table.from_pandas(inclusion, preserve_index=False), folder / f"{INCLUSION_TABLE}.parquet")
            rows[INCLUSION_TABLE] = len(inclusion)
        # The manifest says what the tables hold; switched in with them, it tells a later run
        # whether an interrupted consolidation must be redone.
        snapshots.publish(folder, study.output_location, list(rows), contents)
    return rows


def _stack(urls: list[str], path: Path) -> int:
    """The runs' tables one after the other in one file, a row group at a time: a run's
    table may be larger than memory (a health plan's rates). Two passes, one file open at
    a time: the footers give the schema, then the rows are copied. Rows written."""
    footers = []
    for url in urls:
        with _opened(url) as handle:
            metadata = pq.ParquetFile(handle).metadata
            footers.append((url, metadata.num_rows, metadata.schema.to_arrow_schema().remove_metadata()))
    with_rows = [f for f in footers if f[1] > 0] or footers[:1]
    schema = unified_schema([f[2] for f in with_rows])
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for url, _, _ in with_rows:
            with _opened(url) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    table = parquet.read_row_group(group).replace_schema_metadata(None)
                    writer.write_table(aligned(table, schema))
                    rows += table.num_rows
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows


@contextlib.contextmanager
def _opened(url: str) -> Iterator[Any]:
    """A run table to read row group by row group: the file itself, or a remote file handle."""
    if store.is_local(url):
        with open(url.removeprefix("file://"), "rb") as handle:
            yield handle
        return
    fs, path = store.filesystem(url)
    with store.failures("read table", url), fs.open(path, "rb") as handle:
        yield handle
