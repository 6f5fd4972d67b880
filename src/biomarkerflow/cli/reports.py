"""Commands that report: status, query, lineage, costs."""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from biomarkerflow.cli.app import StudyOption, app, check_format, console, handled, platform, say, tell
from biomarkerflow.terminal import Column, print_table, styled
from biomarkerflow.terminal.work import state_label

if TYPE_CHECKING:
    import pandas as pd

    from biomarkerflow.catalog.manager import FailureDetail, StudyStatus
    from biomarkerflow.service.reports import CostReport, StatusReport

FormatOption = Annotated[str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")]


@app.command()
@handled
def status(
    study: Annotated[str | None, typer.Option(metavar="STUDY", help="Only this study.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also the step and full traceback of every failure.")
    ] = False,
    every_file: Annotated[
        bool,
        typer.Option("--all", help="List every waiting, failed and excluded file (else: counts per reason, examples)."),
    ] = False,
) -> None:
    """Files per state for each study: why files wait, why they failed, and results SKDH
    computed only in part (notes such as "no height: gait speed not computed").

    Files are grouped by reason, with how many and a few examples; `--all` lists every
    file (`--json` always does, and has the groups too).

    \b
    Example: biomarkerflow status --study demo-wrist --verbose
    """
    report = platform().status(study, every_file=every_file or as_json)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
        return
    _print_status(report, verbose)
    # The newest profiled runs (`process --profile`, a study's profile.every): where to open them.
    for p in report.profiles:
        say(state_label("PROFILE"), f"{p.study_id}/{p.file}: {p.profile}")


def _print_status(report: StatusReport, verbose: bool) -> None:
    say(f"catalog: {report.catalog}")
    for w in report.runners:
        say(
            f"runner {w.host}:{w.pid} ({w.kind}, {w.executor}, {w.state}): {w.running_jobs} of {w.capacity} jobs "
            f"running, last heartbeat {w.heartbeat_at:%H:%M:%S} UTC",
        )
    if not report.studies:
        say("no studies yet: run `biomarkerflow scan --configs FOLDER` first")
        return
    for s in report.studies:
        shown = {k: v for k, v in s.counts.items() if v}
        say(styled(s.study_id, "bold"), "  " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        if not s.every_file:
            _print_groups(s, verbose)
            continue
        for file, reason in s.waiting:
            say(state_label("WAITING"), f"{file}: {reason}", indent=2)
        for file, error in s.failed:
            say(state_label("FAILED"), f"{file}: {error}", indent=2)
            detail = s.failure_details.get(file)
            if verbose and detail is not None:
                _print_failure_detail(detail)
        for file, reason in s.excluded:
            say(state_label("EXCLUDED"), f"{file}: {reason}", indent=2)
        for file, notice in s.notices:
            say(state_label("NOTE"), f"{file}: {notice}", indent=2)
        if s.failed and not verbose:
            say("  (`biomarkerflow status --verbose` shows the failing step and traceback of each)")


def _print_groups(s: StudyStatus, verbose: bool) -> None:
    """Each reason group: its files one per line when that is all of them, else how many and examples."""
    for group in s.groups:
        if group.files <= len(group.examples):
            for file, reason in group.examples:
                say(state_label(group.state), f"{file}: {reason}", indent=2)
                _print_detail_of(s, group.state, file, verbose)
            continue
        say(state_label(group.state), f"{group.files:,} files: {group.reason}", indent=2)
        for file, reason in group.examples:
            say(f"e.g. {file}: {reason}", indent=12)
            _print_detail_of(s, group.state, file, verbose)
    if any(g.files > len(g.examples) for g in s.groups):
        say("  (`biomarkerflow status --all` lists every file)")
    if s.counts.get("FAILED") and not verbose:
        say("  (`biomarkerflow status --verbose` shows the failing step and traceback of each)")


def _print_detail_of(s: StudyStatus, state: str, file: str, verbose: bool) -> None:
    detail = s.failure_details.get(file) if state == "FAILED" else None
    if verbose and detail is not None:
        _print_failure_detail(detail)


def _print_failure_detail(detail: FailureDetail) -> None:
    where = f"step {detail.step}" if detail.step else "no pipeline step (the job itself)"
    say(f"{where}, run {detail.run_id or '-'}", indent=13)
    for text in (detail.traceback or "").rstrip().splitlines():
        say(text, indent=13)


@app.command()
@handled
def query(
    sql: Annotated[str, typer.Argument(metavar="SQL", help='SQL over the study\'s tables, e.g. "SELECT * FROM sleep"')],
    study: Annotated[str, typer.Option(metavar="STUDY", help="Study id.")],
    output_format: FormatOption = "table",
) -> None:
    """SQL (DuckDB) over a study's consolidated result tables: activity, sleep, wear, gait ...

    Column names with spaces need double quotes.

    \b
    Example: biomarkerflow query --study demo-wrist "SELECT subject, AVG(\\"total sleep time\\") FROM sleep GROUP BY 1"
    """
    check_format(output_format)
    frame = platform().query(study, sql)
    if output_format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif output_format == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso", indent=2) + "\n")
    else:
        _print_frame(frame)
    if frame.attrs.get("truncated"):  # on stderr: csv and json on stdout stay whole files
        tell(f"(only the first {frame.attrs['row_limit']:,} rows: narrow the query with WHERE or GROUP BY)")


def _print_frame(frame: pd.DataFrame) -> None:
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
    from biomarkerflow.results.lineage import render

    found = platform().lineage(target)
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    for rendered in render(found):
        say(rendered)


def _money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "-"
    return f"{amount:,.4f} {currency}" if amount < 100 else f"{amount:,.2f} {currency}"


@app.command()
@handled
def costs(
    study: StudyOption = None,
    by: Annotated[str, typer.Option(metavar="GROUPING", help="Group by study, pipeline, subject or month.")] = "study",
    output_format: FormatOption = "table",
) -> None:
    """What processing actually cost: totals, per subject-day of recording and per GB of input.

    Every attempt counts in the cost (failed ones were paid for too); subject-days and GB
    count only runs that produced results. Prices: the table in force in the home's
    settings.yaml when each run finished.

    \b
    Example: biomarkerflow costs --by month --format csv > costs.csv
    """
    check_format(output_format)
    report = platform().costs(study, by)
    if output_format == "json":
        print(json.dumps(report.as_json(), indent=2))
    elif output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(report.total.as_dict(report.by)))
        writer.writeheader()
        writer.writerows([*report.records, report.total.as_dict(report.by)])
    else:
        _print_costs(report)


def _print_costs(report: CostReport) -> None:
    if not report.groups:
        say("no finished runs yet: nothing has cost anything")
        return
    headers = ("runs", "failed", "subjects", "subject-days", "input GB", "cost", "per subject-day", "per GB")
    columns = [Column(report.by, key=True), *(Column(h, right=True) for h in headers)]
    rows: list[tuple[Any, ...]] = [
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
        for group in [*report.groups, report.total]
    ]
    print_table(console, columns, rows, title=f"costs by {report.by}", more="--format csv or --format json")
    if report.unpriced_runs:
        say(f"{report.unpriced_runs} run(s) finished before costs were recorded and count as 0.")
