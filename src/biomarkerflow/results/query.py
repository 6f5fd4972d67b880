"""SQL over a study's consolidated tables with DuckDB: one view per table."""

from __future__ import annotations

import duckdb
import pandas as pd

from biomarkerflow.errors import QueryError
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
        path = entry.url.removeprefix("file://").replace("'", "''")
        connection.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
        views.append(name)
    return connection, sorted(views)


def run_query(output_location: str, sql: str) -> pd.DataFrame:
    connection, views = connect(output_location)
    try:
        return connection.execute(sql).fetchdf()
    except duckdb.Error as exc:
        available = ", ".join(views) or "none yet (process some files first)"
        raise QueryError(f"query failed: {exc}", hint=f"Tables you can query: {available}.") from exc
    finally:
        connection.close()
