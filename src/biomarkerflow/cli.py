"""The `biomarkerflow` command line. Run `biomarkerflow --help` for the commands.

Exit codes (also in the README):
  0  everything asked for succeeded
  1  at least one file FAILED in this invocation (process, run, demo)
  2  a study config, SQL query or the command line is invalid (validate, scan, query)
  3  a data, metadata or output location cannot be read or written, or the Dask scheduler is unreachable
  4  the catalog cannot be opened, or the study asked for is not in it
  5  unexpected internal error (a bug: run with --debug and report it)
  130 interrupted (Ctrl-C); files being processed go back to READY, nothing is lost
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import click
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.terminal import Column, line, make_console, print_table, styled
from biomarkerflow.units import format_bytes

if TYPE_CHECKING:  # heavy imports (SQLAlchemy, pandas, pyarrow) wait until a command needs them
    from rich.console import Console

    from biomarkerflow.catalog.manager import Catalog, FileRecord
    from biomarkerflow.engine.executor import Executor
    from biomarkerflow.home import HomeLocation
    from biomarkerflow.runtimes.entrypoint import JobOutcome
    from biomarkerflow.runtimes.environment import Runtimes
    from biomarkerflow.settings import Settings

app = typer.Typer(
    help="Turn raw wearable-sensor files into digital biomarkers, study by study.\n\n"
    "Everyday use:  biomarkerflow run --configs studies/",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = make_console()
errors = make_console(stderr=True)


def say(*parts: str | Text, indent: int = 0) -> None:
    """Print to stdout; plain strings are literal (file names, regexes, SQL are never markup)."""
    line(console, *parts, indent=indent)


def tell(*parts: str | Text, indent: int = 0) -> None:
    """Print to stderr, literally."""
    line(errors, *parts, indent=indent)


def state_label(file_state: str) -> Text:
    """A file state, coloured and padded to line up: "SUCCEEDED ", "FAILED    "."""
    colour = {"SUCCEEDED": "green", "FAILED": "red"}.get(file_state, "yellow")
    return styled(f"{file_state:9} ", colour)


def report_error(message: str, hint: str | None, label: str = "error: ") -> None:
    tell(styled(label, "bold red"), message)
    if hint:
        tell(styled("hint: ", "yellow"), hint)


class _State:
    """The global options, and the home they lead to (found on first use, inside error handling)."""

    home_option: Path | None = None
    catalog_url: str | None = None
    debug: bool = False
    _home: HomeLocation | None = None

    @property
    def location(self) -> HomeLocation:
        if self._home is None:
            from biomarkerflow.home import find_home

            self._home = find_home(self.home_option, os.environ, Path.cwd())
        return self._home

    @property
    def home(self) -> Path:
        return self.location.path


state = _State()
DEFAULT_WORKERS = os.cpu_count() or 1
F = TypeVar("F", bound=Callable[..., Any])


def handled(command: F) -> F:
    """The one place that turns errors into a message, a hint and the README's exit code.

    With --debug the traceback is printed too, and the exit code stays the same.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BiomarkerflowError as exc:
            _print_traceback()
            report_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            tell("interrupted: files being processed went back to READY and will run next time")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.BadParameter, click.exceptions.ClickException):
            raise
        except Exception as exc:
            _print_traceback()
            report_error(
                f"{type(exc).__name__}: {exc}",
                "this is a bug: run again with --debug for the traceback, and report it.",
                label="unexpected error: ",
            )
            raise typer.Exit(5) from None

    return wrapper  # type: ignore[return-value]


def _print_traceback() -> None:
    if state.debug:
        import traceback

        errors.print(Text(traceback.format_exc()), soft_wrap=True)


def _plain_argument_help() -> None:
    """Arguments in --help as a scientist reads them: `SQL`, `CONFIG...`.

    Typer 0.29 prints them as `{sql}` in the usage line and adds their Python type
    (`<list[str]>`); options already show their metavar.
    """
    from typer.core import TyperArgument

    def usage_name(self: TyperArgument) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


_plain_argument_help()


def _show_version(value: bool) -> None:
    if not value:
        return
    import importlib.metadata

    import biomarkerflow

    try:
        skdh = f"scikit-digital-health {importlib.metadata.version('scikit-digital-health')} installed"
    except importlib.metadata.PackageNotFoundError:
        skdh = "scikit-digital-health not installed"
    print(f"biomarkerflow {biomarkerflow.__version__} (Python {sys.version.split()[0]}); {skdh}")
    print("Studies run the SKDH version they pin; `biomarkerflow runtimes list` shows the others built.")
    raise typer.Exit(0)


@app.callback()
def main_options(
    home: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder holding the catalog. Default: $BIOMARKERFLOW_HOME, else the nearest .biomarkerflow "
            "in this folder or above it (as git finds .git), else ./.biomarkerflow (created).",
            show_default=False,
        ),
    ] = None,
    catalog: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            envvar="BIOMARKERFLOW_CATALOG",
            help="Catalog database URL, e.g. postgresql://user@host:5432/biomarkerflow (default: SQLite in the home).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks (exit codes stay the same).")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the versions and exit."),
    ] = False,
) -> None:
    state.home_option = home
    state.catalog_url = catalog
    state.debug = debug


def catalog_name() -> str:
    """Where the catalog is, for messages: a database URL without its password, or the home
    and how it was found (a home found in a parent folder surprises less when it is named)."""
    if not state.catalog_url:
        return state.location.describe()
    from sqlalchemy import make_url

    return make_url(state.catalog_url).render_as_string(hide_password=True)


def open_catalog() -> Catalog:
    from biomarkerflow.catalog.manager import Catalog

    return Catalog(state.catalog_url) if state.catalog_url else Catalog.for_home(state.home)


