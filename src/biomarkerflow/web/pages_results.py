"""A subject's results: daily biomarker charts across all their files (wear hours, sleep
minutes, MVPA minutes, gait speed, where the study's consolidated tables have them), each
point linking to its run; tables the dashboard does not know are shown as rows instead."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from biomarkerflow.errors import NotFoundError
from biomarkerflow.results.query import quoted
from biomarkerflow.service import Platform
from biomarkerflow.web.charts import biomarker_chart
from biomarkerflow.web.render import PageRoute, render, segment
from biomarkerflow.web.session import SignedIn, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KEYS = ("study", "subject", "file", "run_id")  # every consolidated table starts with these
GENERIC_ROWS = 200  # rows shown per table the dashboard has no chart for


@dataclass(frozen=True)
class Biomarker:
    """A daily value from one table: `select(columns)` is its SQL expression per (day, file,
    run), or None when the table lacks what it needs."""

    key: str
    title: str
    unit: str
    table: str
    select: Callable[[list[str]], tuple[str, str] | None]  # columns -> (day expression, value expression)


def _column(columns: list[str], *patterns: str) -> str | None:
    """The first column matching one of `patterns` (tried in order, any case)."""
    for pattern in patterns:
        for column in columns:
            if re.fullmatch(pattern, column, re.IGNORECASE):
                return column
    return None


def _per_date(*patterns: str, aggregate: str = "AVG") -> Callable[[list[str]], tuple[str, str] | None]:
    def select(columns: list[str]) -> tuple[str, str] | None:
        value = _column(columns, *patterns)
        if value is None or "Date" not in columns:
            return None
        return f"CAST({quoted('Date')} AS VARCHAR)", f"{aggregate}({quoted(value)})"

    return select


def _wear_bouts(columns: list[str]) -> tuple[str, str] | None:
    """Wear bouts (start, duration_minutes) summed on the day they start."""
    if "start" not in columns or "duration_minutes" not in columns:
        return None
    return "CAST(CAST(start AS DATE) AS VARCHAR)", "SUM(duration_minutes) / 60.0"


# SKDH's tables and column names (README "Results"); the first that a study has per key is shown.
BIOMARKERS = (
    Biomarker("wear", "Wear hours per day", "hours", "activity", _per_date(r"N wear hours")),
    Biomarker("wear", "Wear hours per day (bouts, by start day)", "hours", "wear", _wear_bouts),
    Biomarker("sleep", "Sleep minutes per night", "minutes", "sleep", _per_date(r"total sleep time")),
    Biomarker(
        "mvpa", "MVPA minutes per day", "minutes", "activity", _per_date(r"wake MVPA .*\[min\]", r".*MVPA.*\[min\]")
    ),
    Biomarker("gait", "Gait speed per day (mean of strides)", "m/s", "gait", _per_date(r"gait speed")),
)


def _text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _chosen(tables: dict[str, list[str]]) -> list[tuple[Biomarker, str, str]]:
    """(biomarker, day expression, value expression) for each biomarker the tables have."""
    chosen: list[tuple[Biomarker, str, str]] = []
    shown: set[str] = set()
    for biomarker in BIOMARKERS:
        columns = tables.get(biomarker.table)
        if biomarker.key in shown or not columns or not set(KEYS) <= set(columns):
            continue
        expressions = biomarker.select(columns)
        if expressions is not None:
            chosen.append((biomarker, *expressions))
            shown.add(biomarker.key)
    return chosen


def biomarker_points(
    platform: Platform, study: str, subject: str, chosen: list[tuple[Biomarker, str, str]]
) -> dict[str, list[dict[str, Any]]]:
    """Each chosen biomarker's daily points for `subject`, by key (one query for all)."""
    if not chosen:
        return {}
    parts = [
        f"SELECT {_text(b.key)} AS biomarker, {day} AS day, file, run_id, CAST({value} AS DOUBLE) AS value "
        f"FROM {quoted(b.table)} WHERE subject = {_text(subject)} GROUP BY 2, 3, 4"
        for b, day, value in chosen
    ]
    answer = platform.sql(study, " UNION ALL ".join(parts) + " ORDER BY 2, 3")
    points: dict[str, list[dict[str, Any]]] = {b.key: [] for b, _, _ in chosen}
    for key, day, file, run_id, value in answer.rows:
        if day and value is not None:
            href = f"/runs/{segment(run_id)}"
            points[key].append({"day": str(day)[:10], "value": value, "file": file, "run_id": run_id, "href": href})
    return points


def generic_tables(
    platform: Platform, study: str, subject: str, tables: dict[str, list[str]], skip: set[str]
) -> list[dict[str, Any]]:
    """The subject's rows of every table without a chart (up to GENERIC_ROWS each)."""
    shown = []
    for table, columns in sorted(tables.items()):
        if table in skip or "subject" not in columns:
            continue
        order = ", ".join(quoted(c) for c in ("file", "run_id") if c in columns) or "1"
        answer = platform.sql(
            study,
            f"SELECT * FROM {quoted(table)} WHERE subject = {_text(subject)} ORDER BY {order} LIMIT {GENERIC_ROWS}",
            max_rows=GENERIC_ROWS,
        )
        shown.append({"table": table, "columns": answer.columns, "rows": answer.rows, "truncated": answer.truncated})
    return shown


@router.get("/studies/{study}/subjects/{subject}")
def subject_page(request: Request, viewer: SignedIn, study: str, subject: str) -> Response:
    platform = platform_of(request)
    known = {row["subject"]: row["counts"] for row in platform.subjects(study)}
    if subject not in known:
        raise NotFoundError(f"study '{study}' has no subject '{subject}'", hint="Its subjects are listed on its page.")
    tables = platform.tables(study)
    chosen = _chosen(tables)
    points = biomarker_points(platform, study, subject, chosen)
    charts = [
        {
            "id": f"chart-{b.key}",
            "title": b.title,
            "unit": b.unit,
            "points": points[b.key],
            "spec": biomarker_chart(b.title, b.unit, points[b.key]),
        }
        for b, _, _ in chosen
    ]
    skip = {b.table for b, _, _ in chosen}
    return render(
        request,
        "subject.html",
        study=study,
        subject=subject,
        counts=known[subject],
        charts=charts,
        tables=generic_tables(platform, study, subject, tables, skip),
    )
