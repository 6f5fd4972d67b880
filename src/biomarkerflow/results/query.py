"""SQL over a study's consolidated tables with DuckDB: one view per table, and a sandbox.

The REST API runs this for anyone holding a read token, so the query may read the study's
tables and nothing else. Three layers, each enough for most attacks on its own:

* DuckDB itself: external access off (no file, URL or database outside the views: read_csv,
  COPY, ATTACH, INSTALL all fail), extensions never installed or loaded on demand, no Python
  objects found by name, a memory limit, two threads, nothing spilled to disk, and the
  configuration locked so the query cannot SET any of it back.
* The statement: exactly one, of DuckDB's own type SELECT (extract_statements, no regexes).
* Its parse tree (json_serialize_sql): no function that reads files, no table function but a
  few harmless ones (some internal ones take raw pointers), no INSERT/DELETE hidden in a WITH.

The tables are Arrow datasets registered with DuckDB (not views over read_parquet): with
external access off DuckDB cannot open even the study's own Parquet files, and Arrow reading
them leaves DuckDB no file it may touch at all.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from biomarkerflow.errors import QueryError, StorageError
from biomarkerflow.results import snapshots
from biomarkerflow.storage import store

MAX_ROWS = 100_000  # the CLI's row limit; the API passes a smaller one
TIMEOUT_SECONDS = 30.0
MEMORY_LIMIT = "2GB"
MAX_THREADS = 2  # the machines are shared: one query must not take every core

ALLOWED = "only one SELECT (or WITH ... SELECT) statement over the study's tables is allowed"

# Table functions a query may use in FROM: they make rows out of their arguments or describe
# the views, and read nothing else. Everything else is refused: readers of files (read_csv,
# glob ...), query()/query_table() (SQL in a string, out of the checked parse tree's reach),
# and internal ones (arrow_scan, python_map_function ...) meant for DuckDB's Python layer only.
TABLE_FUNCTIONS = frozenset(
    ("range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree", "histogram")
    + ("histogram_values", "duckdb_columns", "duckdb_tables", "duckdb_views", "duckdb_types", "duckdb_functions")
    + ("duckdb_keywords", "pragma_table_info", "pg_timezone_names", "icu_calendar_names")
)
# Functions refused wherever they appear: the environment, and sequences (which write).
REFUSED_FUNCTIONS = {
    "getenv": "getenv reads the server's environment",
    "nextval": "nextval changes a sequence",
    "currval": "currval reads a sequence",
}
# Parse-tree query nodes that only read; any other (INSERT_QUERY_NODE ...) changes something.
READING_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
# Why a statement of another type than SELECT is refused, by DuckDB's StatementType name.
STATEMENT_REASONS = {
    "COPY": "reads or writes files",
    "EXPORT": "writes files",
    "COPY_DATABASE": "writes files",
    "ATTACH": "opens another database",
    "DETACH": "closes a database",
    "LOAD": "installs or loads extensions",
    "EXTENSION": "installs or loads extensions",
    "SET": "changes settings",
    "VARIABLE_SET": "changes settings",
    "PRAGMA": "changes settings or reads files",
    "CALL": "runs a procedure",
    "MULTI": "makes DuckDB run several statements (PIVOT does: write it with GROUP BY and FILTER (WHERE ...))",
    "CREATE": "changes the database",
    "CREATE_FUNC": "changes the database",
    "INSERT": "changes the database",
    "UPDATE": "changes the database",
    "DELETE": "changes the database",
    "DROP": "changes the database",
    "ALTER": "changes the database",
    "MERGE_INTO": "changes the database",
}


@dataclass(frozen=True)
class QueryResult:
    """A query's rows, at most `row_limit` of them; `truncated` when it had more."""

    frame: pd.DataFrame
    truncated: bool
    row_limit: int