def open_runtimes() -> Runtimes:
    """The runtime cache under the home (or BIOMARKERFLOW_RUNTIMES), announcing builds."""
    from biomarkerflow.runtimes.environment import Runtimes

    return Runtimes.for_home(state.home, progress=lambda message: tell(message))


def open_settings() -> Settings:
    """The home's settings.yaml (written with its defaults the first time)."""
    from biomarkerflow.settings import load_settings

    return load_settings(state.home)


def require_studies(catalog: Catalog, studies: list[str] | None) -> None:
    """An unknown --study is an error (exit 4), never a silent no-op."""
    from biomarkerflow.errors import NotFoundError

    known = {s.id for s in catalog.studies()}
    unknown = [s for s in studies or [] if s not in known]
    if unknown:
        raise NotFoundError(
            f"no study {', '.join(repr(s) for s in unknown)} in the catalog at {catalog_name()}",
            hint=f"Known studies: {', '.join(sorted(known)) or 'none (run `biomarkerflow scan --configs DIR`)'}.",
        )


# ---- validate ------------------------------------------------------------------------------


@app.command()
@handled
def validate(
    configs: Annotated[
        list[str], typer.Argument(metavar="CONFIG", help="Study config files (YAML), or folders of them.")
    ],
) -> None:
    """Check study configs; one line per problem as file:line:column: field: message.

    Steps and parameters are checked against the SKDH version each study pins, in that
    version's runtime (built on first use).

    \b
    Example: biomarkerflow validate studies/demo-wrist.yaml
    """
    from biomarkerflow.config.validate import validate_paths
    from biomarkerflow.workflows.checking import RuntimeChecks

    with RuntimeChecks(open_runtimes()) as checks:
        results = validate_paths(configs, checks)
    bad = 0
    for path, problems in results.items():
        if not problems:
            say(f"ok  {path}")
        for problem in problems:
            bad += 1
            say(str(problem))
    if bad:
        tell(f"{bad} problem(s) in {sum(1 for p in results.values() if p)} of {len(results)} config(s)")
        raise typer.Exit(2)


# ---- scan / process / run -----------------------------------------------------------------


def _print_scan(info: Any) -> None:
    for study in info.studies:
        name = study.study_id or study.source
        if study.config_change == "invalid":
            say(styled("invalid ", "red"), study.source)
            for problem in study.problems:
                say(f"  {problem}")
            continue
        if study.config_change == "error":
            say(styled("error   ", "red"), f"{name}: {study.error}")
            if study.hint:
                say(f"  hint: {study.hint}")
            continue
        files = study.files
        say(
            f"{study.config_change:9} {name}: {study.matched_files} files "
            f"({files.new} new, {files.changed} changed, {files.unchanged} unchanged)",
        )
        if study.stale:
            say(
                f"  {study.stale} finished file(s) marked STALE (pipeline changed): the next process recomputes them;"
                " earlier results stay under their run ids",
            )
        if study.hint:
            say(styled("note: ", "yellow"), study.hint, indent=2)


def require_configs_location(configs: str) -> None:
    """A --configs that does not exist is a mistake on the command line (exit 2), said as such."""
    from biomarkerflow.errors import UsageError
    from biomarkerflow.storage import store

    if store.exists(configs):
        return
    where = configs if store.is_local(configs) is False else str(Path(configs).absolute())
    raise UsageError(
        f"--configs {configs}: no such folder or file (looked for {where})",
        hint="Name the folder (or s3:// prefix) holding your study configs (*.yaml), e.g. --configs studies/.",
    )


def do_scan(catalog: Catalog, configs: str, runtimes: Runtimes, executor: Executor | None = None) -> int:
    """Scan with a spinner; returns the exit code (2 invalid config, 3 unreadable location).

    Configs are checked in a worker of each study's runtime (with an executor, on its
    warm workers), so this process never imports SKDH.
    """
    from biomarkerflow.config.validate import validate_source
    from biomarkerflow.workflows.checking import RuntimeChecks
    from biomarkerflow.workflows.discovery import scan

    require_configs_location(configs)
    with RuntimeChecks(runtimes, executor) as checks, console.status("Scanning configs and data locations..."):
        info = scan(catalog, configs, lambda url, text: validate_source(url, text, checks))
    if not info.studies:
        say(f"no study configs (*.yaml, *.yml) found in {configs}")
    _print_scan(info)
    changes = {s.config_change for s in info.studies}
    return 2 if "invalid" in changes else 3 if "error" in changes else 0


def print_outcome(out: Console, file: FileRecord, outcome: JobOutcome, new_state: str, wall: str) -> None:
    """One finished file: its new state, then the error or the notes SKDH left on its results."""
    line(out, state_label(new_state), f"{file.study_id}/{file.relative_path} {wall}")
    if outcome.error:
        line(out, outcome.error, indent=10)
    for notice in outcome.notices:
        line(out, styled("note: ", "yellow"), notice, indent=10)


class _RichProgress:
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
        wall = f"{outcome.wall_seconds:.1f} s" if outcome.wall_seconds is not None else ""
        print_outcome(self._progress.console, file, outcome, new_state, wall)
        self._describe()

    def waiting_for_retry(self, seconds: float) -> None:
        self._progress.update(self._task, description=f"waiting {seconds:.0f} s to retry")


def _print_gates(gates: list[Any]) -> None:
    for gate in gates:
        for problem in gate.problems:
            say(styled("note: ", "yellow"), f"{gate.study_id}: {problem}")
        if gate.metadata_subjects_changed:
            say(
                f"{gate.study_id}: metadata updated for {len(gate.metadata_subjects_changed)} subject(s)",
            )


