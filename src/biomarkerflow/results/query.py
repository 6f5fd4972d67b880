"""SQL over a study's consolidated tables with DuckDB: one view per table."""

from __future__ import annotations

import re

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
    """The result of `sql` over the study's tables; QueryError with the tables and their
    columns (quoted as SQL needs them) when the query is wrong."""
    connection, views = connect(output_location)
    try:
        columns = table_columns(connection, views)
        _refuse_unquoted(sql, columns)
        try:
            return connection.execute(sql).fetchdf()
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {exc}", hint=_tables_hint(columns)) from exc
    finally:
        connection.close()


def _refuse_unquoted(sql: str, columns: dict[str, list[str]]) -> None:
    """DuckDB reads `SELECT gait speed FROM gait` as the whole row of table gait, renamed
    speed (thousands of lines of structs), not as an error: say what was meant instead."""
    unquoted = unquoted_names(sql, columns)
    if unquoted:
        first = unquoted[0]
        raise QueryError(
            "column names with spaces need double quotes: " + ", ".join(quoted(name) for name in unquoted),
            hint=f"Without them `{first}` means something else to SQL. Write e.g. "
            f"SELECT subject, {quoted(first)} FROM {_table_of(first, columns)}",
        )


def table_columns(connection: duckdb.DuckDBPyConnection, views: list[str]) -> dict[str, list[str]]:
    """Each table's column names, in order."""
    return {view: [row[0] for row in connection.execute(f"DESCRIBE {quoted(view)}").fetchall()] for view in views}


def quoted(name: str) -> str:
    """A name as SQL needs it: `"gait speed"`, `subject`."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def unquoted_names(sql: str, columns: dict[str, list[str]]) -> list[str]:
    """Column names with spaces written without double quotes (outside any quotes) in `sql`."""
    bare = _outside_quotes(sql).lower()
    names = {name for names in columns.values() for name in names if " " in name}
    found = []
    for name in sorted(names):
        pattern = r"(?<![\w\"'])" + r"\s+".join(re.escape(word) for word in name.lower().split()) + r"(?![\w\"'])"
        if re.search(pattern, bare):
            found.append(name)
    return found


def _outside_quotes(sql: str) -> str:
    """`sql` with every quoted part ('text' or "name") blanked, so only bare words remain."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", lambda m: " " * len(m.group(0)), sql)


def _table_of(name: str, columns: dict[str, list[str]]) -> str:
    return next((quoted(table) for table, names in columns.items() if name in names), "...")


def _tables_hint(columns: dict[str, list[str]]) -> str:
    if not columns:
        return "There are no tables yet: process some files first (`biomarkerflow status` shows why they wait)."
    listed = "; ".join(f"{quoted(t)}({', '.join(quoted(c) for c in names)})" for t, names in columns.items())
    return f"Tables and their columns (names with spaces need double quotes): {listed}."
