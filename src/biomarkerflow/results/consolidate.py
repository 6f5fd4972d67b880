"""Per-study consolidated tables: the current run of every SUCCEEDED file, one table each.

Rebuilt from the catalog's list of current runs (never by scanning folders), written
to a temporary file and renamed, so a query sees the old table or the new one.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from biomarkerflow.catalog.manager import Catalog, StudyRecord
from biomarkerflow.errors import StorageError
from biomarkerflow.storage import store

TABLES_FOLDER = "tables"


def tables_location(output_location: str) -> str:
    return f"{output_location.rstrip('/')}/{TABLES_FOLDER}"


MANIFEST = "_runs.json"


def _manifest(output_location: str) -> list[str] | None:
    url = f"{tables_location(output_location)}/{MANIFEST}"
    try:
        return list(json.loads(store.read_bytes(url)))
    except (StorageError, ValueError):
        return None


def is_current(catalog: Catalog, study: StudyRecord) -> bool:
    """True when the consolidated tables hold exactly the study's current runs."""
    return _manifest(study.output_location) == catalog.current_run_ids(study.id)


def _unified_type(types: list[pa.DataType]) -> pa.DataType:
    distinct = {t for t in types if not pa.types.is_null(t)}
    if len(distinct) <= 1:
        return distinct.pop() if distinct else pa.null()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in distinct):
        return pa.float64()
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
    """Write tables/<name>.parquet for every result table; returns rows per table."""
    sources: dict[str, list[str]] = defaultdict(list)
    current = catalog.current_results(study.id)
    for _file, run in current:
        if not run.result_location:
            continue
        for table_path in published_tables(run.result_location):
            sources[Path(table_path.relative_path).stem].append(table_path.url)
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-tables-") as tmp:
        folder = Path(tmp) / TABLES_FOLDER
        folder.mkdir()
        rows = {name: _stack(urls, folder / f"{name}.parquet") for name, urls in sorted(sources.items())}
        # The manifest lists the runs the tables hold; written with them, it tells a
        # later run whether an interrupted consolidation must be redone.
        (folder / MANIFEST).write_text(json.dumps(sorted(run.id for _, run in current)))
        store.replace_folder(folder, tables_location(study.output_location))
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
