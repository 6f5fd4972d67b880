"""`Catalog`: the one object the rest of biomarkerflow uses to read and change catalog state.

It keeps no logic of its own: each method hands over to the section that owns its noun
(studies.py, files.py, claims.py, runs.py, metadata.py, runners.py, coststore.py,
status.py), all sharing one `connection.Database`. Every public method is one transaction
(status reads several) and is re-run when the database connection was lost mid-way
(`connection.reconnecting`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from biomarkerflow.catalog.access import Audit, Tokens, WorkRequests
from biomarkerflow.catalog.browse import Browse, FileFilter, Page, RunFilter
from biomarkerflow.catalog.claims import Claims
from biomarkerflow.catalog.connection import Database, reconnect_on_lost_connections
from biomarkerflow.catalog.coststore import CostStore
from biomarkerflow.catalog.files import Files, ListedFile
from biomarkerflow.catalog.gates import GateFile, GateMark, Gates, GateVerdict
from biomarkerflow.catalog.metadata import Metadata
from biomarkerflow.catalog.models import FileState
from biomarkerflow.catalog.records import (
    AuditRecord,
    CostModelRecord,
    CostRow,
    EstimateRecord,
    FileRecord,
    MachineRecord,
    Observation,
    RegisterInfo,
    RunnerRecord,
    RunRecord,
    StudyRecord,
    StudyStatus,
    TokenRecord,
    WorkRequestRecord,
)
from biomarkerflow.catalog.runners import Runners
from biomarkerflow.catalog.runs import Runs
from biomarkerflow.catalog.status import StatusReport
from biomarkerflow.catalog.studies import Studies
from biomarkerflow.metrics import RunMetrics


@reconnect_on_lost_connections
class Catalog:
    """Open with `Catalog(url)` or `Catalog.for_home(path)`; the schema is created if missing.

    Values handed out are frozen records (catalog.records), never live ORM objects.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = Database(url)
        self._studies = Studies(self._db)
        self._files = Files(self._db)
        self._claims = Claims(self._db)
        self._runs = Runs(self._db)
        self._metadata = Metadata(self._db)
        self._gates = Gates(self._db)
        self._runners = Runners(self._db)
        self._costs = CostStore(self._db)
        self._status = StatusReport(self._db, self._studies)
        self._browse = Browse(self._db)
        self._tokens = Tokens(self._db)
        self._audit = Audit(self._db)
        self._requests = WorkRequests(self._db)

    @classmethod
    def for_home(cls, home: Path) -> Catalog:
        home.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{home.resolve() / 'catalog.db'}")

    def close(self) -> None:
        self._db.close()

    def _session(self) -> AbstractContextManager[Session]:
        # For tests that set up states no public method produces (e.g. a lease that expired an hour ago).
        return self._db.session()

    # ---- studies ---------------------------------------------------------------------------------

    def get_study(self, study_id: str) -> StudyRecord | None:
        return self._studies.get(study_id)

    def studies(self) -> list[StudyRecord]:
        """Every study, highest priority first."""
        return self._studies.all()

    def upsert_study(
        self,
        study_id: str,
        *,
        config_source: str,
        config_sha256: str,
        config: dict[str, Any],
        output_location: str,
        data_location: str,
        priority: int,
    ) -> str:
        """Register or update a study; returns 'new', 'changed' or 'unchanged'."""
        return self._studies.upsert(
            study_id,
            config_source=config_source,
            config_sha256=config_sha256,
            config=config,
            output_location=output_location,
            data_location=data_location,
            priority=priority,
        )

    def move_study_config(self, study_id: str, config_source: str) -> None:
        """A study's config file was renamed or moved (same `study:` id): it keeps its study."""
        self._studies.move_config(study_id, config_source)

    def mark_stale(self, study_id: str, reason: str, subjects: Iterable[str] | None = None) -> int:
        """SUCCEEDED/EXCLUDED/FAILED files of the study (or of these subjects) -> STALE; how many."""
        return self._studies.mark_stale(study_id, reason, subjects)

    def known_config_sha(self, config_source: str) -> str | None:
        return self._studies.known_config_sha(config_source)

    # ---- files -----------------------------------------------------------------------------------

    def register_files(self, study_id: str, entries: Iterable[ListedFile], *, complete: bool = True) -> RegisterInfo:
        """Add new files as DISCOVERED; a file whose fingerprint changed starts over; with a
        `complete` listing, files missing from it are REMOVED and ones back or moved restored.

        Each entry is (url, relative_path, subject, size, mtime, fingerprint).
        """
        return self._files.register(study_id, entries, complete=complete)

    def files(self, study_id: str | None = None, states: Iterable[str] | None = None) -> list[FileRecord]:
        return self._files.find(study_id, states)

    def get_file(self, file_id: int) -> FileRecord | None:
        return self._files.get(file_id)

    def files_named(self, urls: Iterable[str] = (), relative_path: str | None = None) -> list[FileRecord]:
        """Files whose URL is one of `urls`, or else whose path relative to its data location matches."""
        return self._files.named(urls, relative_path)

    def next_retry_at(self, study_ids: list[str]) -> datetime | None:
        """The earliest time a READY file held back by a retry backoff may run."""
        return self._files.next_retry_at(study_ids)

    def subject_file_counts(self, study_id: str) -> dict[str, int]:
        return self._files.subject_counts(study_id)

    def set_gate(self, file_id: int, expected_state: str, ready: bool, reason: str | None) -> bool:
        """Record a requirement check: READY, or WAITING with why. No-op when nothing changed."""
        return self._files.set_gate(file_id, expected_state, ready, reason)

    def events(self, file_id: int) -> list[tuple[datetime, str | None, str, str | None]]:
        return self._files.events(file_id)

    # ---- metadata --------------------------------------------------------------------------------

    def upsert_metadata(self, study_id: str, rows: dict[str, dict[str, Any]], source: str) -> list[str]:
        """Store subject metadata; returns the subjects whose fields changed."""
        return self._metadata.upsert(study_id, rows, source)

    def metadata(self, study_id: str) -> dict[str, dict[str, Any]]:
        return self._metadata.of_study(study_id)

    def ingest_metadata(
        self, study_id: str, rows: dict[str, dict[str, Any]], source: str, sources_sha256: str
    ) -> dict[str, dict[str, Any] | None]:
        """Store subject metadata and the hash of its files; changed subject -> fields before (None: new)."""
        return self._metadata.ingest(study_id, rows, source, sources_sha256)

    # ---- incremental gating (gates.py) -----------------------------------------------------------

    def gate_mark(self, study_id: str) -> GateMark:
        """What the study's last requirement check saw."""
        return self._gates.mark(study_id)

    def save_gate_mark(self, study_id: str, signature: str, subjects: dict[str, str]) -> None:
        self._gates.save_mark(study_id, signature, subjects)

    def gate_files(
        self,
        study_id: str,
        *,
        subjects: Iterable[str] = (),
        every_waiting: bool = False,
        now: datetime | None = None,
        also: Sequence[str] = (),
    ) -> list[GateFile]:
        """DISCOVERED and STALE files (and `also` states), and the WAITING ones of `subjects`, due at `now`, or all."""
        return self._gates.files(study_id, subjects=subjects, every_waiting=every_waiting, now=now, also=also)

    def record_gates(self, verdicts: Iterable[GateVerdict], seen: dict[int, GateFile]) -> int:
        """Write a check's verdicts in batches (compare-and-set on the state it saw); files changed."""
        return self._gates.record(verdicts, seen)

    # ---- claims and leases -----------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        study_ids: list[str] | None = None,
        group_limits: dict[str, tuple[str, int]] | None = None,
    ) -> list[FileRecord]:
        """Take up to `limit` READY files for `worker`, highest study priority first (see Claims.claim)."""
        return self._claims.claim(worker, limit, lease_seconds, study_ids, group_limits)

    def renew_leases(self, worker: str, lease_seconds: float) -> int:
        """Heartbeat: push out the lease of every file this worker holds."""
        return self._claims.renew(worker, lease_seconds)

    def release(self, worker: str) -> int:
        """Give back everything `worker` holds (a clean or interrupted stop)."""
        return self._claims.release(worker)

    def recover_claims(self, host: str, alive: Callable[[int, datetime], bool]) -> int:
        """Files of claimers on `host` whose process is gone go back to READY at once (see Claims.recover)."""
        return self._claims.recover(host, alive)

    def expire_leases(self) -> int:
        """Files whose worker stopped heartbeating go back to READY (their run is marked lost)."""
        return self._claims.expire()

    # ---- runs ------------------------------------------------------------------------------------

    def start_run(
        self,
        file_id: int,
        *,
        run_id: str,
        worker: str,
        host: str,
        config_sha256: str,
        package_version: str | None,
        lock_hash: str | None = None,
        pipeline: str | None = None,
    ) -> bool:
        """CLAIMED -> RUNNING and a new run row; False if the claim was lost."""
        return self._runs.start(
            file_id,
            run_id=run_id,
            worker=worker,
            host=host,
            config_sha256=config_sha256,
            package_version=package_version,
            lock_hash=lock_hash,
            pipeline=pipeline,
        )

    def finish_run(
        self,
        run_id: str,
        metrics: RunMetrics,
        *,
        max_attempts: int,
        retry_at: datetime | None,
        excluded: str | None = None,
    ) -> str:
        """Record a run's outcome and move its file on; returns the file's new state (see Runs.finish)."""
        return self._runs.finish(run_id, metrics, max_attempts=max_attempts, retry_at=retry_at, excluded=excluded)

    def runs(self, study_id: str | None = None, file_id: int | None = None) -> list[RunRecord]:
        return self._runs.find(study_id, file_id)

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    def current_run_ids(self, study_id: str, state: str = FileState.SUCCEEDED.value) -> list[str]:
        """The ids of the runs whose results are current (one per file in `state`), sorted."""
        return self._runs.current_run_ids(study_id, state)

    def current_results(self, study_id: str, *, excluded: bool = False) -> list[tuple[FileRecord, RunRecord]]:
        """Each SUCCEEDED file (and EXCLUDED one, with `excluded`) with the run whose results are current."""
        return self._runs.current_results(study_id, excluded=excluded)

    def files_version(self, study_id: str) -> str:
        """A value that changes whenever a file of the study is added or changes state or reason."""
        return self._files.version(study_id)

    def set_exclusion(self, file_id: int, excluded: str | None) -> bool:
        """SUCCEEDED <-> EXCLUDED after the study's quality gates changed (nothing recomputed)."""
        return self._runs.set_exclusion(file_id, excluded)

    def status(self, study_id: str | None = None, every_file: bool = True) -> list[StudyStatus]:
        """Each study's files per state and reason groups; with `every_file`, every waiting,
        failed and excluded file (else a few examples per group)."""
        return self._status.status(study_id, every_file)

    # ---- runners ---------------------------------------------------------------------------------

    def register_runner(self, runner: str, *, kind: str, executor: str, capacity: int) -> None:
        """A `process` or `watch` command announces itself (shown by `status` while it beats)."""
        self._runners.register(runner, kind=kind, executor=executor, capacity=capacity)

    def beat(self, runner: str, running_jobs: int, state: str = "running") -> None:
        self._runners.beat(runner, running_jobs, state)

    def unregister_runner(self, runner: str) -> None:
        self._runners.unregister(runner)

    def live_runners(self, within_seconds: float) -> list[RunnerRecord]:
        """Runners whose last heartbeat is recent; older rows belong to commands that died."""
        return self._runners.live(within_seconds)

    # ---- the cost store --------------------------------------------------------------------------

    def cost_summary(self, study_ids: list[str] | None = None) -> list[CostRow]:
        """Finished runs added up by study, pipeline, subject, month, outcome and currency."""
        return self._costs.cost_summary(study_ids)

    def cost_rows(self, study_ids: list[str] | None = None) -> list[CostRow]:
        """Every finished run with its cost, subject and input size, for cost reports."""
        return self._costs.cost_rows(study_ids)

    def add_imported_runs(self, rows: list[tuple[str, Observation]]) -> int:
        """Store past runs from elsewhere, each with where it came from (file:line)."""
        return self._costs.add_imported_runs(rows)

    def observation_count(self, pipeline: str) -> int:
        """How many succeeded runs of `pipeline` (ours and imported) a model could learn from."""
        return self._costs.observation_count(pipeline)

    def observations(self, pipeline: str | None = None, until: datetime | None = None) -> list[Observation]:
        """Every succeeded run (ours and imported) with its metering, oldest first."""
        return self._costs.observations(pipeline, until)

    def pipelines_with_history(self) -> list[str]:
        """Every pipeline with at least one succeeded run, ours or imported."""
        return self._costs.pipelines_with_history()

    def machines(self) -> list[MachineRecord]:
        """Every machine with succeeded runs, ours or imported, with its newest known figures."""
        return self._costs.machines()

    def cost_models(self, pipeline: str | None = None) -> list[CostModelRecord]:
        return self._costs.cost_models(pipeline)

    def champion_model(self, pipeline: str) -> CostModelRecord | None:
        return self._costs.champion_model(pipeline)

    def next_model_version(self, pipeline: str) -> int:
        return self._costs.next_model_version(pipeline)

    def record_cost_model(
        self,
        pipeline: str,
        *,
        version: int,
        promote: bool,
        path: str,
        trained_from: datetime,
        trained_to: datetime,
        train_runs: int,
        test_runs: int,
        metrics: dict[str, Any],
        note: str | None,
    ) -> None:
        """Record a trained model; when promoted, the old champion is retired in the same transaction."""
        self._costs.record_cost_model(
            pipeline,
            version=version,
            promote=promote,
            path=path,
            trained_from=trained_from,
            trained_to=trained_to,
            train_runs=train_runs,
            test_runs=test_runs,
            metrics=metrics,
            note=note,
        )

    def last_training_at(self) -> datetime | None:
        return self._costs.last_training_at()

    def log_estimates(self, estimates: list[dict[str, Any]]) -> list[int]:
        """Keep estimates as given (pipeline, model_id, file_id, inputs, predicted); their ids."""
        return self._costs.log_estimates(estimates)

    def estimates(self, pipeline: str | None = None, with_actual: bool = False) -> list[EstimateRecord]:
        return self._costs.estimates(pipeline, with_actual)

    # ---- browsing (paged, for the API and dashboard) ----------------------------------------------

    def files_page(
        self, where: FileFilter, offset: int = 0, limit: int = 100, after: int | None = None, total: int | None = None
    ) -> Page[FileRecord]:
        """A page of the matching files in id order; `total` when the caller already counted them."""
        return self._browse.files(where, offset, limit, after, total)

    def count_files(self, where: FileFilter) -> int:
        return self._browse.count_files(where)

    def last_runs(self, file_ids: list[int]) -> dict[int, str]:
        """Each file's newest run id (files never run are left out)."""
        return self._browse.last_runs(file_ids)

    def runs_page(self, where: RunFilter, offset: int = 0, limit: int = 100) -> Page[RunRecord]:
        return self._browse.runs(where, offset, limit)

    def waiting_reasons(self, study_id: str, limit: int = 50) -> list[tuple[str, int]]:
        """WAITING files grouped by why, most common first."""
        return self._browse.waiting_reasons(study_id, limit)

    def subjects(self, study_id: str) -> list[tuple[str, dict[str, int]]]:
        return self._browse.subjects(study_id)

    def finished_per_day(self, study_id: str) -> list[tuple[str, str, int]]:
        """(UTC day, SUCCEEDED or FAILED, files): the study's progress over time."""
        return self._browse.finished_per_day(study_id)

    def state_counts(self, study_id: str | None = None) -> dict[str, dict[str, int]]:
        """Files per state of every study, or of one (one GROUP BY, not a list of files)."""
        return self._browse.state_counts(study_id)

    def cost_totals(self, study_id: str | None = None) -> dict[str, tuple[float, str | None]]:
        """What every study's (or one study's) runs cost so far: (sum, currency)."""
        return self._browse.cost_totals(study_id)

    def last_activities(self, study_id: str | None = None) -> dict[str, datetime]:
        return self._browse.last_activities(study_id)

    # ---- API access: tokens, audit log, work requests ---------------------------------------------

    def create_token(self, name: str, scope: str, token_sha256: str, prefix: str) -> TokenRecord:
        return self._tokens.create(name, scope, token_sha256, prefix)

    def token_by_hash(self, token_sha256: str) -> TokenRecord | None:
        """The live token with this hash (None: unknown or revoked)."""
        return self._tokens.find(token_sha256)

    def tokens(self) -> list[TokenRecord]:
        return self._tokens.all()

    def revoke_token(self, name: str) -> TokenRecord:
        return self._tokens.revoke(name)

    def audit(
        self, actor: str, action: str, target: str | None, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        self._audit.record(actor, action, target, outcome, details)

    def audit_entries(self, limit: int = 100, offset: int = 0) -> list[AuditRecord]:
        return self._audit.entries(limit, offset)

    def request_work(self, kind: str, study_id: str | None, requested_by: str) -> WorkRequestRecord:
        return self._requests.add(kind, study_id, requested_by)

    def take_work_request(self, taker: str) -> WorkRequestRecord | None:
        """The oldest pending work request, now running under `taker` (each is taken once)."""
        return self._requests.take(taker)

    def finish_work_request(
        self, request_id: int, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        self._requests.finish(request_id, result=result, error=error)

    def work_request(self, request_id: int) -> WorkRequestRecord | None:
        return self._requests.get(request_id)

    def work_requests(self, limit: int = 50) -> list[WorkRequestRecord]:
        return self._requests.recent(limit)
