"""The frozen records the catalog hands out: never live ORM objects.

Every section of the catalog returns these, and `cost/` reads them (cost reports,
cost models), which is why the records cost needs live here and not in `cost/`:
the catalog must not import `cost` (see tests/test_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from biomarkerflow.metrics import Capacity, Charge, RunMetrics

__all__ = [
    "AuditRecord",
    "Charge",
    "CostModelRecord",
    "CostRow",
    "EstimateRecord",
    "FailureDetail",
    "FileRecord",
    "Observation",
    "ReasonGroup",
    "RegisterInfo",
    "RunMetrics",
    "RunRecord",
    "StudyRecord",
    "StudyStatus",
    "RunnerRecord",
    "TokenRecord",
    "WorkRequestRecord",
]


@dataclass(frozen=True)
class StudyRecord:
    """A registered study: where its config came from, the config itself, and where data and results live."""

    id: str
    config_source: str
    config_sha256: str
    config: dict[str, Any]
    output_location: str
    data_location: str
    priority: int


@dataclass(frozen=True)
class FileRecord:
    """A data file and where it is in its life (see the state machine in DESIGN.md)."""

    id: int
    study_id: str
    url: str
    relative_path: str
    subject: str | None
    size: int
    fingerprint: str
    fingerprint_seen_at: datetime
    state: str
    reason: str | None
    attempts: int
    current_run_id: str | None
    last_error: str | None
    lease_expires_at: datetime | None = None  # naive UTC; while CLAIMED or RUNNING


@dataclass(frozen=True)
class RegisterInfo:
    """How many listed files were new, changed or unchanged; how many catalogued ones are gone
    (REMOVED), came back with the same content (restored), or were found under a new name
    with the same content and subject (moved)."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    restored: int = 0
    moved: int = 0


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunMetrics):
    """One run as the catalog keeps it: which file, attempt and config, when, and its metrics."""

    id: str
    file_id: int
    study_id: str
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    config_sha256: str
    lock_hash: str | None = None  # the runtime's package set
    worker: str | None = None  # the lease owner that ran it
    pipeline: str | None = None  # the cost models' key (workflow type + steps + pinned version)

    # The charge's figures as the run's columns name them; None before costs were recorded.
    @property
    def cost(self) -> float | None:
        return self.charge.amount if self.charge else None

    @property
    def currency(self) -> str | None:
        return self.charge.currency if self.charge else None

    @property
    def price_table(self) -> str | None:
        return self.charge.table if self.charge else None

    @property
    def capacity(self) -> Capacity | None:
        return self.charge.capacity if self.charge else None

    @property
    def billed_seconds(self) -> float | None:
        return self.charge.billed_seconds if self.charge else None

    @property
    def vcpus(self) -> float | None:
        return self.charge.vcpus if self.charge else None

    @property
    def memory_gb(self) -> float | None:
        return self.charge.memory_gb if self.charge else None


@dataclass(frozen=True)
class RunnerRecord:
    """A live `process` or `watch` command, as its heartbeat row says."""

    id: str
    host: str
    pid: int
    kind: str
    executor: str
    capacity: int
    state: str
    running_jobs: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class FailureDetail:
    """Why a FAILED file's last run failed, beyond its one-line error."""

    step: str | None  # the pipeline step that raised (the reader counts as one); None: not a step
    traceback: str | None  # the formatted traceback; None when no exception was caught (lost worker)
    run_id: str | None  # the run it comes from; None when the file has no run


@dataclass(frozen=True)
class ReasonGroup:
    """Files of one state (WAITING, FAILED, EXCLUDED, or NOTE for notices) whose reasons differ
    only in per-file details (subject ids, names): how many, and a few of them with their own reason."""

    state: str
    reason: str  # with the per-file details left out, e.g. "no metadata row for subject '...'"
    files: int
    examples: list[tuple[str, str]] = field(default_factory=list)  # (relative path, its reason)


@dataclass(frozen=True)
class StudyStatus:
    """What `status` shows of one study: files per state, and why files wait, failed or carry notices."""

    study_id: str
    counts: dict[str, int]
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, error)
    # relative path -> step, traceback and run id of its last run, for every FAILED file
    failure_details: dict[str, FailureDetail] = field(default_factory=dict)
    # (relative path, notice) for every SUCCEEDED file whose current run has notices
    notices: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (relative path, which quality gates it fails)
    # Waiting, failed and excluded files and notices grouped by reason, counted in the database.
    groups: list[ReasonGroup] = field(default_factory=list)
    # False: `waiting`, `failed`, `excluded` and `notices` are left empty (the groups' examples stand for them).
    every_file: bool = True


# ---- what the cost side reads -------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One finished run as the cost models see it: its inputs, and what it used."""

    pipeline: str
    started_at: datetime  # naive UTC
    input_bytes: int
    output_bytes: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    recording_seconds: float | None = None
    sample_rate_hz: float | None = None
    device: str | None = None
    cost: float | None = None
    machine: str | None = None
    uncompressed_bytes: float | None = None
    # The machine it ran on (cores, memory, CPU model), where known: a cost feature.
    machine_cores: float | None = None
    machine_memory_bytes: float | None = None
    machine_cpu: str | None = None
    # What the pipeline is, for estimates borrowed across pipelines: imported histories may
    # say; for our own runs the study configs do (cost/identity.py).
    workflow_type: str | None = None
    steps: tuple[str, ...] = ()
    package: str | None = None


@dataclass(frozen=True)
class MachineRecord:
    """A machine runs were made on (ours: a worker's host; imported: the history's `machine`)."""

    name: str
    cores: float | None
    memory_bytes: float | None
    cpu: str | None
    runs: int


@dataclass(frozen=True)
class CostRow:
    """One run, with what it cost and what it processed."""

    study: str
    pipeline: str | None
    subject: str | None
    started_at: datetime
    succeeded: bool
    cost: float | None
    currency: str | None
    input_bytes: int
    recording_seconds: float | None
    runs: int = 1  # how many runs the row stands for (`Catalog.cost_summary` adds up alike runs)
    unpriced_runs: int | None = None  # of those, without a cost (None: one run, unpriced if cost is None)


@dataclass(frozen=True)
class CostModelRecord:
    """One trained cost model of a pipeline: its file, training window, held-out metrics and status."""

    id: int
    pipeline: str
    version: int
    status: str  # champion | retired | rejected
    path: str
    created_at: datetime
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    test_runs: int
    metrics: dict[str, Any]
    note: str | None


@dataclass(frozen=True)
class EstimateRecord:
    """An estimate as given, and once its run finished, what really happened (`actual`)."""

    id: int
    at: datetime
    pipeline: str
    model_id: int | None
    file_id: int | None
    inputs: dict[str, Any]
    predicted: dict[str, Any]
    run_id: str | None
    actual: dict[str, Any] | None


@dataclass(frozen=True)
class TokenRecord:
    """An API token as the catalog knows it: never the token itself, only its name, scope and prefix."""

    id: int
    name: str
    scope: str  # read | operate | admin
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    """One request that changed something: who (token name), what, on what, with which outcome."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any] | None


@dataclass(frozen=True)
class WorkRequestRecord:
    """Work asked for over HTTP and its progress: pending -> running -> done | failed."""

    id: int
    kind: str  # scan | process | retrain
    study_id: str | None
    requested_by: str
    requested_at: datetime
    state: str
    taken_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