def do_process(
    catalog: Catalog,
    studies: list[str] | None,
    workers: int,
    runtimes: Runtimes,
    executor: Executor | None = None,
    *,
    keep_executor: bool = False,
    executor_spec: str = "local",
    settings: Settings | None = None,
) -> int:
    """Process with a progress bar; returns the exit code (1 if any file FAILED).

    Runs are charged under `settings` (default: the home's settings file).
    """
    from biomarkerflow.engine.executor import make_executor
    from biomarkerflow.workflows.processing import process

    if not catalog.studies():
        say(
            f"nothing to process: the catalog at {catalog_name()} has no studies yet; "
            "register them first with `biomarkerflow scan --configs DIR` (or scan and process in one go with "
            "`biomarkerflow run --configs DIR`)"
        )
        return 0
    if executor is None:
        executor = make_executor(executor_spec, workers)
        executor.prestart()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            refresh_per_second=4,  # the bar shares the cores with the workers
        ) as bar:
            info = process(
                catalog,
                executor,
                study_ids=studies,
                progress=_RichProgress(bar),
                on_gates=_print_gates,
                runtimes=runtimes,
                prices=(settings or open_settings()).prices,
            )
    finally:
        if not keep_executor:
            executor.close()
    for gate in info.gates:
        if gate.waiting:
            say(f"{gate.study_id}: {gate.waiting} file(s) WAITING (see `biomarkerflow status`)")
    say(f"done: {info.succeeded} succeeded, {info.failed} failed")

    return 1 if info.failed else 0


StudyOption = Annotated[
    list[str] | None, typer.Option("--study", metavar="STUDY", help="Only this study (repeatable).")
]
ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        metavar="EXECUTOR",
        envvar="BIOMARKERFLOW_EXECUTOR",
        help="Where jobs run: local (worker processes here), local-dask:N, or dask://HOST:PORT.",
    ),
]
WorkersOption = Annotated[int, typer.Option(metavar="N", min=1, help="Worker processes running files in parallel.")]


@app.command()
@handled
def scan(
    configs: Annotated[
        str, typer.Option(metavar="DIR_OR_URL", help="Folder or URL of study configs, or one config file.")
    ],
) -> None:
    """Find new or changed study configs and register their data files (workflow 1).

    \b
    Example: biomarkerflow scan --configs studies/
    """
    raise typer.Exit(do_scan(open_catalog(), configs, open_runtimes()))


@app.command()
@handled
def process(
    study: StudyOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would run and why.")] = False,
    executor_spec: ExecutorOption = "local",
) -> None:
    """Check requirements and run every READY file until none is left (workflow 2).

    \b
    Example: biomarkerflow process --study demo-wrist --workers 2
    """
    catalog = open_catalog()
    require_studies(catalog, study)
    if dry_run:
        from biomarkerflow.workflows.processing import plan

        planned = plan(catalog, study)
        for item in planned:
            action = styled("would run  ", "green") if item.will_run else styled("would wait  ", "yellow")
            say(action, f"{item.study_id}/{item.relative_path}: {item.why}")
        say(f"{sum(p.will_run for p in planned)} file(s) would run, {sum(not p.will_run for p in planned)} wait")
        raise typer.Exit(0)
    raise typer.Exit(do_process(catalog, study, workers, open_runtimes(), executor_spec=executor_spec))


@app.command()
@handled
def run(
    configs: Annotated[str, typer.Option(metavar="DIR_OR_URL", help="Folder or URL of study configs.")],
    study: StudyOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    executor_spec: ExecutorOption = "local",
) -> None:
    """Scan, then process: the one everyday command.

    \b
    Example: biomarkerflow run --configs studies/
    """
    from biomarkerflow.engine.executor import make_executor

    catalog = open_catalog()
    executor = make_executor(executor_spec, workers)
    executor.prestart()  # workers import SKDH while the configs are listed
    runtimes = open_runtimes()
    scan_code = do_scan(catalog, configs, runtimes, executor)
    require_studies(catalog, study)
    code = do_process(catalog, study, workers, runtimes, executor)
    raise typer.Exit(code or scan_code)


class _LineProgress:
    """One line per finished file: for a long-running service whose output goes to a log."""

    def planned(self, total: int) -> None:
        if total:
            say(f"{total} file(s) ready")

    def started(self, file: FileRecord) -> None:
        pass

    def finished(self, file: FileRecord, outcome: JobOutcome, new_state: str) -> None:
        wall = f"{outcome.wall_seconds:.1f} s" if outcome.wall_seconds is not None else ""
        print_outcome(console, file, outcome, new_state, wall)

    def waiting_for_retry(self, seconds: float) -> None:
        pass


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
    import threading

    from biomarkerflow.engine.executor import make_executor
    from biomarkerflow.workflows.processing import HEARTBEAT_SECONDS, process, worker_name

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tell(
            f"{signal.Signals(signum).name}: stopping after the running jobs (signal again to stop now)",
        )

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    catalog = open_catalog()
    runtimes = open_runtimes()
    settings = open_settings()
    executor = make_executor(executor_spec, workers)
    me = worker_name()
    catalog.register_worker(me, kind="watch", executor=executor_spec, capacity=executor.capacity)
    say(f"watching {configs} as {me} (every {interval:g} s when idle)")
    try:
        executor.prestart()
        while not stop.is_set():
            do_scan(catalog, configs, runtimes, executor)
            if stop.is_set():
                break
            process(
                catalog,
                executor,
                runtimes=runtimes,
                worker=me,
                stop=stop,
                progress=_LineProgress(),
                on_gates=_print_gates,
                prices=settings.prices,
            )
            catalog.beat(me, 0)
            retrain_if_due(catalog, settings)
            if once:
                break
            deadline = time.monotonic() + interval
            while not stop.is_set() and time.monotonic() < deadline:
                stop.wait(min(HEARTBEAT_SECONDS, max(0.0, deadline - time.monotonic())))
                catalog.beat(me, 0)
    finally:
        executor.close()
        catalog.unregister_worker(me)
    say("stopped cleanly")


