"""Catalog databases for tests: a SQLite file, or a fresh database on the real PostgreSQL server.

The server runs on the development machines at 127.0.0.1:5432 (trust auth; `scripts/test.sh`
starts it when it is stopped). Each PostgreSQL catalog gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = os.environ.get("BIOMARKERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise  # CI has the server: a missing one must fail, not skip half the suite
        pytest.skip(f"no PostgreSQL server at {SERVER}: {exc}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database; yields its URL and drops it afterwards."""
    name = f"bmf_test_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def catalog_url(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder.resolve() / 'catalog.db'}"
        return
    with postgres_database() as url:
        yield url
