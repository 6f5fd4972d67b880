"""Commands about money: estimate, and the cost models behind it (models ...)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from biomarkerflow.cli.app import JsonOption, app, console, exit_with, handled, platform, say, tell
from biomarkerflow.terminal import Column, print_table, styled
from biomarkerflow.units import SIZE_UNITS, TIME_UNITS, format_bytes

if TYPE_CHECKING:
    from biomarkerflow.catalog.manager import CostModelRecord
    from biomarkerflow.cost.estimate import Estimate
    from biomarkerflow.cost.model import RunInputs
    from biomarkerflow.service.costs import EstimateReport


# `--workflow` is what `--pipeline` was called before the pipeline had its own name: it
# still works, without being shown.
OldPipelineOption = Annotated[str | None, typer.Option("--workflow", metavar="PIPELINE", hidden=True)]


def _pipeline(pipeline: str | None, old_name: str | None) -> str | None:
    """The pipeline asked for with `--pipeline` or its old name `--workflow`."""
    if pipeline is not None and old_name is not None and pipeline != old_name:
        raise typer.BadParameter(
            f"--pipeline {pipeline} and --workflow {old_name} disagree; give --pipeline only "
            "(--workflow is its old name)",
            param_hint="--pipeline",
        )
    return pipeline if pipeline is not None else old_name


def parse_amount(text: str, units: dict[str, int], option: str, example: str) -> float:
    """`2GB` -> 2e9, `7d` -> 604800, as a command-line error naming the option when it is not."""
    from biomarkerflow.errors import UsageError
    from biomarkerflow.units import parse_amount as parse

    try:
        return parse(text, units, option, example)
    except UsageError:
        raise typer.BadParameter(f"'{text}' is not an amount like {example}", param_hint=option) from None


@app.command()
@handled
def estimate(
    study: Annotated[
        str | None, typer.Option(metavar="STUDY", help="Every file of this study not processed yet.")
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option(metavar="PIPELINE", help="One run of this pipeline (see `models list`).")
    ] = None,
    workflow_alias: OldPipelineOption = None,
    input_size: Annotated[str | None, typer.Option(metavar="SIZE", help="Input file size, e.g. 2GB or 350MB.")] = None,
    output_size: Annotated[str | None, typer.Option(metavar="SIZE", help="Expected output size, e.g. 50MB.")] = None,
    duration: Annotated[
        str | None, typer.Option(metavar="DURATION", help="Recording duration, e.g. 7d or 36h.")
    ] = None,
    sample_rate: Annotated[float | None, typer.Option(metavar="HZ", help="Sample rate in Hz, e.g. 50.")] = None,
    device: Annotated[str | None, typer.Option(metavar="TYPE", help="File type, e.g. bin or cwa.")] = None,
    machine: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="On this machine (see `models machines`), or priced under this price table "
            "(default: the machine most past runs used, the table in force).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Predicted cost, duration and peak memory before processing, with 80% intervals.

    A pipeline with fewer than 5 runs borrows from similar pipelines (same workflow type),
    and says so; its interval is wider.

    \b
    Examples:
      biomarkerflow estimate --study trial-a
      biomarkerflow estimate --study trial-a --machine worker-16core
      biomarkerflow estimate --pipeline skdh-0.17.18-5c1e0a9b --input-size 2GB --duration 7d
    """
    pipeline = _pipeline(pipeline, workflow_alias)
    if (study is None) == (pipeline is None):
        raise typer.BadParameter("give either --study or --pipeline", param_hint="--study/--pipeline")
    if study is not None:
        report = platform().estimate_study(study, machine)
    else:
        if input_size is None:
            raise typer.BadParameter("--pipeline needs --input-size, e.g. 2GB", param_hint="--input-size")
        inputs = _run_inputs_of(input_size, output_size, duration, sample_rate, device)
        assert pipeline is not None
        report = platform().estimate_run(pipeline, inputs, machine)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    elif report.nothing_left is not None:
        say(
            f"{study}: all {report.nothing_left} file(s) are processed or running; nothing left to estimate. "
            f"To price one more run: biomarkerflow estimate --pipeline {report.pipeline} --input-size 300MB"
        )
    else:
        _print_estimates(report)
    exit_with(report.category)  # not found: no model could answer (the reason is printed above)


def _run_inputs_of(
    input_size: str, output_size: str | None, duration: str | None, sample_rate: float | None, device: str | None
) -> RunInputs:
    from biomarkerflow.cost.model import RunInputs

    return RunInputs(
        input_bytes=int(parse_amount(input_size, SIZE_UNITS, "--input-size", "2GB")),
        output_bytes=int(parse_amount(output_size, SIZE_UNITS, "--output-size", "50MB")) if output_size else None,
        recording_seconds=parse_amount(duration, TIME_UNITS, "--duration", "7d") if duration else None,
        sample_rate_hz=sample_rate,
        device=device.lower().lstrip(".") if device else None,
    )


