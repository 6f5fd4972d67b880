"""The catalog schema comes from Alembic migrations, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

from biomarkerflow.catalog import schema
from biomarkerflow.catalog.manager import Catalog, sqlalchemy_url
from biomarkerflow.catalog.models import Base
from tests.databases import BACKENDS, catalog_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_exactly_the_models_schema(tmp_path: Path, backend: str) -> None:
    """A model changed without a migration (or the reverse) fails here. A new catalog is
    created from the models at once (no migrations to run): both must give one schema."""
    with catalog_url(backend, tmp_path) as url:
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "head")  # every migration, from the first
        with engine.connect() as connection:
            assert schema.current_revision(connection) == schema.head_revision()
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_catalog_is_created_at_the_head_revision(tmp_path: Path, backend: str) -> None:
    with catalog_url(backend, tmp_path) as url:
        Catalog(url).close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.connect() as connection:
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
        later = ("lock_hash", "pipeline", "cost", "currency", "price_table", "capacity", "billed_seconds")
        for column in (*later, "vcpus", "memory_gb", "failed_step", "traceback", "notices", "facts", "machine"):
            raw.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        for column in ("recording_seconds", "sample_rate_hz"):  # in issue 2's runs, moved into facts since
            raw.execute(f"ALTER TABLE runs ADD COLUMN {column} FLOAT")
        for index in ("ix_files_recheck", "ix_files_subject"):  # files without what migration 0010 adds
            raw.execute(f"DROP INDEX {index}")
        raw.execute("ALTER TABLE files DROP COLUMN recheck_at")
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


def _alembic(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0006_moves_recording_facts_into_the_facts_column(tmp_path: Path, backend: str) -> None:
    """Runs recorded before facts keep their recording length and sample rate, now under `facts`."""
    with catalog_url(backend, tmp_path) as url:
        Catalog(url).close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0005")  # a catalog as issue 14 left it
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO studies VALUES ('s', 's.yaml', 'abc', '{}', '/out', '/data', 0, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO files (id, study_id, url, relative_path, size, fingerprint, fingerprint_seen_at, "
                    "state, attempts, discovered_at, updated_at) VALUES (1, 's', '/data/a.bin', 'a.bin', 10, 'f', "
                    "'2026-01-01', 'SUCCEEDED', 1, '2026-01-01', '2026-01-01')"
                )
            )
            for run_id, seconds, rate in (("both", 86400.0, 50.0), ("rate", None, 25.0), ("none", None, None)):
                connection.execute(
                    text(
                        "INSERT INTO runs (id, file_id, study_id, attempt, worker, config_sha256, input_fingerprint, "
                        "started_at, finished_at, outcome, recording_seconds, sample_rate_hz) "
                        "VALUES (:id, 1, 's', 1, 'w', 'c', 'f', '2026-01-01', '2026-01-01', 'succeeded', "
                        ":seconds, :rate)"
                    ),
                    {"id": run_id, "seconds": seconds, "rate": rate},
                )
        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "head")
        engine.dispose()
        catalog = Catalog(url)
        facts = {run.id: run.facts for run in catalog.runs("s")}
        assert facts == {
            "both": {"recording_seconds": 86400.0, "sample_rate_hz": 50.0},
            "rate": {"sample_rate_hz": 25.0},
            "none": {},
        }
        # Cost reports read the recording length from the facts now.
        assert sorted(r.recording_seconds or 0.0 for r in catalog.cost_rows(["s"])) == [0.0, 0.0, 86400.0]
        catalog.close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0005")  # and back, values kept
            rows = connection.execute(text("SELECT id, recording_seconds, sample_rate_hz FROM runs ORDER BY id"))
            assert sorted(rows) == [("both", 86400.0, 50.0), ("none", None, None), ("rate", None, 25.0)]
            command.upgrade(_alembic(connection), "head")
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0007_renames_the_cost_key_workflow_to_pipeline(tmp_path: Path, backend: str) -> None:
    """Runs, imported runs, cost models and estimates recorded under `workflow` are found under `pipeline`."""
    key = "skdh-0.17.18-5c1e0a9b"
    with catalog_url(backend, tmp_path) as url:
        Catalog(url).close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0006")  # a catalog as issue 15 left it
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO studies VALUES ('s', 's.yaml', 'abc', '{}', '/out', '/data', 0, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO files (id, study_id, url, relative_path, size, fingerprint, fingerprint_seen_at, "
                    "state, attempts, discovered_at, updated_at) VALUES (1, 's', '/data/a.bin', 'a.bin', 10, 'f', "
                    "'2026-01-01', 'SUCCEEDED', 1, '2026-01-01', '2026-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO runs (id, file_id, study_id, attempt, worker, config_sha256, input_fingerprint, "
                    "started_at, finished_at, outcome, wall_seconds, workflow) VALUES ('r1', 1, 's', 1, 'w', 'c', "
                    "'f', '2026-01-01', '2026-01-01', 'succeeded', 12.0, :key)"
                ),
                {"key": key},
            )
            connection.execute(
                text(
                    "INSERT INTO imported_runs (workflow, started_at, input_bytes, output_bytes, wall_seconds, "
                    "cpu_seconds, peak_rss_bytes, source, imported_at) VALUES (:key, '2025-12-01', 10, 1, 5.0, "
                    "4.0, 100, 'old.csv:2', '2026-01-01')"
                ),
                {"key": "skdh-0.17.17-00000000"},
            )
            connection.execute(
                text(
                    "INSERT INTO cost_models (workflow, version, status, path, created_at, trained_from, trained_to, "
                    "train_runs, test_runs, metrics) VALUES (:key, 1, 'champion', '/m/v1.pkl', '2026-01-02', "
                    "'2025-12-01', '2026-01-01', 5, 1, '{}')"
                ),
                {"key": key},
            )
            connection.execute(
                text(
                    "INSERT INTO cost_estimates (at, workflow, model_id, file_id, inputs, predicted) "
                    "VALUES ('2026-01-02', :key, 1, 1, '{}', '{}')"
                ),
                {"key": key},
            )
        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "head")
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            indexes = {i["name"] for i in inspect(connection).get_indexes("imported_runs")}
            assert "ix_imported_runs_pipeline" in indexes and "ix_imported_runs_workflow" not in indexes
            unique = inspect(connection).get_unique_constraints("cost_models")
            assert [u["column_names"] for u in unique] == [["pipeline", "version"]]
            if backend == "postgresql":
                assert [u["name"] for u in unique] == ["cost_models_pipeline_version_key"]
            for table in ("runs", "imported_runs", "cost_models", "cost_estimates"):
                columns = {c["name"] for c in inspect(connection).get_columns(table)}
                assert "pipeline" in columns and "workflow" not in columns, table
        engine.dispose()
        catalog = Catalog(url)
        assert [r.pipeline for r in catalog.runs("s")] == [key]
        assert sorted(catalog.pipelines_with_history()) == ["skdh-0.17.17-00000000", key]
        assert [o.pipeline for o in catalog.observations("skdh-0.17.17-00000000")] == ["skdh-0.17.17-00000000"]
        champion = catalog.champion_model(key)
        assert champion is not None and champion.pipeline == key and champion.version == 1
        assert catalog.next_model_version(key) == 2
        assert [e.pipeline for e in catalog.estimates(key)] == [key]
        assert [row.pipeline for row in catalog.cost_rows(["s"])] == [key]
        catalog.close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0006")  # and back, values kept
            for table in ("runs", "cost_models", "cost_estimates"):
                assert connection.execute(text(f"SELECT workflow FROM {table}")).scalars().all() == [key], table
            indexes = {i["name"] for i in inspect(connection).get_indexes("imported_runs")}
            assert "ix_imported_runs_workflow" in indexes
            command.upgrade(_alembic(connection), "head")
        engine.dispose()
