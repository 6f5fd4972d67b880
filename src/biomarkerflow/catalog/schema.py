"""Bring a catalog database to the current schema with the Alembic migrations in `migrations/`.

The same migrations serve SQLite and PostgreSQL. A catalog made before migrations existed
(tables but no `alembic_version`) is adopted: stamped at the revision its tables match,
then upgraded, so no home has to be thrown away.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:  # Alembic takes ~0.7 s to import: only an actual upgrade needs it
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: PostgreSQL's advisory lock that serialises concurrent upgrades.
_ADVISORY_LOCK_ID = zlib.crc32(b"biomarkerflow.catalog.schema")


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


_REVISION = re.compile(r'^(down_)?revision = "([^"]+)"', re.MULTILINE)


@functools.cache
def head_revision() -> str:
    """The newest migration, read from the migration files themselves (the one no other revises)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, revision in _REVISION.findall(path.read_text()):
            (revised if down else revisions).add(revision)
    heads = revisions - revised
    assert len(heads) == 1, f"the migrations must form one line, heads: {sorted(heads)}"
    return heads.pop()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None for one that was never migrated."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def _unversioned_revision(connection: Connection) -> str | None:
    """The revision a pre-migration catalog's tables match, None for an empty database."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if "alembic_version" in tables or "files" not in tables:
        return None
    if "workers" in tables:
        return "0003"
    run_columns = {column["name"] for column in inspector.get_columns("runs")}
    return "0002" if "lock_hash" in run_columns else "0001"


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """One SQLite upgrader at a time, held until its transaction has committed."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _postgres_lock(connection: Connection) -> None:
    """One PostgreSQL upgrader at a time; released when the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})


def _create_at_head(connection: Connection, head: str) -> None:
    """A new, empty database: the models' tables at once, stamped at the newest revision.

    Running every migration from the first instead costs ~0.8 s (mostly importing Alembic)
    for each new catalog; tests/test_catalog_schema.py checks that the migrations build
    exactly these tables, so both roads lead to the same schema.
    """
    from biomarkerflow.catalog.models import Base

    Base.metadata.create_all(connection)
    connection.execute(
        text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, PRIMARY KEY (version_num))")
    )
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})


def upgrade(engine: Engine) -> None:
    """Create or migrate the catalog's tables to the newest schema (a no-op when current)."""
    head = head_revision()
    with engine.connect() as connection:
        if current_revision(connection) == head:
            return  # the common case: one cheap query
    # Two processes opening a new catalog must not both create it: the lock is taken
    # before the transaction and released only after it committed.
    with _sqlite_file_lock(engine), engine.begin() as connection:
        _postgres_lock(connection)
        if current_revision(connection) == head:
            return
        if not inspect(connection).get_table_names():
            _create_at_head(connection, head)
            return
        from alembic import command

        config = _config(connection)
        adopted = _unversioned_revision(connection)
        if adopted is not None:
            command.stamp(config, adopted)
        command.upgrade(config, "head")