def connect(
    output_location: str, views: Mapping[str, str] | None = None
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A sandboxed in-memory DuckDB with a view per consolidated table, and the workflow
    type's own `views` (name -> SELECT over the tables) where their tables exist;
    (connection, view names)."""
    # The snapshot in force, read once: every table of the query is of that one moment.
    in_force = snapshots.current(output_location)
    # Set at connect, before any table exists: there is no moment the sandbox is open.
    connection = duckdb.connect(
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,  # `FROM some_variable` would read Python objects
            "memory_limit": MEMORY_LIMIT,
            "threads": max(1, min(MAX_THREADS, os.cpu_count() or 1)),
            "temp_directory": "",  # nothing spilled to disk: the memory limit is the limit
        }
    )
    names: list[str] = []
    try:
        for name, url in (in_force.tables if in_force else {}).items():
            connection.register(name, _table(url))
            names.append(name)
        names += _create_views(connection, views or {})
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection, sorted(names)


def _create_views(connection: duckdb.DuckDBPyConnection, views: Mapping[str, str]) -> list[str]:
    """The views whose tables are all there (a study without allowed amounts has no view
    over them); a view that cannot be made for another reason is a bug, and raises."""
    made = []
    for name, select in views.items():
        try:
            connection.execute(f"CREATE VIEW {quoted(name)} AS {select}")
        except duckdb.CatalogException:
            continue  # a table it reads is missing: no such rows yet
        made.append(name)
    return made


def _table(url: str) -> ds.Dataset:
    """A table as a lazy Arrow dataset, which DuckDB still reads only in the columns and row
    groups a query needs.

    DuckDB may open no file (see the module's notes), so Arrow reads even local tables. On an
    object store it would not do anyway: DuckDB's own S3 support (the httpfs extension) is
    downloaded on first use, which an offline machine cannot do, and would need the endpoint
    and credentials again; Arrow uses the same S3 client as the rest of biomarkerflow.
    """
    if store.is_local(url):
        filesystem, path = None, url.removeprefix("file://")  # Arrow's own, faster than fsspec's
    else:
        filesystem, path = store.filesystem(url)
    with store.failures("read table", url):
        try:
            return ds.dataset(path, filesystem=filesystem, format="parquet")
        except pa.ArrowInvalid as exc:
            raise StorageError(f"cannot read table {url}: {exc}") from exc


def run_query(
    output_location: str,
    sql: str,
    *,
    max_rows: int = MAX_ROWS,
    timeout_seconds: float = TIMEOUT_SECONDS,
    views: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of `sql` over the study's tables (see run_sandboxed_query); when cut at
    `max_rows`, frame.attrs holds truncated=True and row_limit for the caller to say so."""
    result = run_sandboxed_query(output_location, sql, max_rows=max_rows, timeout_seconds=timeout_seconds, views=views)
    result.frame.attrs.update(truncated=result.truncated, row_limit=result.row_limit)
    return result.frame


def run_sandboxed_query(
    output_location: str,
    sql: str,
    *,
    max_rows: int = MAX_ROWS,
    timeout_seconds: float = TIMEOUT_SECONDS,
    views: Mapping[str, str] | None = None,
) -> QueryResult:
    """One SELECT over the study's tables, and nothing else, with at most `max_rows` rows back
    and interrupted after `timeout_seconds`; QueryError saying what is wrong or not allowed,
    with the tables and their columns (quoted as SQL needs them) when the query is wrong."""
    if max_rows < 1 or timeout_seconds <= 0:
        raise ValueError(f"max_rows must be >= 1 and timeout_seconds > 0, not {max_rows} and {timeout_seconds}")
    connection, names = connect(output_location, views)
    try:
        columns = table_columns(connection, names)
        _refuse_unquoted(sql, columns)
        _refuse_other_statements(connection, sql, columns)
        _refuse_outside_reads(connection, sql, columns)
        frame = _fetch(connection, sql, max_rows + 1, timeout_seconds, columns)
    finally:
        connection.close()
    truncated = len(frame) > max_rows
    if truncated:
        frame = frame.iloc[:max_rows]
    return QueryResult(frame=frame, truncated=truncated, row_limit=max_rows)


def _refuse_other_statements(connection: duckdb.DuckDBPyConnection, sql: str, columns: dict[str, list[str]]) -> None:
    """Exactly one statement, of DuckDB's type SELECT (which covers WITH, VALUES, DESCRIBE, SHOW)."""
    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}", hint=_tables_hint(columns)) from exc
    if not statements:
        raise QueryError("the query is empty: write one SELECT over the study's tables", hint=_tables_hint(columns))
    if len(statements) > 1:
        raise QueryError(f"{ALLOWED}; this is {len(statements)} statements (separated by ;)")
    try:
        kind = statements[0].type.name
    except ValueError:  # a type DuckDB's Python enum does not know (UPDATE EXTENSIONS in 2.0)
        kind = "UNKNOWN"
    if kind != "SELECT":
        reason = STATEMENT_REASONS.get(kind, "is not a SELECT")
        raise QueryError(f"{ALLOWED}; {_keyword(statements[0].query, kind)} {reason}")


def _keyword(text: str, kind: str) -> str:
    """The statement's first word as written (INSTALL, not DuckDB's type LOAD), for messages."""
    bare = re.sub(r"^(?:\s+|--[^\n]*|/\*.*?\*/)*", "", text, flags=re.S)
    word = re.match(r"[A-Za-z]+", bare)
    if word is None or word.group(0).upper() == "WITH":
        return kind.replace("_", " ")
    return word.group(0).upper()


def _refuse_outside_reads(connection: duckdb.DuckDBPyConnection, sql: str, columns: dict[str, list[str]]) -> None:
    """Nothing in the parse tree reads beyond the views or writes; DuckDB's settings stop the
    same things, this says which part of the query is at fault before anything runs."""
    rows = connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True}
    if tree.get("error"):  # unchecked is refused: the engine alone would still guard it, but say why
        raise QueryError(
            f"{ALLOWED}; this form of query cannot be checked ({tree.get('error_message', 'no parse tree')})",
            hint="PIVOT inside a query is one such form: write it with GROUP BY and FILTER (WHERE ...) instead.",
        )
    for node in _nodes(tree):
        problem = _problem(node)
        if problem:
            raise QueryError(f"{ALLOWED}; {problem}", hint=_tables_hint(columns))


