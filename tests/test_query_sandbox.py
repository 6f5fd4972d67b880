"""The SQL sandbox behind `biomarkerflow query` and the REST API's SQL endpoint: a study's own
tables can be read in any way SELECT allows, and nothing else can be read, written or changed."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tests.conftest as _conftest
from biomarkerflow.errors import QueryError
from biomarkerflow.results import query
from biomarkerflow.results.consolidate import tables_location
from biomarkerflow.results.query import ALLOWED, QueryResult, connect, run_query, run_sandboxed_query
from biomarkerflow.storage import store

if not hasattr(_conftest, "s3_endpoint"):  # until conftest imports them for the whole suite
    from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401

WEAR = pa.table({"subject": ["P1", "P1", "P2"], "day": [1, 2, 1], "wear hours": [10.0, 12.0, 8.0]})
SLEEP = pa.table({"subject": ["P1", "P2"], "total sleep time": [420.0, 380.0]})


def write_tables(folder: Path) -> None:
    folder.mkdir(parents=True)
    pq.write_table(WEAR, folder / "wear.parquet")
    pq.write_table(SLEEP, folder / "sleep.parquet")
    (folder / "_runs.json").write_text("[]")


@pytest.fixture
def output(tmp_path: Path) -> str:
    """A study's output folder as consolidation leaves it: <output>/tables/<table>.parquet."""
    location = str(tmp_path / "study")
    write_tables(Path(tables_location(location)))
    return location


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the study, with a Parquet file of its own, that no query may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    pq.write_table(pa.table({"secret": ["TOP SECRET"]}), folder / "other.parquet")
    return folder


def rows(output: str, sql: str) -> list[dict[str, Any]]:
    result = run_sandboxed_query(output, sql)
    assert not result.truncated
    records: list[dict[str, Any]] = result.frame.to_dict(orient="records")
    return records


# ---- what a query may do ---------------------------------------------------------------------


def test_select_where_order(output: str) -> None:
    found = rows(output, 'SELECT subject, "wear hours" FROM wear WHERE day = 1 ORDER BY subject DESC')
    assert found == [{"subject": "P2", "wear hours": 8.0}, {"subject": "P1", "wear hours": 10.0}]


def test_with_join_and_aggregation(output: str) -> None:
    sql = """
        WITH worn AS (SELECT subject, SUM("wear hours") AS hours, COUNT(*) AS days FROM wear GROUP BY subject)
        SELECT worn.subject, hours, days, "total sleep time" AS tst
        FROM worn JOIN sleep ON sleep.subject = worn.subject
        ORDER BY worn.subject;
    """
    assert rows(output, sql) == [
        {"subject": "P1", "hours": 22.0, "days": 2, "tst": 420.0},
        {"subject": "P2", "hours": 8.0, "days": 1, "tst": 380.0},
    ]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT AVG("wear hours") AS mean FROM wear', [{"mean": 10.0}]),
        ("FROM sleep SELECT subject ORDER BY 1", [{"subject": "P1"}, {"subject": "P2"}]),
        ("SELECT subject FROM wear UNION SELECT subject FROM sleep ORDER BY 1", [{"subject": "P1"}, {"subject": "P2"}]),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT SUM(n) AS s FROM r",
            [{"s": 6}],
        ),
        (
            "SELECT day, SUM(\"wear hours\") OVER (ORDER BY day) AS run FROM wear WHERE subject = 'P1'",
            [
                {"day": 1, "run": 10.0},
                {"day": 2, "run": 22.0},
            ],
        ),
        ("SELECT COUNT(*) AS n FROM range(5)", [{"n": 5}]),
        ("SELECT * FROM unnest([1, 2]) AS t(x)", [{"x": 1}, {"x": 2}]),
        ("SHOW TABLES", [{"name": "sleep"}, {"name": "wear"}]),
        ("  -- a comment first\n SELECT 1 AS one ;", [{"one": 1}]),
    ],
)
def test_reading_forms_run(output: str, sql: str, expected: list[dict[str, Any]]) -> None:
    assert rows(output, sql) == expected


def test_describe_lists_columns(output: str) -> None:
    assert [r["column_name"] for r in rows(output, "DESCRIBE wear")] == ["subject", "day", "wear hours"]


