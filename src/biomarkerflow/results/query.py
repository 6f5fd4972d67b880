"""SQL over a study's consolidated tables with DuckDB: one view per table."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from biomarkerflow.errors import QueryError, StorageError
from biomarkerflow.results.consolidate import tables_location
from biomarkerflow.storage import store


def connect(output_location: str) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """An in-memory DuckDB with a view per consolidated table; (connection, view names)."""
    location = tables_location(output_location)
    connection = duckdb.connect()
    views: list[str] = []
    if not store.exists(location):
        return connection, views
    for entry in store.list_files(location, ["*.parquet"]):
        name = entry.name.removesuffix(".parquet")
        if store.is_local(entry.url):
            path = entry.url.removeprefix("file://").replace("'", "''")
            connection.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
        else:
            connection.register(name, _remote_table(entry.url))
        views.append(name)
    return connection, sorted(views)


def _remote_table(url: str) -> ds.Dataset:
    """A table on an object store as a lazy Arrow dataset read through our fsspec filesystem.

    DuckDB's own S3 support (the httpfs extension) is downloaded on first use, which an
    offline machine cannot do, and it would need the endpoint and credentials again; an
    Arrow dataset uses the same S3 client as the rest of biomarkerflow and still lets
    DuckDB read only the columns and row groups a query needs.
    """
    fs, path = store.filesystem(url)
    with store.failures("read table", url):
        try:
            return ds.dataset(path, filesystem=fs, format="parquet")
        except pa.ArrowInvalid as exc:
            raise StorageError(f"cannot read table {url}: {exc}") from exc


def run_query(output_location: str, sql: str) -> pd.DataFrame:
    connection, views = connect(output_location)
    try:
        return connection.execute(sql).fetchdf()
    except duckdb.Error as exc:
        available = ", ".join(views) or "none yet (process some files first)"
        raise QueryError(f"query failed: {exc}", hint=f"Tables you can query: {available}.") from exc
    finally:
        connection.close()
