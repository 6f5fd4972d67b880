"""Write one run's tables as Parquet with provenance, visible all at once or not at all.

Layout under a study's output location:

    runs/<subject>/<file stem>/<run id>/<table>.parquet   one folder per run, never overwritten
    runs/<subject>/<file stem>/<run id>/provenance.json  the same provenance as a sidecar
    runs/<subject>/<file stem>/<run id>/<name>           files the job wrote beside its tables
                                                         (e.g. activity.png), named in the provenance
    runs/<subject>/<file stem>/<run id>/_SUCCESS         written last; readers trust only marked folders
    tables/<table>.parquet                               consolidated current results (see consolidate.py)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biomarkerflow.errors import NotFoundError, StorageError
from biomarkerflow.storage import store

PROVENANCE_KEY = b"biomarkerflow.provenance"
PROVENANCE_FILE = "provenance.json"
# A run file's name: one plain name (no folder, no leading dot), never a table's or the marker's.
RUN_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+")
RESERVED_SUFFIXES = (".parquet", ".csv")
MEDIA_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf", ".html": "text/html"}


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part) or "_"


def run_folder(output_location: str, subject: str | None, relative_path: str, run_id: str) -> str:
    stem = PurePosixPath(relative_path).stem
    return f"{output_location.rstrip('/')}/runs/{_safe(subject or 'unknown')}/{_safe(stem)}/{run_id}"


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def write_table(frame: pd.DataFrame, path: Path, provenance: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = to_json(provenance).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)


def write_streamed_table(source: Path, path: Path, provenance: dict[str, Any], key_columns: dict[str, Any]) -> None:
    """A table a job wrote as Parquet, copied row group by row group with the key columns
    in front: memory holds one row group, whatever the table's size."""
    parquet = pq.ParquetFile(source)
    keys = [(name, pa.scalar(value, pa.string() if value is None else None)) for name, value in key_columns.items()]
    schema = pa.schema([pa.field(name, scalar.type) for name, scalar in keys] + list(parquet.schema_arrow))
    schema = schema.with_metadata(
        {**(parquet.schema_arrow.metadata or {}), PROVENANCE_KEY: to_json(provenance).encode()}
    )
    with pq.ParquetWriter(path, schema) as writer:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            constants = [pa.array([scalar.as_py()] * table.num_rows, scalar.type) for _, scalar in keys]
            writer.write_table(pa.Table.from_arrays([*constants, *table.columns], schema=schema))


def write_run(
    destination: str,
    tables: dict[str, pd.DataFrame | Path],
    provenance: dict[str, Any],
    *,
    key_columns: dict[str, Any],
    formats: list[str],
    files: dict[str, Path] | None = None,
) -> int:
    """Write every table of one run and publish the folder atomically; returns bytes written.

    `key_columns` (study, subject, file, run_id) lead every table so consolidated
    tables need no joins to say where a row came from. A table given as a Path is a
    Parquet file the job wrote (too large for memory): it is copied row group by row group.
    `files` (name -> a local file) are copied in beside the tables, published with them.
    """
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-run-") as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        for name, source in sorted((files or {}).items()):
            shutil.copyfile(source, folder / check_file_name(name))
        for name, rows in sorted(tables.items()):
            if isinstance(rows, Path):
                write_streamed_table(rows, folder / f"{name}.parquet", provenance, key_columns)
                if "csv" in formats:
                    _streamed_csv(folder / f"{name}.parquet", folder / f"{name}.csv")
                continue
            keyed = rows.copy()
            for position, (column, value) in enumerate(key_columns.items()):
                keyed.insert(position, column, value)
            write_table(keyed, folder / f"{name}.parquet", provenance)
            if "csv" in formats:
                keyed.to_csv(folder / f"{name}.csv", index=False)
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str))
        written = sum(p.stat().st_size for p in folder.iterdir())
        store.publish_folder(folder, destination)
    return written


def check_file_name(name: str) -> str:
    """`name` when it may name a file in a run folder (a plain name, not a table's); else ValueError."""
    if not RUN_FILE_NAME.fullmatch(name) or name.endswith(RESERVED_SUFFIXES) or name == PROVENANCE_FILE:
        raise ValueError(f"'{name}' cannot name a file of a run folder: use a plain name such as activity.png")
    return name


def file_record(path: Path) -> dict[str, Any]:
    """What the provenance says of a run file: its size and content hash."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_run_file(run_folder: str, name: str) -> tuple[bytes, str]:
    """(content, media type) of a file the run wrote beside its tables.

    Only a file its provenance names is read, by its plain name: nothing else in the
    folder (nor outside it) can be reached through `name`. NotFoundError otherwise.
    """
    listed: dict[str, Any] = {}
    try:
        provenance = json.loads(store.read_bytes(f"{run_folder.rstrip('/')}/{PROVENANCE_FILE}"))
        listed = (provenance.get("files") or {}) if isinstance(provenance, dict) else {}
    except (StorageError, ValueError):
        pass
    if not isinstance(listed, dict) or name not in listed or not RUN_FILE_NAME.fullmatch(name):
        raise NotFoundError(f"the run wrote no file '{name}'", hint="Its files are listed in its provenance.json.")
    media = MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    return store.read_bytes(f"{run_folder.rstrip('/')}/{name}"), media


def _streamed_csv(parquet_path: Path, csv_path: Path) -> None:
    """CSV of a large table, a row group at a time; list columns as JSON text."""
    import pyarrow.csv as pcsv

    parquet = pq.ParquetFile(parquet_path)
    writer: pcsv.CSVWriter | None = None
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        for index, field in enumerate(table.schema):
            if pa.types.is_list(field.type):
                texts = pa.array([None if v is None else json.dumps(v) for v in table.column(index).to_pylist()])
                table = table.set_column(index, field.name, texts)
        if writer is None:
            writer = pcsv.CSVWriter(csv_path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def read_provenance(parquet_path: str) -> dict[str, Any]:
    schema = pq.read_schema(parquet_path)
    raw = (schema.metadata or {}).get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}