def _print_estimates(report: EstimateReport) -> None:
    from biomarkerflow.cost.estimate import total

    estimates = report.estimates
    for reason in sorted({e.refusal for e in estimates if e.prediction is None and e.refusal}):
        say(styled("no estimate: ", "yellow"), reason)
    known = [e for e in estimates if e.prediction is not None]
    if not known:
        return
    flagged = any(e.prediction.extrapolating for e in known if e.prediction is not None)
    headers = ("input", "cost (80% interval)", "duration", "peak memory")
    columns = [Column("run", key=True), *(Column(h, right=True) for h in headers)]
    columns += [Column("note")] if flagged else []
    rows = [_estimate_row(e, flagged) for e in known]
    print_table(console, columns, rows, title=report.heading, more="--json")
    for answered in sorted({e.prediction.answered_by for e in known if e.prediction is not None}):
        say(f"answered by: {answered}")
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
            "extrapolating: sizes, lengths, sample rates, devices or machines outside the runs the model "
            "learned from; the intervals are wider the further outside",
        )


def _estimate_row(e: Estimate, flagged: bool) -> tuple[str, ...]:
    assert e.prediction is not None
    v = e.prediction.values
    memory = v["peak_rss_bytes"]
    return (
        e.file or e.pipeline,
        _inputs_text(e.inputs),
        f"${v['cost'][1]:.4f} (${v['cost'][0]:.4f}-${v['cost'][2]:.4f})",
        _interval(v["wall_seconds"], _duration),
        f"{format_bytes(int(memory[1]))} (up to {format_bytes(int(memory[2]))})",
        *(("extrapolating" if e.prediction.extrapolating else "",) if flagged else ()),
    )


def _inputs_text(inputs: RunInputs) -> str:
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


