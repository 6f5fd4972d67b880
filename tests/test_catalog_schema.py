"""The catalog schema comes from Alembic migrations, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from biomarkerflow.catalog import schema
from biomarkerflow.catalog.manager import Catalog, sqlalchemy_url
from biomarkerflow.catalog.models import Base
from tests.databases import BACKENDS, catalog_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_exactly_the_models_schema(tmp_path: Path, backend: str) -> None:
    """A model changed without a migration (or the reverse) fails here."""
    with catalog_url(backend, tmp_path) as url:
        Catalog(url).close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.connect() as connection:
            assert schema.current_revision(connection) == schema.head_revision()
            assert MigrationContext.configure(connection).get_current_revision() == schema.head_revision()
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        engine.dispose()


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    assert schema.head_revision() == ScriptDirectory(str(schema.MIGRATIONS)).get_current_head()


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_processes_opening_a_new_catalog_create_it_once(tmp_path: Path, backend: str) -> None:
    with catalog_url(backend, tmp_path) as url:
        errors: list[BaseException] = []

        def open_it() -> None:
            try:
                Catalog(url).close()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert Catalog(url).studies() == []


def test_a_catalog_from_before_migrations_is_adopted_with_its_data(tmp_path: Path) -> None:
    """Issue-2 homes were made by create_all and have no runs.lock_hash: they are stamped and upgraded."""
    home = tmp_path / "home"
    home.mkdir()
    database = home / "catalog.db"
    engine = create_engine(f"sqlite:///{database}")
    issue_2_tables = ["studies", "files", "subject_metadata", "runs", "file_events"]
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[name] for name in issue_2_tables])
    engine.dispose()
    with sqlite3.connect(database) as raw:
        # The runs table as issue 2 made it: without the columns later migrations add.
        later = ("lock_hash", "workflow", "cost", "currency", "price_table", "capacity", "billed_seconds")
        for column in (*later, "vcpus", "memory_gb", "failed_step", "traceback", "notices"):
            raw.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        raw.execute(
            "INSERT INTO studies VALUES ('old', 's.yaml', 'abc', '{}', '/out', '/data', 0, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    catalog = Catalog.for_home(home)
    assert [s.id for s in catalog.studies()] == ["old"]
    columns = {c["name"] for c in inspect(create_engine(f"sqlite:///{database}")).get_columns("runs")}
    assert "lock_hash" in columns
    assert "workers" in inspect(create_engine(f"sqlite:///{database}")).get_table_names()
    with sqlite3.connect(database) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.head_revision(),)]
