"""Commands that do the work: validate, scan, process, run, watch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from biomarkerflow.cli.app import (
    ExecutorOption,
    StudyOption,
    WorkersOption,
    app,
    console,
    exit_with,
    handled,
    platform,
    say,
    tell,
)
from biomarkerflow.errors import Category
from biomarkerflow.service.work import DEFAULT_WORKERS, require_configs_location, start_executor
from biomarkerflow.terminal import styled
from biomarkerflow.terminal.work import LineProgress, print_gates, print_scan, process_with_bar

if TYPE_CHECKING:
    from biomarkerflow.cost.registry import TrainingResult
    from biomarkerflow.engine.executor import Executor
    from biomarkerflow.service.work import ScanReport
    from biomarkerflow.stages.processing import GateInfo, ProcessInfo


@app.command()
@handled
def validate(
    configs: Annotated[
        list[str], typer.Argument(metavar="CONFIG", help="Study config files (YAML), or folders of them.")
    ],
) -> None:
    """Check study configs; one line per problem as file:line:column: field: message.

    Steps and parameters are checked against the SKDH version each study pins, in that
    version's runtime (built on first use); the data location, the files' formats, the
    subject pattern and the metadata columns are checked too.

    \b
    Example: biomarkerflow validate studies/demo-wrist.yaml
    """
    report = platform().validate(configs)
    for path, problems in report.problems.items():
        if not problems:
            say(f"ok  {path}")
        for problem in problems:
            say(str(problem))
    if report.problem_count:
        tell(f"{report.problem_count} problem(s) in {report.bad_files} of {len(report.problems)} config(s)")
    exit_with(report.category)


def scan_and_print(configs: str, executor: Executor | None = None) -> ScanReport:
    with console.status("Scanning configs and data locations..."):
        report = platform().scan(configs, executor)
    print_scan(console, report, configs)
    return report


ProfileOption = Annotated[
    bool,
    typer.Option(
        "--profile",
        help="Profile every job: where its time goes, as profile.html in its run folder (see `status`).",
    ),
]


def _processed(info: ProcessInfo | None) -> Category | None:
    return Category.FAILED if info is not None and info.failed else None


@app.command()
@handled
def scan(
    configs: Annotated[
        str, typer.Option(metavar="DIR_OR_URL", help="Folder or URL of study configs, or one config file.")
    ],
) -> None:
    """Find new or changed study configs and register their data files (stage 1).

    \b
    Example: biomarkerflow scan --configs studies/
    """
    exit_with(scan_and_print(configs).category)


@app.command()
@handled
def process(
    study: StudyOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would run and why.")] = False,
    executor_spec: ExecutorOption = "local",
    profile: ProfileOption = False,
) -> None:
    """Check requirements and run every READY file until none is left (stage 2).

    With --profile, each job records where its time goes (profile.html beside its tables).

    \b
    Example: biomarkerflow process --study demo-wrist --workers 2
    """
    if dry_run:
        planned = platform().plan(study)
        for item in planned:
            action = styled("would run  ", "green") if item.will_run else styled("would wait  ", "yellow")
            say(action, f"{item.study_id}/{item.relative_path}: {item.why}")
        say(f"{sum(p.will_run for p in planned)} file(s) would run, {sum(not p.will_run for p in planned)} wait")
        return
    platform().require_studies(study)
    executor = start_executor(executor_spec, workers)
    try:
        info = process_with_bar(console, platform(), executor, study, profile=profile)
    finally:
        executor.close()
    exit_with(_processed(info))


@app.command()
@handled
def run(
    configs: Annotated[str, typer.Option(metavar="DIR_OR_URL", help="Folder or URL of study configs.")],
    study: StudyOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    executor_spec: ExecutorOption = "local",
    profile: ProfileOption = False,
) -> None:
    """Scan, then process: the one everyday command.

    \b
    Example: biomarkerflow run --configs studies/
    """
    require_configs_location(configs)
    # Workers start first: they import SKDH while this process opens the catalog, loads
    # the processing stage and lists the configs.
    executor = start_executor(executor_spec, workers)
    try:
        platform().load_processing()
        scanned = scan_and_print(configs, executor)
        platform().require_studies(study)
        info = process_with_bar(console, platform(), executor, study, profile=profile)
    finally:
        executor.close()
    exit_with(_processed(info) or scanned.category)


class _WatchOutput:
    """What `watch` prints: one line per event, for a log."""

    def __init__(self, configs: str) -> None:
        self.configs = configs
        self.progress: Any = LineProgress(console)

    def scanned(self, report: ScanReport) -> None:
        print_scan(console, report, self.configs)

    def gated(self, gates: list[GateInfo]) -> None:
        print_gates(console, gates)

    def retrained(self, results: list[TrainingResult]) -> None:
        for result in results:
            if result.decision != "refused":
                say(f"models: {result.decision} {result.message}")


@app.command()
@handled
def watch(
    configs: Annotated[str, typer.Option(metavar="DIR_OR_URL", help="Folder or URL of study configs.")],
    interval: Annotated[
        float, typer.Option(metavar="SECONDS", min=1, help="Seconds between rescans when idle.")
    ] = 60.0,
    workers: WorkersOption = DEFAULT_WORKERS,
    executor_spec: ExecutorOption = "local",
    once: Annotated[bool, typer.Option("--once", help="One scan and process round, then exit (for cron).")] = False,
) -> None:
    """The long-running service: rescan, process, repeat, until stopped.

    SIGTERM or Ctrl-C stop it cleanly: running jobs finish, nothing new starts, and it
    exits; a second signal stops at once (running files go back to READY). `status`
    shows it as a live worker while it runs.

    \b
    Example: biomarkerflow watch --configs s3://trial-bucket/studies --interval 300
    """
    import signal

    from biomarkerflow.service.watcher import Watcher

    platform().require_configs_location(configs)
    watcher = Watcher(
        platform(),
        configs,
        interval=interval,
        executor_spec=executor_spec,
        workers=workers,
        once=once,
        reporter=_WatchOutput(configs),
    )

    def on_signal(signum: int, _frame: Any) -> None:
        if watcher.stopping:
            raise KeyboardInterrupt
        watcher.stop()
        tell(f"{signal.Signals(signum).name}: stopping after the running jobs (signal again to stop now)")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say(f"watching {configs} as {watcher.worker_id} (every {interval:g} s when idle)")
    watcher.run()
    say("stopped cleanly")