models_app = typer.Typer(
    help="Cost models: train, list, show, report on past estimates, import history.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("train")
@handled
def models_train(
    pipeline: Annotated[
        str | None, typer.Option(metavar="PIPELINE", help="Only this pipeline (default: every one with history).")
    ] = None,
    workflow_alias: OldPipelineOption = None,
) -> None:
    """Train a challenger per pipeline; promote it only if it beats the champion on the newest runs.

    \b
    Example: biomarkerflow models train --pipeline skdh-0.17.18-5c1e0a9b
    """
    results = platform().train_models(_pipeline(pipeline, workflow_alias))
    if not results:
        say("no run history yet: process some files or `models import-history` first")
    for result in results:
        colour = {"promoted": "green", "kept": "yellow", "refused": "red"}[result.decision]
        say(styled(f"{result.decision} ", colour), result.message)
        if result.notification_problem:
            tell(styled("warning: ", "yellow"), result.notification_problem)


def _model_line(model: CostModelRecord) -> str:
    challenger = model.metrics.get("challenger") or {}  # None: too few runs to hold any out
    cost = challenger.get("model", {}).get("cost", {})
    error = cost.get("median_relative_error")
    coverage = cost.get("coverage")
    figures = f": median cost error {error:.1%}, 80% coverage {coverage:.0%}" if error is not None else ""
    return (
        f"{model.pipeline} v{model.version} ({model.status}) trained {model.created_at:%Y-%m-%d %H:%M} "
        f"on {model.train_runs} runs ({model.trained_from:%Y-%m-%d} to {model.trained_to:%Y-%m-%d}), "
        f"tested on {model.test_runs}{figures}"
    )


@models_app.command("list")
@handled
def models_list(
    pipeline: Annotated[str | None, typer.Option(metavar="PIPELINE", help="Only this pipeline.")] = None,
    workflow_alias: OldPipelineOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every trained model version with its training window, held-out metrics and status."""
    from dataclasses import asdict

    models = platform().models(_pipeline(pipeline, workflow_alias))
    if as_json:
        print(json.dumps([asdict(m) for m in models], indent=2, default=str))
        return
    if not models:
        say("no models yet: `biomarkerflow models train`")
    for model in models:
        say(_model_line(model))


@models_app.command("show")
@handled
def models_show(
    pipeline: Annotated[str, typer.Argument(metavar="PIPELINE", help="The pipeline id, e.g. skdh-0.17.18-5c1e0a9b.")],
    version: Annotated[
        int | None, typer.Option(metavar="N", help="This version (default: the champion, else the newest).")
    ] = None,
) -> None:
    """One model version in full: every candidate predictor side by side, the one that answers
    each quantity, held-out metrics against both baselines, and why it was (not) promoted."""
    model = platform().model(pipeline, version)
    say(_model_line(model))
    say(f"decision: {model.note}")
    _print_candidates(model.metrics.get("candidates") or {})
    challenger = model.metrics.get("challenger") or {}
    predictors = [("model", challenger.get("model", {})), ("median baseline", challenger.get("median_baseline", {}))]
    predictors += [("size-line baseline", challenger.get("size_line_baseline", {}))]
    if model.metrics.get("champion"):
        predictors.append(("champion then", model.metrics["champion"]))
    rows = [
        (
            label,
            quantity,
            f"{values['median_relative_error']:.1%}",
            f"{values['p90_relative_error']:.1%}",
            f"{values['coverage']:.0%}",
        )
        for label, metrics in predictors
        for quantity, values in metrics.items()
    ]
    if rows:
        headers = ("median rel. error", "P90 rel. error", "80% coverage")
        columns = [Column("predictor", key=True), Column("quantity"), *(Column(h, right=True) for h in headers)]
        print_table(console, columns, rows, title="held-out runs (the newest, by time)")
    say(f"file: {model.path}")


def _print_candidates(candidates: dict[str, Any]) -> None:
    """Per quantity, each candidate's out-of-fold median relative error; * marks the one that answers."""
    from biomarkerflow.cost.kinds import LABELS

    if not candidates:
        return
    kinds = list(dict.fromkeys(kind for c in candidates.values() for kind in c["errors"]))
    rows = [
        (
            quantity,
            *(
                f"{c['errors'][kind]:.1%}{' *' if kind == c['chosen'] else ''}" if kind in c["errors"] else "-"
                for kind in kinds
            ),
        )
        for quantity, c in candidates.items()
    ]
    columns = [Column("quantity", key=True), *(Column(LABELS.get(k, k), right=True) for k in kinds)]
    print_table(console, columns, rows, title="candidates: median relative error out of fold (* answers)")


@models_app.command("report")
@handled
def models_report(
    pipeline: Annotated[str | None, typer.Option(metavar="PIPELINE", help="Only this pipeline.")] = None,
    workflow_alias: OldPipelineOption = None,
    as_json: JsonOption = False,
) -> None:
    """How good past estimates were, once their runs finished: errors and interval coverage."""
    accuracy = platform().estimate_accuracy(_pipeline(pipeline, workflow_alias))
    if as_json:
        print(json.dumps(accuracy, indent=2))
        return
    if not accuracy:
        say("no estimate has met its run yet: `estimate --study`, then `process`")
        return
    rows: list[tuple[Any, ...]] = [
        (
            name,
            answered,
            str(group["pairs"]),
            quantity,
            f"{values['median_relative_error']:.1%}",
            f"{values['p90_relative_error']:.1%}",
            f"{values['coverage']:.0%}",
        )
        for name, figures in accuracy.items()
        for answered, group in figures["by_predictor"].items()
        for quantity, values in group["quantities"].items()
    ]
    headers = ("pairs", "quantity", "median rel. error", "P90 rel. error", "80% coverage")
    columns = [Column("pipeline", key=True), Column("answered by")]
    columns += [Column(h, right=h != "quantity") for h in headers]
    print_table(console, columns, rows, title="past estimates against what the runs used", more="--json")


@models_app.command("machines")
@handled
def models_machines(as_json: JsonOption = False) -> None:
    """The machines past runs were made on: what `estimate --machine NAME` takes."""
    from dataclasses import asdict

    machines = platform().machines()
    if as_json:
        print(json.dumps([asdict(m) for m in machines], indent=2))
        return
    if not machines:
        say("no machine known yet: process some files or `models import-history` with a machine column")
        return
    rows = [
        (
            m.name,
            f"{m.cores:g}" if m.cores else "?",
            format_bytes(int(m.memory_bytes)) if m.memory_bytes else "?",
            m.cpu or "?",
            str(m.runs),
        )
        for m in machines
    ]
    columns = [Column("machine", key=True), Column("cores", right=True), Column("memory", right=True)]
    columns += [Column("CPU"), Column("runs", right=True)]
    print_table(console, columns, rows, title="machines of past runs")


@models_app.command("import-history")
@handled
def models_import_history(
    csv_file: Annotated[
        Path, typer.Argument(metavar="CSV_FILE", help="CSV of past runs, one per line.", exists=True, dir_okay=False)
    ],
) -> None:
    """Load past runs from other platforms as history for the cost models.

    Columns: pipeline, started_at, input_bytes, output_bytes, wall_seconds, cpu_seconds,
    peak_rss_bytes. Optional: cost, duration_seconds_of_data, sample_rate_hz, device (file
    kind, e.g. cwa); the machine: machine (its name), machine_cores, machine_memory_bytes,
    machine_cpu; what the pipeline is, so that new pipelines can borrow estimates from it:
    workflow_type, steps (names separated by ;), package (e.g. scikit-digital-health==0.17.18).
    (Older files that name the pipeline column `workflow` are read too.) Bad rows are listed
    by line number and skipped; the good ones are imported.

    \b
    Example: biomarkerflow models import-history old-platform-runs.csv
    """
    report = platform().import_history(csv_file)
    for problem in report.problems:
        tell(styled("skipped ", "yellow"), f"{csv_file}:{problem.line}: {problem.message}")
    say(
        f"imported {report.imported} run(s) of {report.pipelines} pipeline(s); "
        f"skipped {len(report.problems)} bad row(s)"
    )
    exit_with(report.category)
