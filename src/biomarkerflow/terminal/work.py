"""How scanning and processing look in a terminal: shared by the CLI and the demo.

Everything here renders what the service returns or reports; it decides nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from biomarkerflow.terminal import line, styled

if TYPE_CHECKING:
    from biomarkerflow.catalog.manager import FileRecord
    from biomarkerflow.engine.executor import Executor
    from biomarkerflow.runtimes.entrypoint import JobOutcome
    from biomarkerflow.service.platform import Platform
    from biomarkerflow.service.work import ScanReport
    from biomarkerflow.stages.processing import GateInfo, ProcessInfo

__all__ = [
    "BarProgress",
    "LineProgress",
    "print_gates",
    "print_outcome",
    "print_scan",
    "process_with_bar",
    "state_label",
]


def state_label(file_state: str) -> Text:
    """A file state, coloured and padded to line up: "SUCCEEDED ", "FAILED    "."""
    colour = {"SUCCEEDED": "green", "EXCLUDED": "magenta", "FAILED": "red"}.get(file_state, "yellow")
    return styled(f"{file_state:9} ", colour)


def print_scan(out: Console, report: ScanReport, configs: str) -> None:
    """One line per study config: new, changed, unchanged, invalid (with each problem) or error."""
    if not report.info.studies:
        line(out, f"no study configs (*.yaml, *.yml) found in {configs}")
    for study in report.info.studies:
        name = study.study_id or study.source
        if study.config_change == "invalid":
            line(out, styled("invalid ", "red"), study.source)
            for problem in study.problems:
                line(out, str(problem), indent=2)
            continue
        if study.config_change == "error":
            line(out, styled("error   ", "red"), f"{name}: {study.error}")
            if study.hint:
                line(out, f"hint: {study.hint}", indent=2)
            continue
        files = study.files
        line(
            out,
            f"{study.config_change:9} {name}: {study.matched_files} files "
            f"({files.new} new, {files.changed} changed, {files.unchanged} unchanged)",
        )
        if files.removed or files.restored or files.moved:
            message = (
                f"{files.removed} file(s) gone from the data location (REMOVED: out of the study's tables, their "
                f"runs kept), {files.restored} back unchanged, {files.moved} moved (same content: not recomputed)"
            )
            line(out, message, indent=2)
        if study.stale:
            message = (
                f"{study.stale} finished file(s) marked STALE (pipeline changed): the next process recomputes "
                "them; earlier results stay under their run ids"
            )
            line(out, message, indent=2)
        if study.regated.changed:
            message = (
                f"quality gates changed: {study.regated.excluded} file(s) EXCLUDED, {study.regated.included} "
                "included again, decided from their quality reports (nothing recomputed); the next process "
                "updates the study's tables"
            )
            line(out, message, indent=2)
        if study.hint:
            line(out, styled("note: ", "yellow"), study.hint, indent=2)


def print_gates(out: Console, gates: list[GateInfo]) -> None:
    for gate in gates:
        for problem in gate.problems:
            line(out, styled("note: ", "yellow"), f"{gate.study_id}: {problem}")
        if gate.metadata_subjects_changed:
            line(out, f"{gate.study_id}: metadata updated for {len(gate.metadata_subjects_changed)} subject(s)")


def print_outcome(out: Console, file: FileRecord, outcome: JobOutcome, new_state: str, wall: str) -> None:
    """One finished file: its new state, then the error or the notes SKDH left on its results."""
    line(out, state_label(new_state), f"{file.study_id}/{file.relative_path} {wall}")
    if outcome.error:
        line(out, outcome.error, indent=10)
    for notice in outcome.notices:
        line(out, styled("note: ", "yellow"), notice, indent=10)


def _wall(outcome: JobOutcome) -> str:
    return f"{outcome.wall_seconds:.1f} s" if outcome.wall_seconds is not None else ""


class BarProgress:
    """A progress bar with the running files, and a line per finished file above it."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("processing", total=0)
        self._running: dict[int, str] = {}

    def _describe(self) -> None:
        running = ", ".join(list(self._running.values())[:3])
        self._progress.update(self._task, description=f"running {running}" if running else "processing")

    def planned(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def started(self, file: FileRecord) -> None:
        self._running[file.id] = file.relative_path
        task = self._progress.tasks[0]
        if task.total is not None and task.completed + len(self._running) > task.total:
            self._progress.update(self._task, total=task.completed + len(self._running))
        self._describe()

    def finished(self, file: FileRecord, outcome: JobOutcome, new_state: str) -> None:
        self._running.pop(file.id, None)
        self._progress.advance(self._task)
        print_outcome(self._progress.console, file, outcome, new_state, _wall(outcome))
        self._describe()

    def waiting_for_retry(self, seconds: float) -> None:
        self._progress.update(self._task, description=f"waiting {seconds:.0f} s to retry")


class LineProgress:
    """One line per finished file: for a long-running service whose output goes to a log."""

    def __init__(self, out: Console) -> None:
        self._out = out

    def planned(self, total: int) -> None:
        if total:
            line(self._out, f"{total} file(s) ready")

    def started(self, file: FileRecord) -> None:
        pass

    def finished(self, file: FileRecord, outcome: JobOutcome, new_state: str) -> None:
        print_outcome(self._out, file, outcome, new_state, _wall(outcome))

    def waiting_for_retry(self, seconds: float) -> None:
        pass


def process_with_bar(
    out: Console, platform: Platform, executor: Executor, studies: list[str] | None = None, *, profile: bool = False
) -> ProcessInfo | None:
    """`platform.process` with a progress bar and a closing summary; None when there is no study."""
    if not platform.has_studies():
        line(
            out,
            f"nothing to process: the catalog at {platform.catalog_name()} has no studies yet; register them "
            "first with `biomarkerflow scan --configs DIR` (or scan and process in one go with "
            "`biomarkerflow run --configs DIR`)",
        )
        return None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # The bar refreshes 4 times a second: it shares the cores with the workers.
    with Progress(*columns, console=out, transient=False, refresh_per_second=4) as bar:
        info = platform.process(
            executor,
            studies,
            progress=BarProgress(bar),
            on_gates=lambda gates: print_gates(out, gates),
            profile=profile,
        )
    for gate in info.gates:
        if gate.waiting:
            line(out, f"{gate.study_id}: {gate.waiting} file(s) WAITING (see `biomarkerflow status`)")
    excluded = f", {info.excluded} excluded by quality gates" if info.excluded else ""
    line(out, f"done: {info.succeeded} succeeded{excluded}, {info.failed} failed")
    return info
