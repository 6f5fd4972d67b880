"""Vega-Lite specs of the dashboard's charts, with their data inline (vega-embed draws them;
static/app.js finds them by `data-chart`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an identifier: never fetched

# Daily values: at most one tick per day (left alone, Vega puts ticks at half days and
# labels two of them with the same date).
DAY_TICKS = {"tickCount": {"interval": "day", "step": 1}, "format": "%b %d", "formatType": "utc"}

# One colour per file state, as in app.css.
STATE_COLOURS = {
    "SUCCEEDED": "#2e7d32",
    "EXCLUDED": "#7b1fa2",
    "FAILED": "#c62828",
    "RUNNING": "#1565c0",
    "CLAIMED": "#42a5f5",
    "READY": "#90caf9",
    "WAITING": "#f9a825",
    "DISCOVERED": "#bdbdbd",
    "STALE": "#8d6e63",
    "REMOVED": "#616161",
}


def _base(title: str, values: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "title": title,
        "width": "container",
        "height": 240,
        "data": {"values": values},
    }


def cumulative(progress: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """{day, state, files} per day -> running totals per state, every state on every day."""
    days = sorted({row["day"] for row in progress})
    states = sorted({row["state"] for row in progress})
    per_day = {(row["day"], row["state"]): int(row["files"]) for row in progress}
    values: list[dict[str, Any]] = []
    totals = dict.fromkeys(states, 0)
    for day in days:
        for state in states:
            totals[state] += per_day.get((day, state), 0)
            values.append({"day": day, "state": state, "files": totals[state]})
    return values


def progress_chart(progress: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Files that reached SUCCEEDED or FAILED, cumulative per UTC day."""
    values = cumulative(progress)
    states = sorted({v["state"] for v in values})
    spec = _base("Files finished, cumulative per day", values)
    spec["mark"] = {"type": "line", "point": True}
    spec["encoding"] = {
        "x": {
            "field": "day",
            "type": "temporal",
            "title": "day (UTC)",
            "timeUnit": "utcyearmonthdate",
            "axis": DAY_TICKS,
        },
        "y": {"field": "files", "type": "quantitative", "title": "files"},
        "color": {
            "field": "state",
            "type": "nominal",
            "scale": {"domain": states, "range": [STATE_COLOURS.get(s, "#607d8b") for s in states]},
        },
        "tooltip": [{"field": "day"}, {"field": "state"}, {"field": "files"}],
    }
    return spec


def cost_chart(groups: Sequence[dict[str, Any]], by: str, currency: str) -> dict[str, Any]:
    """One bar per group (its cost)."""
    values = [{"group": str(g[by]), "cost": g["cost"], "runs": g["runs"]} for g in groups]
    spec = _base(f"Cost by {by}", values)
    spec["mark"] = {"type": "bar"}
    order: str | dict[str, str] = "ascending" if by == "month" else "-y"
    spec["encoding"] = {
        "x": {"field": "group", "type": "ordinal", "title": by, "sort": order},
        "y": {"field": "cost", "type": "quantitative", "title": f"cost ({currency})"},
        "tooltip": [{"field": "group", "title": by}, {"field": "cost"}, {"field": "runs"}],
    }
    return spec


def biomarker_chart(title: str, unit: str, points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A subject's daily values, one colour per file; each point links to its run's page."""
    spec = _base(title, list(points))
    spec["mark"] = {"type": "line", "point": {"size": 60}, "tooltip": True}
    spec["encoding"] = {
        "x": {"field": "day", "type": "temporal", "title": "day", "timeUnit": "utcyearmonthdate", "axis": DAY_TICKS},
        "y": {"field": "value", "type": "quantitative", "title": unit},
        "color": {"field": "file", "type": "nominal", "title": "file"},
        "href": {"field": "href"},
        "tooltip": [{"field": "day"}, {"field": "value", "title": unit}, {"field": "file"}, {"field": "run_id"}],
    }
    return spec