# ---- costs ----------------------------------------------------------------------------------------


def _money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "-"
    return f"{amount:,.4f} {currency}" if amount < 100 else f"{amount:,.2f} {currency}"


@app.command()
@handled
def costs(
    study: StudyOption = None,
    by: Annotated[str, typer.Option(metavar="GROUPING", help="Group by study, workflow, subject or month.")] = "study",
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")] = "table",
) -> None:
    """What processing actually cost: totals, per subject-day of recording and per GB of input.

    Every attempt counts in the cost (failed ones were paid for too); subject-days and GB
    count only runs that produced results. Prices: the table in force in the home's
    settings.yaml when each run finished.

    \b
    Example: biomarkerflow costs --by month --format csv > costs.csv
    """
    import csv

    from biomarkerflow.cost.reports import GROUPINGS, Grouping, group_costs

    if by not in GROUPINGS:
        raise typer.BadParameter(f"'{by}' is not one of: {', '.join(GROUPINGS)}", param_hint="--by")
    if output_format not in ("table", "csv", "json"):
        raise typer.BadParameter(f"'{output_format}' is not one of: table, csv, json", param_hint="--format")
    catalog = open_catalog()
    require_studies(catalog, study)
    groups, total = group_costs(catalog.cost_rows(study), cast(Grouping, by))
    records = [g.as_dict(by) for g in groups]
    if output_format == "json":
        print(json.dumps({"by": by, "groups": records, "total": total.as_dict(by)}, indent=2))
        return
    if output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(total.as_dict(by)))
        writer.writeheader()
        writer.writerows([*records, total.as_dict(by)])
        return
    if not groups:
        say("no finished runs yet: nothing has cost anything")
        return
    headers = ("runs", "failed", "subjects", "subject-days", "input GB", "cost", "per subject-day", "per GB")
    columns = [Column(by, key=True), *(Column(h, right=True) for h in headers)]
    rows = [
        (
            group.key,
            str(group.runs),
            str(group.failed_runs),
            str(len(group.subjects)),
            f"{group.subject_days:,.2f}",
            f"{group.input_gb:,.3f}",
            _money(group.cost, group.currency),
            _money(group.per_subject_day, group.currency),
            _money(group.per_gb, group.currency),
        )
        for group in [*groups, total]
    ]
    print_table(console, columns, rows, title=f"costs by {by}", more="--format csv or --format json")
    unpriced = total.unpriced_runs
    if unpriced:
        say(f"{unpriced} run(s) finished before costs were recorded and count as 0.")