def test_hints_are_kept(output: str) -> None:
    with pytest.raises(QueryError, match="need double quotes") as unquoted:
        run_sandboxed_query(output, "SELECT subject, wear hours FROM wear")
    assert '"wear hours"' in str(unquoted.value.hint)
    with pytest.raises(QueryError, match="query failed") as missing:
        run_sandboxed_query(output, "SELECT * FROM nosuchtable")
    assert "wear(" in str(missing.value.hint) and "sleep(" in str(missing.value.hint)


def test_a_study_without_tables(tmp_path: Path) -> None:
    assert rows(str(tmp_path / "empty"), "SELECT 1 AS one") == [{"one": 1}]


# ---- what it may not -------------------------------------------------------------------------

REFUSED = [
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv reads files outside them"),
    ("select * from READ_CSV_AUTO('/etc/passwd')", "read_csv_auto reads files outside them"),
    ("SELECT * FROM main.read_csv('/etc/passwd')", "read_csv reads files outside them"),
    ("SELECT * FROM read_parquet('{outside}/other.parquet')", "read_parquet reads files outside them"),
    ("SELECT * FROM parquet_metadata('{tables}/wear.parquet')", "parquet_metadata reads files"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text reads files outside them"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob reads files outside them"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv reads files outside them"),
    ("SELECT * FROM glob('/etc/*')", "glob reads files outside them"),
    ("SELECT * FROM '/etc/passwd'", "FROM '/etc/passwd' reads a file outside them"),
    ("SELECT * FROM '{outside}/other.parquet'", "reads a file outside them"),
    ("SELECT getenv('HOME')", "getenv reads the server's environment"),
    ("SELECT nextval('s')", "nextval changes a sequence"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "the table function query is not allowed"),
    ("SELECT * FROM query_table('wear')", "the table function query_table is not allowed"),
    ("SELECT * FROM duckdb_settings()", "the table function duckdb_settings is not allowed"),
    ("SELECT * FROM arrow_scan()", "the table function arrow_scan is not allowed"),
    ("WITH gone AS (DELETE FROM wear RETURNING *) SELECT * FROM gone", "DELETE inside a query changes the database"),
    ("WITH x AS (INSERT INTO wear VALUES ('P9', 1, 1.0) RETURNING *) SELECT 1", "INSERT inside a query changes"),
    ("SELECT * FROM (PIVOT wear ON subject USING SUM(day))", "PIVOT"),
    ("COPY wear TO '{outside}/copy.csv'", "COPY reads or writes files"),
    ("COPY (SELECT 1) TO '{outside}/copy.parquet' (FORMAT parquet)", "COPY reads or writes files"),
    ("EXPORT DATABASE '{outside}/export'", "EXPORT writes files"),
    ("ATTACH '{outside}/other.db' AS other", "ATTACH opens another database"),
    ("INSTALL httpfs", "INSTALL installs or loads extensions"),
    ("LOAD httpfs", "LOAD installs or loads extensions"),
    ("SET enable_external_access = true", "SET changes settings"),
    ("SET lock_configuration = false", "SET changes settings"),
    ("RESET enable_external_access", "RESET changes settings"),
    ("PRAGMA profiling_output = '{outside}/profile.json'", "PRAGMA changes settings"),
    ("PRAGMA database_list", "PRAGMA changes settings or reads files"),
    ("CREATE TABLE t AS SELECT 1", "CREATE changes the database"),
    ("INSERT INTO wear VALUES ('P9', 1, 1.0)", "INSERT changes the database"),
    ("DROP VIEW wear", "DROP changes the database"),
    ("SELECT * FROM wear; DROP VIEW wear", "this is 2 statements"),
    ("SELECT 1; SELECT * FROM read_csv('/etc/passwd')", "this is 2 statements"),
]


@pytest.mark.parametrize(("sql", "problem"), REFUSED)
def test_everything_else_is_refused(output: str, outside: Path, sql: str, problem: str) -> None:
    before = sorted(outside.rglob("*"))
    statement = sql.format(outside=outside, tables=tables_location(output))
    with pytest.raises(QueryError) as refused:
        run_sandboxed_query(output, statement)
    message = str(refused.value)
    assert message.startswith(ALLOWED) and problem in message, message
    said = message + str(refused.value.hint)
    assert "root:" not in said and "TOP SECRET" not in said
    assert sorted(outside.rglob("*")) == before  # COPY, EXPORT, ATTACH and PRAGMA wrote nothing
    assert rows(output, "SELECT COUNT(*) AS n FROM wear") == [{"n": 3}]  # and the views are as they were


def test_the_engine_refuses_on_its_own(output: str, outside: Path) -> None:
    """DuckDB's settings stop the attacks even without the statement and parse-tree checks."""
    connection, views = connect(output)
    try:
        assert views == ["sleep", "wear"]
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_parquet('{outside}/other.parquet')",
            f"SELECT * FROM read_parquet('{tables_location(output)}/wear.parquet')",
            "SELECT * FROM glob('/etc/*')",
            f"COPY wear TO '{outside}/copy.csv'",
            f"ATTACH '{outside}/other.db'",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET memory_limit = '100GB'",
        ):
            with pytest.raises(duckdb.Error):
                connection.execute(sql)
        settings = {
            name: connection.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]
            for name in ("enable_external_access", "lock_configuration", "autoload_known_extensions", "threads")
        }
        assert settings == {
            "enable_external_access": False,
            "lock_configuration": True,
            "autoload_known_extensions": False,
            "threads": min(2, settings["threads"]),
        }
        assert connection.execute("SELECT SUM(day) FROM wear").fetchall() == [(4,)]  # the views still read
    finally:
        connection.close()
    assert sorted(p.name for p in outside.iterdir()) == ["other.parquet"]


