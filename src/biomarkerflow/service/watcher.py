"""The long-running service: rescan, process, retrain when due, wait, repeat, until stopped.

A `Watcher` runs in the calling thread (`run`) or in a thread of its own (`start`), and
stops cleanly on `stop()`: running jobs finish, nothing new starts. It registers a worker
row in the catalog and heartbeats it, so `status` shows it while it runs. Between rounds
it does the work asked for over HTTP (scan, process, retrain requests in the catalog),
each request taken by one watcher only.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from biomarkerflow.engine.leases import HEARTBEAT_SECONDS
from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.service.work import DEFAULT_WORKERS

LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from biomarkerflow.catalog.records import WorkRequestRecord
    from biomarkerflow.cost.registry import TrainingResult
    from biomarkerflow.service.platform import Platform
    from biomarkerflow.service.work import ScanReport
    from biomarkerflow.stages.processing import GateInfo, Progress

__all__ = ["WatchReporter", "Watcher"]

# How often an idle watcher looks for work asked for over HTTP: a button press in the
# dashboard should start within about a second.
REQUEST_POLL_SECONDS = 1.0


class WatchReporter(Protocol):
    """What a watcher tells its front door (a log, a terminal, a test)."""

    progress: Progress

    def scanned(self, report: ScanReport) -> None: ...

    def gated(self, gates: list[GateInfo]) -> None: ...

    def retrained(self, results: list[TrainingResult]) -> None: ...


class SilentReporter:
    def __init__(self) -> None:
        from biomarkerflow.stages.processing import SilentProgress

        self.progress: Any = SilentProgress()

    def scanned(self, report: ScanReport) -> None:
        pass

    def gated(self, gates: list[GateInfo]) -> None:
        pass

    def retrained(self, results: list[TrainingResult]) -> None:
        pass


class Watcher:
    """Watch a configs location: `Watcher(platform, "s3://bucket/studies").run()`."""

    def __init__(
        self,
        platform: Platform,
        configs: str,
        *,
        interval: float = 60.0,
        executor_spec: str = "local",
        workers: int = DEFAULT_WORKERS,
        once: bool = False,
        reporter: WatchReporter | None = None,
    ) -> None:
        from biomarkerflow.stages.processing import worker_name

        self.platform = platform
        self.configs = configs
        self.interval = interval
        self.executor_spec = executor_spec
        self.workers = workers
        self.once = once
        self.reporter: WatchReporter = reporter or SilentReporter()
        self.worker_id = worker_name()
        self.rounds = 0
        self._last_gc: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: Any = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Finish the running jobs, start nothing new, then return from `run`."""
        self._stop.set()

    def start(self) -> threading.Thread:
        """Run in a thread of its own (for an API process or a test); `stop()` then `join()`."""
        self._thread = threading.Thread(target=self.run, name=f"watch {self.configs}", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Rounds of scan, process and retrain, until stopped (or after one round with `once`)."""
        catalog = self.platform.catalog
        executor = self.platform.executor(self.executor_spec, self.workers)
        catalog.register_runner(self.worker_id, kind="watch", executor=self.executor_spec, capacity=executor.capacity)
        self._executor = executor
        try:
            executor.prestart()
            while not self._stop.is_set():
                self._round(executor)
                if self.once:
                    break
                self._idle()
        finally:
            executor.close()
            catalog.unregister_runner(self.worker_id)

    def _round(self, executor: Any) -> None:
        self.reporter.scanned(self.platform.scan(self.configs, executor))
        if self._stop.is_set():
            return
        self.platform.process(
            executor,
            worker=self.worker_id,
            stop=self._stop,
            progress=self.reporter.progress,
            on_gates=self.reporter.gated,
        )
        self.platform.catalog.beat(self.worker_id, 0)
        self.reporter.retrained(self.platform.retrain_if_due())
        self._gc_if_due()
        self.rounds += 1

    def _gc_if_due(self) -> None:
        """`gc` every processing.gc_every_hours (from the service's start: its first round too)."""
        every = self.platform.settings.processing.gc_every_hours
        if every is None or (self._last_gc is not None and time.monotonic() - self._last_gc < every * 3600):
            return
        self._last_gc = time.monotonic()
        try:
            report = self.platform.gc()
        except (BiomarkerflowError, OSError) as exc:  # cleanup never stops the service: next time
            LOG.warning("gc failed: %s", exc)
            return
        if report.leftovers or report.problems:
            LOG.info("gc removed %d leftover(s); not cleaned: %s", len(report.leftovers), report.problems or "-")

    def _idle(self) -> None:
        """Wait for the next round; do the work asked for over HTTP meanwhile; heartbeat."""
        deadline = time.monotonic() + self.interval
        last_beat = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(min(REQUEST_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            if self._stop.is_set():
                return
            self.serve_requests()
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                self.platform.catalog.beat(self.worker_id, 0)
                last_beat = time.monotonic()

    def serve_requests(self, executor: Any | None = None) -> int:
        """Do every pending work request, oldest first; how many were done."""
        done = 0
        while not self._stop.is_set():
            request = self.platform.catalog.take_work_request(self.worker_id)
            if request is None:
                return done
            try:
                result = self._perform(request, executor or self._executor)
            except BiomarkerflowError as exc:
                self.platform.catalog.finish_work_request(request.id, error=exc.message)
            except Exception as exc:  # noqa: BLE001 - a failed request must not stop the service
                self.platform.catalog.finish_work_request(request.id, error=f"{type(exc).__name__}: {exc}")
            else:
                self.platform.catalog.finish_work_request(request.id, result=result)
            done += 1
        return done

    def _perform(self, request: WorkRequestRecord, executor: Any) -> dict[str, Any]:
        studies = [request.study_id] if request.study_id else None
        if request.kind == "scan":
            report = self.platform.scan(self.configs, executor)
            self.reporter.scanned(report)
            return {
                "studies": [
                    {"study": s.study_id, "source": s.source, "change": s.config_change, "new_files": s.files.new}
                    for s in report.info.studies
                ]
            }
        if request.kind == "process":
            info = self.platform.process(
                executor, studies, worker=self.worker_id, stop=self._stop, progress=self.reporter.progress
            )
            return {"succeeded": info.succeeded, "excluded": info.excluded, "failed": info.failed}
        results = self.platform.train_models()
        self.reporter.retrained(results)
        return {"models": [{"pipeline": r.pipeline, "decision": r.decision, "message": r.message} for r in results]}