# ---- estimates and cost models ------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_amount(text: str, units: dict[str, int], option: str, example: str) -> float:
    """`2GB` -> 2e9, `7d` -> 604800: a number and an optional unit."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in units:
        raise typer.BadParameter(f"'{text}' is not an amount like {example}", param_hint=option)
    return float(match.group(1)) * units[unit]


def _print_estimates(estimates: list[Any], heading: str) -> None:
    from biomarkerflow.cost.estimate import total

    refused = [e for e in estimates if e.prediction is None]
    for reason in sorted({e.refusal for e in refused if e.refusal}):
        say(styled("no estimate: ", "yellow"), reason)
    known = [e for e in estimates if e.prediction is not None]
    if not known:
        return
    flagged = any(e.prediction.extrapolating for e in known)
    headers = ("input", "cost (80% interval)", "duration", "peak memory")
    columns = [Column("run", key=True), *(Column(h, right=True) for h in headers)]
    columns += [Column("note")] if flagged else []
    rows = []
    for e in known:
        v = e.prediction.values
        rows.append(
            (
                e.file or e.workflow,
                _run_inputs(e.inputs),
                f"${v['cost'][1]:.4f} (${v['cost'][0]:.4f}-${v['cost'][2]:.4f})",
                _interval(v["wall_seconds"], _duration),
                f"{format_bytes(int(v['peak_rss_bytes'][1]))} (up to {format_bytes(int(v['peak_rss_bytes'][2]))})",
                *(("extrapolating" if e.prediction.extrapolating else "",) if flagged else ()),
            )
        )
    print_table(console, columns, rows, title=heading, more="--json")
    if len(estimates) > 1:
        t = total(estimates)
        cost, wall = t.values["cost"], t.values["wall_seconds"]
        say(
            f"total for {t.estimated} of {t.runs} file(s): ${cost[1]:.2f} "
            f"(80% interval ${cost[0]:.2f}-${cost[2]:.2f}), "
            f"{_duration(wall[1])} of compute ({_duration(wall[0])}-{_duration(wall[2])}), "
            f"peak memory of one job up to {format_bytes(int(t.values['peak_rss_bytes'][2]))}",
        )
    if flagged:
        say(
            "extrapolating: sizes, lengths, sample rates or devices outside the runs the model learned from; "
            "trust these less",
        )


def _run_inputs(inputs: Any) -> str:
    """ "52 MB, 7.0 d at 20 Hz": the size, and what the header said when it said it."""
    text = format_bytes(inputs.input_bytes)
    if inputs.recording_seconds:
        text += f", {inputs.recording_seconds / 86_400:.1f} d"
    if inputs.sample_rate_hz:
        text += f" at {inputs.sample_rate_hz:g} Hz"
    return text


def _interval(values: Sequence[float], show: Callable[[float], str]) -> str:
    """ "12 s (9 s-15 s)": the point, then the 80% interval."""
    low, point, high = values
    return f"{show(point)} ({show(low)}-{show(high)})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _estimates_json(estimates: list[Any]) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [
        {
            "file": e.file,
            "workflow": e.workflow,
            "inputs": asdict(e.inputs),
            "model_version": e.model_version,
            "refusal": e.refusal,
            "extrapolating": e.prediction.extrapolating if e.prediction else None,
            "estimate": None
            if e.prediction is None
            else {q: dict(zip(("low", "point", "high"), v, strict=True)) for q, v in e.prediction.values.items()},
        }
        for e in estimates
    ]


@app.command()
@handled
def estimate(
    study: Annotated[
        str | None, typer.Option(metavar="STUDY", help="Every file of this study not processed yet.")
    ] = None,
    workflow: Annotated[
        str | None, typer.Option(metavar="WORKFLOW", help="One run of this workflow (see `models list`).")
    ] = None,
    input_size: Annotated[str | None, typer.Option(metavar="SIZE", help="Input file size, e.g. 2GB or 350MB.")] = None,
    output_size: Annotated[str | None, typer.Option(metavar="SIZE", help="Expected output size, e.g. 50MB.")] = None,
    duration: Annotated[
        str | None, typer.Option(metavar="DURATION", help="Recording duration, e.g. 7d or 36h.")
    ] = None,
    sample_rate: Annotated[float | None, typer.Option(metavar="HZ", help="Sample rate in Hz, e.g. 50.")] = None,
    device: Annotated[str | None, typer.Option(metavar="TYPE", help="File type, e.g. bin or cwa.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Predicted cost, duration and peak memory before processing, with 80% intervals.

    \b
    Examples:
      biomarkerflow estimate --study trial-a
      biomarkerflow estimate --workflow skdh-0.17.18-5c1e0a9b --input-size 2GB --duration 7d
    """
    from biomarkerflow.cost import estimate as estimating
    from biomarkerflow.cost.model import RunInputs

    if (study is None) == (workflow is None):
        raise typer.BadParameter("give either --study or --workflow", param_hint="--study/--workflow")
    catalog = open_catalog()
    table = open_settings().prices.table()
    if study is not None:
        require_studies(catalog, [study])
        name, inputs, file_ids, files = catalog_study_inputs(catalog, study)
        if not inputs:
            done = len(catalog.files(study))
            say(
                f"{study}: all {done} file(s) are processed or running; nothing left to estimate. "
                f"To price one more run: biomarkerflow estimate --workflow {name} --input-size 300MB"
            )
            return
        results = estimating.estimate(catalog, name, inputs, table, file_ids=file_ids, files=files)
        heading = f"{study}: {len(inputs)} file(s) not processed yet, workflow {name}"
    else:
        if input_size is None:
            raise typer.BadParameter("--workflow needs --input-size, e.g. 2GB", param_hint="--input-size")
        single = RunInputs(
            input_bytes=int(parse_amount(input_size, _SIZE_UNITS, "--input-size", "2GB")),
            output_bytes=int(parse_amount(output_size, _SIZE_UNITS, "--output-size", "50MB")) if output_size else None,
            recording_seconds=parse_amount(duration, _TIME_UNITS, "--duration", "7d") if duration else None,
            sample_rate_hz=sample_rate,
            device=device.lower().lstrip(".") if device else None,
        )
        assert workflow is not None
        results = estimating.estimate(catalog, workflow, [single], table)
        heading = f"one run of {workflow}"
    if as_json:
        print(json.dumps({"estimates": _estimates_json(results)}, indent=2))
    else:
        _print_estimates(results, heading)
    if results and all(e.prediction is None for e in results):
        from biomarkerflow.errors import EXIT_CODES, Category

        raise typer.Exit(EXIT_CODES[Category.NOT_FOUND])  # no model to answer with; the reason is printed above


def catalog_study_inputs(catalog: Catalog, study_id: str) -> tuple[str, list[Any], list[int | None], list[str | None]]:
    """A study's workflow id and the inputs of its files not processed yet."""
    from biomarkerflow.config.schema import StudyConfig
    from biomarkerflow.cost.estimate import files_inputs
    from biomarkerflow.cost.identity import workflow_id
    from biomarkerflow.plugins.skdh.checks import installed_version, pinned_version

    record = catalog.get_study(study_id)
    assert record is not None
    config = StudyConfig.model_validate(record.config)
    pinned = pinned_version(config.pipeline.package)
    name = workflow_id(config, str(pinned) if pinned else installed_version())
    files = [f for f in catalog.files(study_id) if f.state not in ("SUCCEEDED", "RUNNING")]
    inputs = files_inputs(files)
    return name, inputs, [f.id for f in files], [f.relative_path for f in files]