def test_python_objects_are_not_tables(output: str) -> None:
    secret = pd.DataFrame({"password": ["hunter2"]})  # noqa: F841 - what a replacement scan would find
    with pytest.raises(QueryError) as refused:
        run_sandboxed_query(output, "SELECT * FROM secret")
    assert "hunter2" not in str(refused.value)


# ---- limits ------------------------------------------------------------------------------------


def test_row_limit_cuts_and_says_so(output: str) -> None:
    cut = run_sandboxed_query(output, "SELECT range AS n FROM range(25) ORDER BY n DESC", max_rows=10)
    assert isinstance(cut, QueryResult) and cut.truncated and cut.row_limit == 10
    assert cut.frame["n"].tolist() == list(range(24, 14, -1))  # the first rows in the query's own order
    whole = run_sandboxed_query(output, "SELECT * FROM range(10)", max_rows=10)
    assert not whole.truncated and len(whole.frame) == 10
    frame = run_query(output, "SELECT * FROM range(7)", max_rows=5)
    assert len(frame) == 5 and frame.attrs == {"truncated": True, "row_limit": 5}
    assert run_query(output, "SELECT * FROM wear").attrs["truncated"] is False


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT SUM(a.range * b.range) FROM range(1000000) a, range(1000000) b",
        "SELECT MAX(md5(a.range::VARCHAR || w.subject)) FROM range(1000000000) a, wear w",  # through the views
    ],
)
def test_time_limit_stops_a_long_query(output: str, sql: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"the query ran longer than 1 s; narrow it \(WHERE, LIMIT\)"):
        run_sandboxed_query(output, sql, timeout_seconds=1.0)
    assert time.monotonic() - started < 6


def test_limits_must_be_positive(output: str) -> None:
    with pytest.raises(ValueError):
        run_sandboxed_query(output, "SELECT 1", max_rows=0)
    with pytest.raises(ValueError):
        run_sandboxed_query(output, "SELECT 1", timeout_seconds=0)


def test_cli_says_when_rows_were_cut(output: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from biomarkerflow.cli import reports
    from biomarkerflow.cli.app import app

    stub = SimpleNamespace(query=lambda study, sql: run_query(output, sql, max_rows=3))
    monkeypatch.setattr(reports, "platform", lambda: stub)
    result = CliRunner().invoke(app, ["query", "--study", "s", "--format", "csv", "SELECT * FROM range(5)"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["range", "0", "1", "2"]  # stdout stays a whole CSV file
    assert "only the first 3 rows" in result.stderr


# ---- tables on S3 ----------------------------------------------------------------------------


def test_tables_on_s3_query_in_the_sandbox(s3_bucket: str, tmp_path: Path) -> None:
    output = f"{s3_bucket}/results/study-a"
    write_tables(tmp_path / "tables")
    store.replace_folder(tmp_path / "tables", tables_location(output))
    found = run_sandboxed_query(output, 'SELECT subject, SUM("wear hours") AS h FROM wear GROUP BY 1 ORDER BY 1')
    assert found.frame.to_dict(orient="list") == {"subject": ["P1", "P2"], "h": [22.0, 8.0]}
    with pytest.raises(QueryError, match="read_parquet reads files outside them"):
        run_sandboxed_query(output, f"SELECT * FROM read_parquet('{tables_location(output)}/wear.parquet')")
    assert query.connect(output)[1] == ["sleep", "wear"]
