"""Use cases that do the work: validate configs, scan for studies and files, process them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from biomarkerflow.errors import Category, ConfigProblem, UsageError
from biomarkerflow.service.base import PlatformBase

if TYPE_CHECKING:
    from biomarkerflow.engine.executor import Executor
    from biomarkerflow.stages.discovery import ScanInfo
    from biomarkerflow.stages.processing import GateInfo, PlannedFile, ProcessInfo, Progress

__all__ = [
    "DEFAULT_WORKERS",
    "ScanReport",
    "ValidationReport",
    "WorkCases",
    "require_configs_location",
    "start_executor",
]

DEFAULT_WORKERS = os.cpu_count() or 1


def start_executor(spec: str = "local", workers: int = DEFAULT_WORKERS) -> Executor:
    """Where jobs run (`local`, `local-dask:N` or `dask://HOST:PORT`), its workers starting now.

    Light enough to call before the `Platform` is built: the workers import SKDH while
    this process opens the catalog and reads the configs. Close it when done.
    """
    from biomarkerflow.engine.executor import make_executor

    executor = make_executor(spec, workers)
    try:
        executor.prestart()
    except BaseException:
        executor.close()
        raise
    return executor


def require_configs_location(configs: str) -> None:
    """A --configs that does not exist is a mistake of the caller, said as such."""
    from biomarkerflow.storage import store

    if store.exists(configs):
        return
    where = str(Path(configs).absolute()) if store.is_local(configs) else configs
    raise UsageError(
        f"--configs {configs}: no such folder or file (looked for {where})",
        hint="Name the folder (or s3:// prefix) holding your study configs (*.yaml), e.g. --configs studies/.",
    )


@dataclass(frozen=True)
class ValidationReport:
    """Problems per config file; an empty list means the file is valid."""

    problems: dict[str, list[ConfigProblem]] = field(default_factory=dict)

    @property
    def problem_count(self) -> int:
        return sum(len(found) for found in self.problems.values())

    @property
    def bad_files(self) -> int:
        return sum(1 for found in self.problems.values() if found)

    @property
    def category(self) -> Category | None:
        return Category.INVALID_INPUT if self.problem_count else None

    def as_json(self) -> dict[str, object]:
        return {path: [str(problem) for problem in found] for path, found in self.problems.items()}


@dataclass(frozen=True)
class ScanReport:
    """What a scan found, and what kind of failure it was, if any (a bad config, an unreadable location)."""

    info: ScanInfo

    @property
    def category(self) -> Category | None:
        changes = {study.config_change for study in self.info.studies}
        if "invalid" in changes:
            return Category.INVALID_INPUT
        return Category.UNAVAILABLE if "error" in changes else None


class WorkCases(PlatformBase):
    def validate(self, paths: list[str]) -> ValidationReport:
        """Every problem of each config (files or folders), checked against the SKDH it pins."""
        from biomarkerflow.config.validate import validate_paths
        from biomarkerflow.stages.checking import RuntimeChecks

        with RuntimeChecks(self.runtimes) as checks:
            return ValidationReport(validate_paths(paths, checks))

    def executor(self, spec: str = "local", workers: int = DEFAULT_WORKERS) -> Executor:
        """Where jobs run: `local`, `local-dask:N` or `dask://HOST:PORT`; close it when done."""
        from biomarkerflow.engine.executor import make_executor

        return make_executor(spec, workers)

    def scan(self, configs: str, executor: Executor | None = None) -> ScanReport:
        """Find new or changed configs under `configs` and register their data files.

        Configs are checked in a worker of each study's runtime (with an executor, on its
        warm workers), so this process never imports SKDH.
        """
        from biomarkerflow.config.validate import validate_source
        from biomarkerflow.stages.checking import RuntimeChecks
        from biomarkerflow.stages.discovery import scan

        require_configs_location(configs)
        with RuntimeChecks(self.runtimes, executor) as checks:
            try:
                return ScanReport(scan(self.catalog, configs, lambda url, text: validate_source(url, text, checks)))
            finally:
                self.recent.forget()  # readers of this Platform see the new files at once

    def require_configs_location(self, configs: str) -> None:
        """A --configs that does not exist is a mistake of the caller, said as such."""
        require_configs_location(configs)

    def plan(self, studies: list[str] | None = None) -> list[PlannedFile]:
        """What `process` would run or leave waiting now, and why; changes nothing."""
        from biomarkerflow.stages.processing import plan

        self.require_studies(studies)
        return plan(self.catalog, studies)

    def load_processing(self) -> None:
        """Import the processing stage now, e.g. while prestarted workers import SKDH."""
        import biomarkerflow.stages.processing  # noqa: F401

    def has_studies(self) -> bool:
        return bool(self.catalog.studies())

    def process(
        self,
        executor: Executor,
        studies: list[str] | None = None,
        *,
        progress: Progress | None = None,
        on_gates: Callable[[list[GateInfo]], None] | None = None,
        worker: str | None = None,
        stop: threading.Event | None = None,
        profile: bool = False,
    ) -> ProcessInfo:
        """Check requirements and run every READY file on `executor` until none is left.

        Runs are charged under the price table of the home's settings. `stop` ends it
        after the running jobs (for `watch`); `worker` is the caller's worker row, if any.
        `profile` profiles every job (profile.html in each run folder); else each study's
        `profile.every` picks the runs to profile.
        """
        from biomarkerflow.stages.processing import process

        self.require_studies(studies)
        try:
            return process(
                self.catalog,
                executor,
                study_ids=studies,
                progress=progress,
                on_gates=on_gates,
                runtimes=self.runtimes,
                worker=worker,
                stop=stop,
                prices=self.settings.prices,
                lease_seconds=self.settings.processing.lease_seconds,
                profile=profile,
            )
        finally:
            self.recent.forget()  # readers of this Platform see the new states and costs at once