models_app = typer.Typer(
    help="Cost models: train, list, show, report on past estimates, import history.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("train")
@handled
def models_train(
    workflow: Annotated[
        str | None, typer.Option(metavar="WORKFLOW", help="Only this workflow (default: every one with history).")
    ] = None,
) -> None:
    """Train a challenger per workflow; promote it only if it beats the champion on the newest runs.

    \b
    Example: biomarkerflow models train --workflow skdh-0.17.18-5c1e0a9b
    """
    from biomarkerflow.cost.registry import train_all

    catalog = open_catalog()
    settings = open_settings()
    results = train_all(
        catalog, state.home, settings.prices.table(), settings.notifications.webhook_url, workflow=workflow
    )
    if not results:
        say("no run history yet: process some files or `models import-history` first")
    for result in results:
        colour = {"promoted": "green", "kept": "yellow", "refused": "red"}[result.decision]
        say(styled(f"{result.decision} ", colour), result.message)
        if result.notification_problem:
            tell(styled("warning: ", "yellow"), result.notification_problem)


def _model_line(model: Any) -> str:
    challenger = model.metrics.get("challenger", {})
    cost = challenger.get("model", {}).get("cost", {})
    error = cost.get("median_relative_error")
    coverage = cost.get("coverage")
    figures = f"median cost error {error:.1%}, 80% coverage {coverage:.0%}" if error is not None else ""
    return (
        f"{model.workflow} v{model.version} ({model.status}) trained {model.created_at:%Y-%m-%d %H:%M} "
        f"on {model.train_runs} runs ({model.trained_from:%Y-%m-%d} to {model.trained_to:%Y-%m-%d}), "
        f"tested on {model.test_runs}: {figures}"
    )


@models_app.command("list")
@handled
def models_list(
    workflow: Annotated[str | None, typer.Option(metavar="WORKFLOW", help="Only this workflow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every trained model version with its training window, held-out metrics and status."""
    catalog = open_catalog()
    models = catalog.cost_models(workflow)
    if as_json:
        print(json.dumps([_model_dict(m) for m in models], indent=2, default=str))
        return
    if not models:
        say("no models yet: `biomarkerflow models train`")
    for model in models:
        say(_model_line(model))


def _model_dict(model: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(model)


@models_app.command("show")
@handled
def models_show(
    workflow: Annotated[str, typer.Argument(metavar="WORKFLOW", help="The workflow id, e.g. skdh-0.17.18-5c1e0a9b.")],
    version: Annotated[
        int | None, typer.Option(metavar="N", help="This version (default: the champion, else the newest).")
    ] = None,
) -> None:
    """One model version in full: window, metrics against both baselines, and why it was (not) promoted."""
    from biomarkerflow.errors import NotFoundError

    catalog = open_catalog()
    models = catalog.cost_models(workflow)
    if not models:
        raise NotFoundError(
            f"no cost model of workflow '{workflow}' in the catalog at {catalog_name()}",
            hint="`biomarkerflow models list` shows the workflows that have models; "
            "`biomarkerflow models train` makes them once a workflow has 5 runs.",
        )
    if version is not None:
        chosen = [m for m in models if m.version == version]
        if not chosen:
            versions = ", ".join(str(m.version) for m in models)
            raise NotFoundError(
                f"workflow '{workflow}' has no model version {version}", hint=f"Its versions: {versions}."
            )
        model = chosen[0]
    else:
        model = next((m for m in models if m.status == "champion"), models[-1])
    say(_model_line(model))
    say(f"decision: {model.note}")
    table_rows: list[tuple[str, ...]] = []
    challenger = model.metrics.get("challenger", {})
    rows = [("model", challenger.get("model", {})), ("median baseline", challenger.get("median_baseline", {}))]
    rows += [("size-line baseline", challenger.get("size_line_baseline", {}))]
    if model.metrics.get("champion"):
        rows.append(("champion then", model.metrics["champion"]))
    for label, metrics in rows:
        for quantity, values in metrics.items():
            coverage = f"{values['coverage']:.0%}" if label in ("model", "champion then") else "-"
            table_rows.append(
                (
                    label,
                    quantity,
                    f"{values['median_relative_error']:.1%}",
                    f"{values['p90_relative_error']:.1%}",
                    coverage,
                )
            )
    headers = ("median rel. error", "P90 rel. error", "80% coverage")
    columns = [Column("predictor", key=True), Column("quantity"), *(Column(h, right=True) for h in headers)]
    print_table(console, columns, table_rows, title="held-out runs")
    say(f"file: {model.path}")


@models_app.command("report")
@handled
def models_report(
    workflow: Annotated[str | None, typer.Option(metavar="WORKFLOW", help="Only this workflow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """How good past estimates were, once their runs finished: errors and interval coverage."""
    from biomarkerflow.cost.reports import estimate_accuracy

    catalog = open_catalog()
    accuracy = estimate_accuracy(catalog.estimates(workflow, with_actual=True))
    if as_json:
        print(json.dumps(accuracy, indent=2))
        return
    if not accuracy:
        say("no estimate has met its run yet: `estimate --study`, then `process`")
        return
    rows = [
        (
            name,
            str(figures["pairs"]),
            quantity,
            f"{values['median_relative_error']:.1%}",
            f"{values['p90_relative_error']:.1%}",
            f"{values['coverage']:.0%}",
        )
        for name, figures in accuracy.items()
        for quantity, values in figures["quantities"].items()
    ]
    headers = ("pairs", "quantity", "median rel. error", "P90 rel. error", "80% coverage")
    columns = [Column("workflow", key=True), *(Column(h, right=h != "quantity") for h in headers)]
    print_table(console, columns, rows, title="past estimates against what the runs used", more="--json")


@models_app.command("import-history")
@handled
def models_import_history(
    csv_file: Annotated[
        Path, typer.Argument(metavar="CSV_FILE", help="CSV of past runs, one per line.", exists=True, dir_okay=False)
    ],
) -> None:
    """Load past runs from other platforms as history for the cost models.

    Columns: workflow, started_at, input_bytes, output_bytes, wall_seconds, cpu_seconds,
    peak_rss_bytes; optional: cost, machine, duration_seconds_of_data. Bad rows are
    listed by line number and skipped; the good ones are imported.

    \b
    Example: biomarkerflow models import-history old-platform-runs.csv
    """
    from biomarkerflow.cost.history import HistoryFormatError, parse_history_csv

    try:
        parsed = parse_history_csv(csv_file.read_text(encoding="utf-8-sig"))
    except HistoryFormatError as exc:
        report_error(f"{csv_file}: {exc}", None)
        raise typer.Exit(2) from None
    except UnicodeDecodeError as exc:
        report_error(f"{csv_file}: not UTF-8 text (byte {exc.start})", "Save the file as UTF-8 CSV.")
        raise typer.Exit(2) from None
    for problem in parsed.problems:
        tell(styled("skipped ", "yellow"), f"{csv_file}:{problem.line}: {problem.message}")
    catalog = open_catalog()
    imported = catalog.add_imported_runs([(f"{csv_file.name}:{line}", row) for line, row in parsed.rows])
    workflows = sorted({row.workflow for _, row in parsed.rows})
    say(
        f"imported {imported} run(s) of {len(workflows)} workflow(s); skipped {len(parsed.problems)} bad row(s)",
    )
    if parsed.problems:
        raise typer.Exit(1)


def retrain_if_due(catalog: Catalog, settings: Settings) -> None:
    """`watch`'s scheduled retraining of the cost models (models.retrain_every_hours)."""
    from biomarkerflow.catalog.manager import utcnow
    from biomarkerflow.cost.registry import train_all, training_due

    if not training_due(catalog.last_training_at(), settings.models.retrain_every_hours, utcnow()):
        return
    for result in train_all(catalog, state.home, settings.prices.table(), settings.notifications.webhook_url):
        if result.decision != "refused":
            say(f"models: {result.decision} {result.message}")


# ---- status / query ----------------------------------------------------------------------------


@app.command()
@handled
def status(
    study: Annotated[str | None, typer.Option(metavar="STUDY", help="Only this study.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also the step and full traceback of every failure.")
    ] = False,
) -> None:
    """Files per state for each study: why files wait, why they failed, and results SKDH
    computed only in part (notes such as "no height: gait speed not computed").

    \b
    Example: biomarkerflow status --study demo-wrist --verbose
    """
    from biomarkerflow.engine.leases import HEARTBEAT_SECONDS

    catalog = open_catalog()
    require_studies(catalog, [study] if study else None)
    statuses = catalog.status(study)
    workers = catalog.live_workers(within_seconds=3 * HEARTBEAT_SECONDS)
    if as_json:
        payload = {
            "catalog": catalog_name(),
            "studies": [
                {
                    "study": s.study_id,
                    "counts": s.counts,
                    "waiting": [{"file": f, "reason": r} for f, r in s.waiting],
                    "failed": [_failure_json(f, e, s.failure_details.get(f)) for f, e in s.failed],
                    "notices": [{"file": f, "notice": n} for f, n in s.notices],
                }
                for s in statuses
            ],
            "workers": [
                {
                    "id": w.id,
                    "host": w.host,
                    "pid": w.pid,
                    "kind": w.kind,
                    "executor": w.executor,
                    "capacity": w.capacity,
                    "state": w.state,
                    "running_jobs": w.running_jobs,
                    "started_at": w.started_at.isoformat(),
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                }
                for w in workers
            ],
        }
        print(json.dumps(payload, indent=2))
        return
    say(f"catalog: {catalog_name()}")
    for w in workers:
        say(
            f"worker {w.host}:{w.pid} ({w.kind}, {w.executor}, {w.state}): {w.running_jobs} of {w.capacity} jobs "
            f"running, last heartbeat {w.heartbeat_at:%H:%M:%S} UTC",
        )
    if not statuses:
        say("no studies yet: run `biomarkerflow scan --configs FOLDER` first")
        return
    for s in statuses:
        shown = {k: v for k, v in s.counts.items() if v}
        say(styled(s.study_id, "bold"), "  " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        for file, reason in s.waiting:
            say(state_label("WAITING"), f"{file}: {reason}", indent=2)
        for file, error in s.failed:
            say(state_label("FAILED"), f"{file}: {error}", indent=2)
            detail = s.failure_details.get(file)
            if verbose and detail is not None:
                _print_failure_detail(detail)
        for file, notice in s.notices:
            say(state_label("NOTE"), f"{file}: {notice}", indent=2)
        if s.failed and not verbose:
            say("  (`biomarkerflow status --verbose` shows the failing step and traceback of each)")


def _failure_json(file: str, error: str, detail: Any) -> dict[str, Any]:
    extra = {} if detail is None else {"step": detail.step, "run_id": detail.run_id, "traceback": detail.traceback}
    return {"file": file, "error": error, **extra}


def _print_failure_detail(detail: Any) -> None:
    where = f"step {detail.step}" if detail.step else "no pipeline step (the job itself)"
    say(f"{where}, run {detail.run_id or '-'}", indent=13)
    if detail.traceback:
        for text in detail.traceback.rstrip().splitlines():
            say(text, indent=13)


@app.command()
@handled
def query(
    sql: Annotated[str, typer.Argument(metavar="SQL", help='SQL over the study\'s tables, e.g. "SELECT * FROM sleep"')],
    study: Annotated[str, typer.Option(metavar="STUDY", help="Study id.")],
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")] = "table",
) -> None:
    """SQL (DuckDB) over a study's consolidated result tables: activity, sleep, wear, gait ...

    \b
    Example: biomarkerflow query --study demo-wrist "SELECT subject, AVG(\\"total sleep time\\") FROM sleep GROUP BY 1"
    """
    from biomarkerflow.results.query import run_query

    if output_format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")
    catalog = open_catalog()
    require_studies(catalog, [study])
    record = catalog.get_study(study)
    assert record is not None
    frame = run_query(record.output_location, sql)
    if output_format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif output_format == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso", indent=2) + "\n")
    else:
        _print_frame(frame)


def _print_frame(frame: Any) -> None:
    """A query result: a table when it fits, else one record per block (nothing squeezed)."""
    from pandas.api.types import is_numeric_dtype

    columns = [
        Column(str(name), key=name in ("study", "subject", "file", "run_id"), right=is_numeric_dtype(frame[name]))
        for name in frame.columns
    ]
    rows = [
        tuple("" if v is None else f"{v:.10g}" if isinstance(v, float) else str(v) for v in row)
        for row in frame.itertuples(index=False)
    ]
    print_table(console, columns, rows, more="--format csv or --format json")
    if not rows:
        say("(no rows)")


# ---- runtimes / lineage ------------------------------------------------------------------------

runtimes_app = typer.Typer(
    help="The isolated environments studies run in, one per pinned package version (built with uv, cached).",
    no_args_is_help=True,
)
app.add_typer(runtimes_app, name="runtimes")


def _pinned_specs(catalog: Catalog) -> dict[str, Any]:
    """The runtime spec of every study in the catalog, by study id."""
    from biomarkerflow.runtimes.environment import parse_spec

    specs: dict[str, Any] = {}
    for study in catalog.studies():
        pipeline = study.config["pipeline"]
        specs[study.id] = parse_spec(pipeline["package"], pipeline.get("constraints", []))
    return specs


@runtimes_app.command("list")
@handled
def runtimes_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Cached runtimes: requirement, lock hash, size, last use, and the studies pinning each."""
    runtimes = open_runtimes()
    users: dict[str, list[str]] = {}
    for study_id, spec in _pinned_specs(open_catalog()).items():
        users.setdefault(spec.key, []).append(study_id)
    entries = runtimes.cache.entries()
    if as_json:
        rows = [
            {
                "key": e.key,
                "requirement": e.requirement,
                "lock_hash": e.lock_hash,
                "size_bytes": e.size_bytes,
                "built_at": e.built_at,
                "last_used": e.last_used,
                "path": str(e.path),
                "studies": users.get(e.key, []),
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return
    if not entries:
        say(f"no runtimes built in {runtimes.cache.root} (studies that pin the installed version need none)")
        return
    table_rows = [
        (
            e.requirement,
            e.lock_hash[:12],
            format_bytes(e.size_bytes),
            e.last_used or "never",
            ", ".join(users.get(e.key, [])),
        )
        for e in entries
    ]
    columns = [Column("requirement", key=True), Column("lock hash", key=True), Column("size", right=True)]
    columns += [Column("last used"), Column("studies")]
    print_table(console, columns, table_rows, more="--json")


@runtimes_app.command("build")
@handled
def runtimes_build(
    configs: Annotated[
        list[str] | None, typer.Argument(metavar="CONFIG", help="Study configs or folders: build what each one pins.")
    ] = None,
    package: Annotated[
        str | None, typer.Option(metavar="PIN", help="Or one pin, e.g. scikit-digital-health==0.16.15.")
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option(metavar="REQUIREMENT", help="Extra requirement for --package, e.g. 'numpy<2' (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it is cached.")] = False,
) -> None:
    """Build runtimes ahead of time, e.g. before copying the home to an air-gapped cluster.

    \b
    Example: biomarkerflow runtimes build studies/
             biomarkerflow runtimes build --package scikit-digital-health==0.16.15 --constraint 'numpy<2'
    """
    from biomarkerflow.config.loader import load_study_config
    from biomarkerflow.config.validate import CONFIG_SUFFIXES
    from biomarkerflow.runtimes.environment import current_environment, parse_spec, satisfies

    specs = []
    if package:
        specs.append(parse_spec(package, constraint or []))
    for path in configs or []:
        files = (
            sorted(p for p in Path(path).iterdir() if p.suffix in CONFIG_SUFFIXES) if Path(path).is_dir() else [path]
        )
        for file in files:
            pipeline = load_study_config(file).config.pipeline
            specs.append(parse_spec(pipeline.package, pipeline.constraints))
    if not specs:
        raise typer.BadParameter("name study configs or --package", param_hint="CONFIGS")
    runtimes = open_runtimes()
    failed = 0
    for spec in {s.key: s for s in specs}.values():
        if satisfies(current_environment(), spec) and not force:
            say(f"current   {spec.describe()}: the installed environment satisfies it")
            continue
        try:
            built = runtimes.cache.build(spec, force=force) if force else runtimes.cache.ensure(spec)
        except BiomarkerflowError as exc:
            failed += 1
            report_error(exc.message, exc.hint, label="failed    ")
            continue
        say(f"ready     {spec.describe()}: lock {built.lock_hash[:12]} at {built.path}")
    if failed:
        raise typer.Exit(2)


@runtimes_app.command("prune")
@handled
def runtimes_prune(
    unused_days: Annotated[
        float, typer.Option(metavar="DAYS", help="Keep runtimes used within this many days even if no study pins them.")
    ] = 0.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
) -> None:
    """Remove runtimes no study in the catalog pins, and half-made builds.

    \b
    Example: biomarkerflow runtimes prune --unused-days 30
    """
    runtimes = open_runtimes()
    keep = {spec.key for spec in _pinned_specs(open_catalog()).values()}
    removed = runtimes.cache.prune(keep, unused_days=unused_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for e in removed:
        say(f"{verb}  {e.requirement}  ({format_bytes(e.size_bytes)}, {e.path})")
    freed = format_bytes(sum(e.size_bytes for e in removed))
    say(f"{len(removed)} runtime(s) {verb}, {freed}")


@app.command()
@handled
def lineage(
    target: Annotated[
        str, typer.Argument(metavar="PATH", help="A result file or run folder, a consolidated table, or an input file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Trace a result back to its input file, config, pipeline, package versions and run.

    \b
    Example: biomarkerflow lineage results/demo-wrist/tables/sleep.parquet
    """
    from biomarkerflow.results.lineage import lineage as trace
    from biomarkerflow.results.lineage import render

    found = trace(target, open_catalog())
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    for rendered in render(found):
        say(rendered)


# ---- demo --------------------------------------------------------------------------------------


@app.command()
@handled
def demo(
    workspace: Annotated[Path, typer.Option(metavar="DIR", help="Folder for the demo study (re-created).")] = Path(
        "demo-workspace"
    ),
    subjects: Annotated[int, typer.Option(metavar="N", min=1, help="Synthetic subjects.")] = 4,
    days: Annotated[float, typer.Option(metavar="DAYS", help="Days recorded per subject.")] = 2.0,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed for the synthetic recordings.")] = 7,
    workers: WorkersOption = DEFAULT_WORKERS,
) -> None:
    """Build a small study with synthetic and real recordings and process it end to end."""
    from biomarkerflow.demo.run import run_demo

    raise typer.Exit(run_demo(console, workspace, subjects=subjects, days=days, seed=seed, workers=workers))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