def _nodes(tree: object) -> Iterator[dict[str, Any]]:
    """Every object in a parse tree, depth first: expressions, table references, query nodes."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _nodes(item)


def _problem(node: dict[str, Any]) -> str | None:
    """Why one parse-tree node is not allowed, or None."""
    kind = node.get("type")
    if isinstance(kind, str) and kind.endswith("_NODE") and kind not in READING_NODES:
        return f"{kind.split('_')[0]} inside a query changes the database"  # WITH x AS (DELETE ... RETURNING)
    if kind == "TABLE_FUNCTION":
        function = node.get("function")
        name = str(function.get("function_name", "")).lower() if isinstance(function, dict) else ""
        if _reads_files(name):
            return f"{name} reads files outside them"
        if name not in TABLE_FUNCTIONS:
            allowed = ", ".join(sorted(TABLE_FUNCTIONS))
            return f"the table function {name or '(unnamed)'} is not allowed here; these are: {allowed}"
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if _reads_files(name):
            return f"{name} reads files outside them"
        if name in REFUSED_FUNCTIONS:
            return REFUSED_FUNCTIONS[name]
    if kind == "BASE_TABLE" and re.search(r"[/\\.]", str(node.get("table_name", ""))):
        return f"FROM '{node['table_name']}' reads a file outside them"  # DuckDB reads a quoted path as a file
    return None


def _reads_files(function: str) -> bool:
    return function.startswith(("read_", "parquet_")) or function in ("glob", "sniff_csv")


def _fetch(
    connection: duckdb.DuckDBPyConnection, sql: str, limit: int, timeout_seconds: float, columns: dict[str, list[str]]
) -> pd.DataFrame:
    """At most `limit` rows of the (checked) query, in its own order, within the time limit."""
    deadline = _Deadline(connection, timeout_seconds)
    try:
        with deadline:
            # A LIMIT around the query lets DuckDB stop early (a top-N instead of a full sort);
            # DuckDB keeps the query's ORDER BY through it.
            return connection.sql(sql).limit(limit).df()
    except duckdb.Error as exc:
        if deadline.expired:
            raise QueryError(
                f"the query ran longer than {timeout_seconds:g} s; narrow it (WHERE, LIMIT) or aggregate "
                "(GROUP BY) so that it reads less"
            ) from exc
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise QueryError(
                f"the query needs more than the {MEMORY_LIMIT} of memory it may use; narrow it (WHERE, LIMIT) "
                "or aggregate (GROUP BY)"
            ) from exc
        if isinstance(exc, duckdb.PermissionException):  # what the parse-tree check did not name
            raise QueryError(f"{ALLOWED}; it reads or changes something else ({str(exc).splitlines()[0]})") from exc
        raise QueryError(f"query failed: {exc}", hint=_tables_hint(columns)) from exc


class _Deadline:
    """Interrupts the connection's query once `seconds` have passed; `expired` says it did.

    DuckDB checks for an interrupt between chunks of work, so a query stops within moments of
    the limit (not inside one huge value, such as repeat('x', 10^9)).
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.expired = False
        self._connection = connection
        self._lock = threading.Lock()  # no interrupt after the query ended and the connection closed
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            if not self._done:
                self.expired = True
                self._connection.interrupt()

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


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
