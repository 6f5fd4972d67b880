"""Run history for the cost models: our own finished runs, and past runs imported from CSV.

`parse_history_csv` is pure: it returns the good rows and, for every bad row, its line
number and what is wrong with it. Nothing is skipped silently.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

# The catalog stores and returns observations, and must not import cost/: the record lives there.
from biomarkerflow.catalog.records import Observation

REQUIRED_COLUMNS = (
    "pipeline",
    "started_at",
    "input_bytes",
    "output_bytes",
    "wall_seconds",
    "cpu_seconds",
    "peak_rss_bytes",
)
OPTIONAL_COLUMNS = (
    "cost",
    "machine",
    "duration_seconds_of_data",
    "sample_rate_hz",
    "device",
    "machine_cores",
    "machine_memory_bytes",
    "machine_cpu",
    "workflow_type",
    "steps",
    "package",
)
# A pipeline's name becomes a folder of model files: no slashes, dots first, or spaces.
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}$")
# Files written before the pipeline had its own name call its column `workflow`.
OLD_NAMES = {"workflow": "pipeline"}


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ParsedHistory:
    rows: list[tuple[int, Observation]]  # (line, observation)
    problems: list[RowProblem]


class HistoryFormatError(ValueError):
    """The file as a whole cannot be read (no header, missing columns)."""


def _number(row: dict[str, str], column: str, *, integer: bool = False, optional: bool = False) -> float | None:
    raw = (row.get(column) or "").strip()
    if not raw:
        if optional:
            return None
        raise ValueError(f"{column} is empty")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{column} is not a number: {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{column} must be a number of 0 or more, got {raw!r}")
    if integer and value != int(value):
        raise ValueError(f"{column} must be a whole number, got {raw!r}")
    return value


def _timestamp(raw: str) -> datetime:
    text = raw.strip()
    if not text:
        raise ValueError("started_at is empty")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"started_at is not an ISO date/time (e.g. 2026-03-01T14:05:00Z): {text!r}") from None
    # Naive times are taken as UTC, like everything in the catalog.
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _text(row: dict[str, str], column: str, limit: int = 200) -> str | None:
    value = (row.get(column) or "").strip()
    if len(value) > limit:
        raise ValueError(f"{column} is longer than {limit} characters")
    return value or None


def _pipeline(row: dict[str, str]) -> str:
    pipeline = (row.get("pipeline") or "").strip()
    if not pipeline:
        raise ValueError("pipeline is empty")
    if not PIPELINE_NAME.match(pipeline):
        raise ValueError(
            f"pipeline {pipeline[:60]!r} must be letters, digits and . _ + = - (at most 200, "
            "starting with a letter or digit), e.g. nextflow-rnaseq.FASTQC"
        )
    return pipeline


def _steps(row: dict[str, str]) -> tuple[str, ...]:
    """`steps`: names separated by `;`, e.g. `CalibrateAccelerometer;Sleep`."""
    text = _text(row, "steps", limit=4000) or ""
    return tuple(step.strip() for step in text.split(";") if step.strip())


def _observation(row: dict[str, str]) -> Observation:
    pipeline = _pipeline(row)
    wall = _number(row, "wall_seconds")
    assert wall is not None
    if wall <= 0:
        raise ValueError("wall_seconds must be more than 0")
    device = _text(row, "device", limit=50)
    return Observation(
        pipeline=pipeline,
        started_at=_timestamp(row.get("started_at") or ""),
        input_bytes=int(_number(row, "input_bytes", integer=True) or 0),
        output_bytes=int(_number(row, "output_bytes", integer=True) or 0),
        wall_seconds=wall,
        cpu_seconds=float(_number(row, "cpu_seconds") or 0.0),
        peak_rss_bytes=int(_number(row, "peak_rss_bytes", integer=True) or 0),
        recording_seconds=_number(row, "duration_seconds_of_data", optional=True),
        cost=_number(row, "cost", optional=True),
        machine=_text(row, "machine"),
        sample_rate_hz=_number(row, "sample_rate_hz", optional=True),
        device=device.lower().lstrip(".") if device else None,
        machine_cores=_number(row, "machine_cores", optional=True),
        machine_memory_bytes=_number(row, "machine_memory_bytes", optional=True),
        machine_cpu=_text(row, "machine_cpu"),
        workflow_type=_text(row, "workflow_type"),
        steps=_steps(row),
        package=_text(row, "package"),
    )


def parse_history_csv(text: str) -> ParsedHistory:
    """Good rows and bad ones (by line number) of a history CSV; raises HistoryFormatError
    when the header itself is unusable."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise HistoryFormatError("the file is empty; the first line must name the columns")
    for old, new in OLD_NAMES.items():
        if old in header and new not in header:
            header[header.index(old)] = new
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise HistoryFormatError(
            f"line 1: missing column(s) {', '.join(missing)}; "
            f"needed: {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    rows: list[tuple[int, Observation]] = []
    problems: list[RowProblem] = []
    for row in reader:
        line = reader.line_num
        extra = row.get(None)  # DictReader keeps surplus fields under None
        if extra:
            problems.append(RowProblem(line, f"{len(header) + len(extra)} fields, the header names {len(header)}"))
            continue
        if all(not (value or "").strip() for value in row.values()):
            continue  # a blank line is not a row
        try:
            rows.append((line, _observation(row)))
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
    return ParsedHistory(rows, problems)


def format_history_csv(runs: Iterable[Observation]) -> str:
    """`runs` as a history CSV that `parse_history_csv` reads back (every column, in order)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    for run in runs:
        values = {
            **run.__dict__,
            "started_at": run.started_at.isoformat() + "Z",
            "duration_seconds_of_data": run.recording_seconds,
            "steps": ";".join(run.steps),
        }
        writer.writerow(["" if values.get(c) is None else values[c] for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS])
    return buffer.getvalue()
