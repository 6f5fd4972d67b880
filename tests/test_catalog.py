"""Catalog state machine: every transition is a compare-and-set; nothing is lost or run twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from biomarkerflow.catalog.manager import Catalog, RunMetrics, utcnow
from biomarkerflow.catalog.models import DataFile, FileState
from biomarkerflow.errors import CatalogError
from tests.databases import BACKENDS, catalog_url


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    with catalog_url(request.param, tmp_path / "home") as url:
        catalog = Catalog(url)
        _add_study(catalog, tmp_path)
        yield catalog
        catalog.close()


def _add_study(catalog: Catalog, tmp_path: Path) -> None:
    catalog.upsert_study(
        "s1",
        config_source="/configs/s1.yaml",
        config_sha256="a" * 64,
        config={"study": "s1"},
        output_location=str(tmp_path / "out"),
        data_location=str(tmp_path / "data"),
        priority=0,
    )


def register(catalog: Catalog, *names: str, fingerprint: str = "f1") -> None:
    catalog.register_files("s1", [(f"/data/{n}", n, n.split("_")[0], 10, 1.0, fingerprint) for n in names])


def make_ready(catalog: Catalog) -> None:
    for file in catalog.files("s1"):
        catalog.set_gate(file.id, file.state, True, None)


def test_study_upsert_reports_new_changed_unchanged(catalog: Catalog) -> None:
    args = dict(
        config_source="/configs/s1.yaml", config={"study": "s1"}, output_location="o", data_location="d", priority=0
    )
    assert catalog.upsert_study("s1", config_sha256="a" * 64, **args) == "unchanged"  # type: ignore[arg-type]
    assert catalog.upsert_study("s1", config_sha256="b" * 64, **args) == "changed"  # type: ignore[arg-type]


def test_same_study_id_from_another_config_is_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="already used by /configs/s1.yaml"):
        catalog.upsert_study(
            "s1",
            config_source="/configs/other.yaml",
            config_sha256="c" * 64,
            config={},
            output_location="o",
            data_location="d",
            priority=0,
        )


def test_register_is_incremental_and_detects_changed_content(catalog: Catalog) -> None:
    register(catalog, "A_1.bin", "B_1.bin")
    # Partial listings (complete=False) leave the files they do not name alone.
    info = catalog.register_files(
        "s1",
        [("/data/A_1.bin", "A_1.bin", "A", 10, 1.0, "f1"), ("/data/C_1.bin", "C_1.bin", "C", 10, 1.0, "f1")],
        complete=False,
    )
    assert (info.new, info.changed, info.unchanged, info.removed) == (1, 0, 1, 0)
    make_ready(catalog)
    info = catalog.register_files("s1", [("/data/A_1.bin", "A_1.bin", "A", 11, 2.0, "f2")], complete=False)
    assert info.changed == 1
    states = {f.relative_path: f.state for f in catalog.files("s1")}
    assert states == {"A_1.bin": "DISCOVERED", "B_1.bin": "READY", "C_1.bin": "READY"}
    # A whole listing: what it does not name is gone from the data location.
    info = catalog.register_files("s1", [("/data/A_1.bin", "A_1.bin", "A", 11, 2.0, "f2")])
    assert (info.unchanged, info.removed) == (1, 2)
    states = {f.relative_path: f.state for f in catalog.files("s1")}
    assert states == {"A_1.bin": "DISCOVERED", "B_1.bin": "REMOVED", "C_1.bin": "REMOVED"}


def test_gate_records_reason_and_event_trail(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    file = catalog.files("s1")[0]
    assert catalog.set_gate(file.id, "DISCOVERED", False, "metadata missing")
    assert not catalog.set_gate(file.id, "WAITING", False, "metadata missing")  # nothing changed
    assert catalog.set_gate(file.id, "WAITING", True, None)
    assert [e[2] for e in catalog.events(file.id)] == ["DISCOVERED", "WAITING", "READY"]
    # A stale expectation loses the compare-and-set.
    assert not catalog.set_gate(file.id, "WAITING", False, "late")


def test_concurrent_claimers_never_take_the_same_file(tmp_path: Path, catalog: Catalog) -> None:
    register(catalog, *[f"S{i}_x.bin" for i in range(40)])
    make_ready(catalog)
    claimed: list[list[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        try:
            own = Catalog(catalog.url)  # separate engine, like a separate process
            got: list[int] = []
            while batch := own.claim(name, 3, 60):
                got += [f.id for f in batch]
            with lock:
                claimed.append(got)
        except BaseException as exc:  # noqa: BLE001 - a dead claimer must fail the test, not vanish
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(claimed) == 4  # every claimer finished
    every = [i for got in claimed for i in got]
    assert len(every) == 40 and len(set(every)) == 40


def run_one(catalog: Catalog, worker: str = "w") -> tuple[int, str]:
    file = catalog.claim(worker, 1, 60)[0]
    run_id = f"run-{file.id}-{file.attempts}"
    assert catalog.start_run(
        file.id, run_id=run_id, worker=worker, host="h", config_sha256="a" * 64, package_version="1"
    )
    return file.id, run_id


def test_success_sets_current_run(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    file_id, run_id = run_one(catalog)
    state = catalog.finish_run(
        run_id,
        RunMetrics(outcome="succeeded", wall_seconds=2.0, cpu_seconds=1.5, peak_rss_bytes=10, result_location="r"),
        max_attempts=3,
        retry_at=None,
    )
    assert state == "SUCCEEDED"
    file = catalog.files("s1")[0]
    assert file.current_run_id == run_id
    run = catalog.runs("s1")[0]
    assert (run.outcome, run.wall_seconds, run.cpu_seconds, run.peak_rss_bytes) == ("succeeded", 2.0, 1.5, 10)


def test_retryable_failure_retries_then_fails_for_good(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    for attempt in (1, 2):
        _, run_id = run_one(catalog)
        state = catalog.finish_run(
            run_id,
            RunMetrics(outcome="failed", error=f"boom {attempt}"),
            max_attempts=3,
            retry_at=utcnow() - timedelta(seconds=1),
        )
        assert state == "READY"
    _, run_id = run_one(catalog)
    state = catalog.finish_run(run_id, RunMetrics(outcome="failed", error="boom 3"), max_attempts=3, retry_at=None)
    assert state == "FAILED"
    assert [r.error for r in catalog.runs("s1")] == ["boom 1", "boom 2", "boom 3"]
    assert catalog.status("s1")[0].failed == [("A_1.bin", "boom 3")]


def test_backoff_holds_the_file_back(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    _, run_id = run_one(catalog)
    catalog.finish_run(
        run_id,
        RunMetrics(outcome="failed", error="x"),
        max_attempts=3,
        retry_at=utcnow() + timedelta(minutes=5),
    )
    assert catalog.claim("w", 1, 60) == []
    assert catalog.next_retry_at(["s1"]) is not None


def test_expired_lease_returns_the_file_and_marks_the_run_lost(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    file_id, run_id = run_one(catalog, "dead-worker")
    with catalog._session() as session:  # the worker stopped heartbeating an hour ago
        session.execute(update(DataFile).values(lease_expires_at=utcnow() - timedelta(hours=1)))
    assert catalog.expire_leases() == 1
    assert catalog.files("s1")[0].state == "READY"
    assert catalog.runs("s1")[0].outcome == "lost"
    # The dead worker's late report must not overwrite the retry.
    assert catalog.finish_run(run_id, RunMetrics(outcome="succeeded"), max_attempts=3, retry_at=None) == "READY"


def test_file_changed_while_running_is_rediscovered(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    _, run_id = run_one(catalog)
    register(catalog, "A_1.bin", fingerprint="f2")
    assert catalog.files("s1")[0].state == FileState.RUNNING.value
    assert catalog.finish_run(run_id, RunMetrics(outcome="succeeded"), max_attempts=3, retry_at=None) == "DISCOVERED"


def test_release_gives_back_claims_and_interrupted_runs(catalog: Catalog) -> None:
    register(catalog, "A_1.bin", "B_1.bin", "C_1.bin")
    make_ready(catalog)
    _, run_id = run_one(catalog, "w")  # A is RUNNING
    assert len(catalog.claim("w", 1, 60)) == 1  # B is CLAIMED
    assert len(catalog.claim("other", 1, 60)) == 1  # C belongs to someone else
    assert catalog.release("w") == 2
    assert [f.state for f in catalog.files("s1")] == ["READY", "READY", "CLAIMED"]
    assert [r.outcome for r in catalog.runs("s1")] == ["interrupted"]


def test_metadata_upsert_reports_only_changes(catalog: Catalog) -> None:
    assert catalog.upsert_metadata("s1", {"A": {"height_m": None}, "B": {"height_m": 1.7}}, "m.csv") == ["A", "B"]
    assert catalog.upsert_metadata("s1", {"A": {"height_m": 1.8}, "B": {"height_m": 1.7}}, "m.csv") == ["A"]
    assert catalog.metadata("s1")["A"] == {"height_m": 1.8}


def test_expired_lease_after_the_last_attempt_fails_for_good(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    for _ in range(3):  # the file kills its worker every time (max_attempts defaults to 3)
        run_one(catalog, "doomed")
        with catalog._session() as session:
            session.execute(update(DataFile).values(lease_expires_at=utcnow() - timedelta(hours=1)))
        catalog.expire_leases()
    file = catalog.files("s1")[0]
    assert file.state == "FAILED" and "gave up after 3 attempt(s)" in (file.last_error or "")
    assert [r.outcome for r in catalog.runs("s1")] == ["lost", "lost", "lost"]


def test_interrupted_attempt_is_given_back(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    run_one(catalog, "w")
    catalog.release("w")
    assert catalog.files("s1")[0].attempts == 0


def test_failure_of_a_file_changed_while_running_rediscovers_it(catalog: Catalog) -> None:
    register(catalog, "A_1.bin")
    make_ready(catalog)
    _, run_id = run_one(catalog)
    register(catalog, "A_1.bin", fingerprint="f2")
    failed = RunMetrics(outcome="failed", error="corrupt")
    assert catalog.finish_run(run_id, failed, max_attempts=3, retry_at=None) == "DISCOVERED"


# ---- the facade ---------------------------------------------------------------------------------

# Catalog's public methods by section: callers rely on each name and signature.
FACADE = {
    "opening": ("for_home", "close"),
    "studies": ("get_study", "studies", "upsert_study", "move_study_config", "mark_stale", "known_config_sha"),
    "files": ("register_files", "files", "get_file", "files_named", "next_retry_at", "subject_file_counts"),
    "gates and events": ("set_gate", "events"),
    "metadata": ("upsert_metadata", "metadata", "ingest_metadata"),
    "incremental gating": ("gate_mark", "save_gate_mark", "gate_files", "record_gates"),
    "claims": ("claim", "renew_leases", "release", "recover_claims", "expire_leases"),
    "runs": (
        "start_run",
        "finish_run",
        "runs",
        "get_run",
        "current_results",
        "current_run_ids",
        "set_exclusion",
        "files_version",
        "status",
    ),
    "workers": ("register_runner", "beat", "unregister_runner", "live_runners"),
    "history": (
        "cost_rows",
        "cost_summary",
        "add_imported_runs",
        "observations",
        "observation_count",
        "pipelines_with_history",
        "machines",
    ),
    "cost models": ("cost_models", "champion_model", "next_model_version", "record_cost_model", "last_training_at"),
    "estimates": ("log_estimates", "estimates"),
    "browsing": (
        "files_page",
        "count_files",
        "last_runs",
        "runs_page",
        "waiting_reasons",
        "subjects",
        "finished_per_day",
        "state_counts",
        "cost_totals",
        "last_activities",
    ),
    "api access": (
        "create_token",
        "token_by_hash",
        "tokens",
        "revoke_token",
        "audit",
        "audit_entries",
        "request_work",
        "take_work_request",
        "finish_work_request",
        "work_request",
        "work_requests",
    ),
}


def test_the_facade_keeps_its_methods_and_the_old_module_its_names() -> None:
    import biomarkerflow.catalog as package
    from biomarkerflow.catalog import manager

    public = sorted(name for name in vars(Catalog) if not name.startswith("_"))
    assert public == sorted(name for names in FACADE.values() for name in names)
    # What src, tests and benchmarks import from the old module still comes from there, and
    # each name the package exports too is the same object.
    used = {"Catalog", "CostModelRecord", "FailureDetail", "FileRecord", "RegisterInfo", "RunMetrics", "RunRecord"}
    assert used | {"StudyRecord", "StudyStatus", "RunnerRecord", "sqlalchemy_url", "utcnow"} <= set(manager.__all__)
    for name in set(manager.__all__) & set(package.__all__):
        assert getattr(manager, name) is getattr(package, name), name


def test_a_lost_connection_reruns_the_whole_method(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomarkerflow.catalog import connection

    monkeypatch.setattr(connection, "RECONNECT_DELAYS", (0.0, 0.0))
    real = connection.Database.session
    broken = {"left": 2}

    def flaky(self: connection.Database) -> Iterator[object]:
        if broken["left"]:
            broken["left"] -= 1
            raise connection.ConnectionLost("server closed the connection unexpectedly")
        return real(self)

    monkeypatch.setattr(connection.Database, "session", flaky)
    assert [s.id for s in catalog.studies()] == ["s1"]  # two lost connections, then it worked
    broken["left"] = 3
    with pytest.raises(CatalogError, match="could not reconnect"):
        catalog.studies()
