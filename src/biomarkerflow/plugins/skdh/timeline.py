"""A subject's timeline: what the pipeline found, as events on one UTC time axis, and the
recording's streams on one per-minute grid (for the activity plot and the report).

`events` is one table per run (consolidated per study like every table): one row per
bout, with `event` one of

- `wear` / `nonwear`: the wear step's bouts (SKDH's sample-index pairs, as the `wear` table
  gives them) and the time between them, from the recording's first sample to its last;
- `sleep`: the Sleep step's total sleep opportunity of each night it analysed (SKDH's
  `TSO Start Timestamp`, lasting `TSO Duration` minutes: the period in bed, as GGIR's SPT
  window), `detail` its total sleep time;
- `activity`: bouts by level (`detail`: sedentary, light, moderate, vigorous). SKDH's
  ActivityLevelClassification reports minutes per level per day, not bouts, so bouts are
  derived here, with SKDH's own metric and thresholds: each clock minute of the UTC grid
  gets the mean of the metric the study's `cutpoints` name (ENMO, max(|a| - 1 g, 0), of the
  acceleration the step saw, calibrated when the pipeline calibrates; or |(|a| - 1 g)| for
  cutpoints that take it absolute), classified with `get_level_thresholds` (lower <= value
  < upper, as SKDH counts its epochs); a minute counts when its middle lies in wear time
  (all of it without a wear step) and outside the sleep periods (when the pipeline has
  Sleep), as SKDH counts waking wear time; a bout is a run of consecutive counted minutes
  at one level, clipped to the recording. SKDH classifies 5 s epochs and this 1 min
  means, so a day's minutes per level differ from SKDH's where a minute mixes levels (a
  walk's first and last minute), and SKDH leaves out whole days with less wear than
  `min_wear_time` where the timeline keeps them. Cutpoints on another metric (MAD, BFEN,
  METs) give no activity events;
- `gait`: GaitLumbar's bouts (`Bout Starts`, `Bout Duration`), `detail` its steps;
- `gap`: a step between samples longer than two sample periods (as the quality report
  counts gaps), from the sample period after the last sample to the next one;
- `repair`: what was repaired on reading (the quality report's `repairs`), a moment at the
  recording's first sample: a repair concerns the file, not a time of day.

Times: `start` and `end` are UTC (timezone-aware), so the column has one type across
subjects in different zones; `start_local` is the naive wall-clock time in the subject's
`time_zone`, for questions such as "during nights". Without a time zone SKDH's readers give
the device's own clock: it is read as UTC and `time_zone` is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from biomarkerflow.plugins.skdh import tables as skdh_tables
from biomarkerflow.plugins.skdh.quality import GAP_PERIODS, INVALID_BEFORE_UNIX

MINUTE_SECONDS = 60
CHUNK_SAMPLES = 1 << 18  # a chunk's temporaries stay in the CPU's cache: 2x faster than whole arrays
LEVELS = ("sedentary", "light", "moderate", "vigorous")
EVENT_COLUMNS = ("event", "detail", "start", "end", "duration_seconds", "time_zone", "start_local", "source")
# Streams a reader may give besides acceleration, and their column in the grid.
STREAMS = {"temperature": "temperature_c", "light": "light"}
WEAR_STEP_TABLE = "wear"


class StepsPlan(Protocol):
    """What the timeline reads of a job plan (`workflow.JobPlan`): its steps, each with a
    `name` and `params` (a protocol, so the workflow can import this module and not back)."""

    @property
    def steps(self) -> Sequence[Any]: ...


# ---- the per-minute grid ----------------------------------------------------------------------


def minute_grid(data: Mapping[str, Any]) -> pd.DataFrame:
    """One row per clock minute of the recording on the UTC axis.

    Columns: `minute_unix` (the minute's start, unix seconds), `minute` (the same, UTC
    timestamp), `samples` (acceleration samples in it: 0 in a gap), `enmo_g` (mean ENMO,
    max(|a| - 1 g, 0); NaN without samples), and `temperature_c` / `light` (their mean)
    when the reader gave them. A stream as long as `time` shares its timestamps; another
    (its own rate) uses `<name>_time` when the reader gave one, else is spread evenly over
    the recording's span: each is binned into the same minutes by its own times.
    """
    time = np.asarray(data["time"], dtype=np.float64)
    span = _valid_span(time)
    if span is None:
        return _empty_grid()
    origin = np.floor(span[0] / MINUTE_SECONDS) * MINUTE_SECONDS
    minutes = int((span[1] - origin) // MINUTE_SECONDS) + 1
    accel = np.asarray(data["accel"])
    sums, counts = _binned(time, lambda first, last: _enmo(accel[first:last]), origin, minutes)
    grid: dict[str, Any] = {
        "minute_unix": (origin + MINUTE_SECONDS * np.arange(minutes)).astype(np.int64),
        "samples": counts.astype(np.int64),
        "enmo_g": _means(sums, counts),
    }
    grid["minute"] = skdh_tables.utc_times(grid["minute_unix"])
    for key, column in STREAMS.items():
        values = data.get(key)
        if values is None or np.ndim(values) != 1 or len(values) == 0:
            continue
        stream = np.asarray(values, dtype=np.float64)
        stream_time = _stream_time(data, key, len(stream), time, span)
        stream_sums, stream_counts = _binned(stream_time, _slicer(stream), origin, minutes)
        grid[column] = _means(stream_sums, stream_counts)
    order = ["minute_unix", "minute", "samples", "enmo_g", *(c for c in STREAMS.values() if c in grid)]
    return pd.DataFrame({name: grid[name] for name in order})


def _empty_grid() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "minute_unix": np.empty(0, np.int64),
            "minute": skdh_tables.utc_times(np.empty(0, np.int64)),
            "samples": np.empty(0, np.int64),
            "enmo_g": np.empty(0),
        }
    )


def _valid_span(time: np.ndarray) -> tuple[float, float] | None:
    """(first, last) valid time: after 1970 and finite; None without any."""
    if not len(time):
        return None
    first, last = float(time[0]), float(time[-1])
    if first >= INVALID_BEFORE_UNIX and np.isfinite(first) and np.isfinite(last) and last >= first:
        # The usual recording runs forward: its ends are its span, without a pass over it.
        return first, last
    valid = time[np.isfinite(time) & (time >= INVALID_BEFORE_UNIX)]
    return (float(valid.min()), float(valid.max())) if len(valid) else None


def _stream_time(
    data: Mapping[str, Any], key: str, length: int, time: np.ndarray, span: tuple[float, float]
) -> np.ndarray:
    if length == len(time):
        return time
    own = data.get(f"{key}_time")
    if own is not None and len(own) == length:
        return np.asarray(own, dtype=np.float64)
    # A stream at its own rate without its own times covers the recording, evenly spaced.
    return np.linspace(span[0], span[1], length)


def _slicer(values: np.ndarray) -> Callable[[int, int], np.ndarray]:
    return lambda first, last: values[first:last]


def _enmo(accel: np.ndarray, take_abs: bool = False, trim_zero: bool = True) -> np.ndarray:
    """SKDH's `metric_enmo` per sample: |a| - 1 g, absolute and/or floored at 0 as asked."""
    values = np.sqrt(np.einsum("ij,ij->i", accel, accel))
    values -= 1.0
    if take_abs:
        np.abs(values, out=values)
    if trim_zero:
        np.maximum(values, 0.0, out=values)
    return values


def _means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _binned(
    time: np.ndarray, values_of: Callable[[int, int], np.ndarray], origin: float, minutes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of finite values per minute from `origin`, a chunk of samples at a time.

    `values_of(first, last)` gives the values of samples first..last-1 (computed per chunk,
    so no array the recording's length is made). A chunk whose times run forward is summed
    minute by minute with `np.add.reduceat` at the minute edges; any other (times going
    back, invalid times, missing values) by minute index with `np.bincount`.
    """
    sums = np.zeros(minutes)
    counts = np.zeros(minutes, dtype=np.int64)
    for first in range(0, len(time), CHUNK_SAMPLES):
        last = min(first + CHUNK_SAMPLES, len(time))
        chunk_time = time[first:last]
        values = values_of(first, last)
        forward = bool(np.all(chunk_time[1:] >= chunk_time[:-1]))
        if forward and np.isfinite(values).all() and chunk_time[0] >= origin:
            _add_forward(chunk_time, values, origin, sums, counts)
            continue
        keep = np.isfinite(values) & np.isfinite(chunk_time) & (chunk_time >= origin)
        index = ((chunk_time[keep] - origin) // MINUTE_SECONDS).astype(np.intp)
        inside = index < minutes
        sums += np.bincount(index[inside], weights=values[keep][inside], minlength=minutes)
        counts += np.bincount(index[inside], minlength=minutes)
    return sums, counts


def _add_forward(time: np.ndarray, values: np.ndarray, origin: float, sums: np.ndarray, counts: np.ndarray) -> None:
    low = int((time[0] - origin) // MINUTE_SECONDS)
    high = min(int((time[-1] - origin) // MINUTE_SECONDS), len(sums) - 1)
    if high < low:
        return
    edges = np.searchsorted(time, origin + MINUTE_SECONDS * np.arange(low, high + 2, dtype=np.float64))
    per_minute = np.diff(edges)
    filled = np.flatnonzero(per_minute)
    if not len(filled):
        return
    # reduceat sums from each start to the next; empty minutes have no start between them.
    part = values[edges[0] : edges[-1]]
    sums[low + filled] += np.add.reduceat(part, edges[filled] - edges[0])
    counts[low + filled] += per_minute[filled]


# ---- events -----------------------------------------------------------------------------------


def events(
    data: Mapping[str, Any],
    results: Mapping[str, Any],
    job_plan: StepsPlan,
    names: Sequence[str],
    tz_name: str | None,
    repairs: Sequence[str],
    quality_row: pd.DataFrame | None,
    *,
    grid: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The run's `events` table (see the module's docstring); events only for the steps the
    pipeline has. `grid` is `minute_grid` of the acceleration the steps saw (made here from
    `data` when not given)."""
    time = np.asarray(data["time"], dtype=np.float64)
    span = _valid_span(time)
    if span is None:
        return _frame([], tz_name)
    rows: list[tuple[str, str | None, float, float, str]] = []
    wear: np.ndarray | None = None
    sleep: np.ndarray | None = None
    for step, name in zip(job_plan.steps, names, strict=True):
        result = results.get(name) or {}
        if skdh_tables.table_name(step.name) == WEAR_STEP_TABLE and result.get("wear") is not None:
            wear = _index_bouts(result["wear"], time)
            rows += _wear_rows(wear, span, name)
        elif step.name == "Sleep" and result:
            sleep, sleep_rows = _sleep(result, name)
            rows += sleep_rows
        elif step.name == "GaitLumbar" and result:
            rows += _gait_rows(result, name)
    for step, name in zip(job_plan.steps, names, strict=True):
        if step.name == "ActivityLevelClassification":
            minutes = grid if grid is not None else minute_grid(data)
            rows += _activity_rows(data, minutes, step.params, wear, sleep, span, name)
    rows += _gap_rows(time, data.get("fs"), quality_row)
    rows += [("repair", text, span[0], span[0], "quality") for text in repairs]
    return _frame(rows, tz_name)


def _frame(rows: list[tuple[str, str | None, float, float, str]], tz_name: str | None) -> pd.DataFrame:
    rows = sorted(rows, key=lambda row: (row[2], row[3], row[0]))
    start_unix = np.array([row[2] for row in rows], dtype=np.float64)
    end_unix = np.array([row[3] for row in rows], dtype=np.float64)
    start = skdh_tables.utc_times(start_unix)
    return pd.DataFrame(
        {
            "event": [row[0] for row in rows],
            "detail": pd.Series([row[1] for row in rows], dtype=object),
            "start": start,
            "end": skdh_tables.utc_times(end_unix),
            "duration_seconds": end_unix - start_unix,
            "time_zone": pd.Series([tz_name] * len(rows), dtype=object),
            "start_local": skdh_tables.local_times(start, tz_name),
            "source": [row[4] for row in rows],
        },
        columns=list(EVENT_COLUMNS),
    )


def _index_bouts(pairs: Any, time: np.ndarray) -> np.ndarray:
    """SKDH's sample-index bouts as (start, end) unix seconds, as the `wear` table gives them."""
    bouts = skdh_tables.bouts_table(np.asarray(pairs), time, None)
    return np.column_stack([bouts["start_unix"].to_numpy(), bouts["end_unix"].to_numpy()]).reshape(-1, 2)


def _wear_rows(wear: np.ndarray, span: tuple[float, float], source: str) -> list[Any]:
    rows: list[Any] = [("wear", None, float(s), float(e), source) for s, e in wear]
    # Non-wear: the recording outside the wear bouts, from its first sample to its last.
    edges = np.concatenate(([span[0]], wear.reshape(-1), [span[1]])).reshape(-1, 2)
    rows += [("nonwear", None, float(s), float(e), source) for s, e in edges if e > s]
    return rows


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _sleep(result: Mapping[str, Any], source: str) -> tuple[np.ndarray, list[Any]]:
    """Sleep periods (start, end unix) and their rows: each night's total sleep opportunity."""
    starts = result.get("TSO Start Timestamp")
    durations = result.get("TSO Duration")  # minutes
    slept = result.get("total sleep time")
    if starts is None or durations is None:
        return np.empty((0, 2)), []
    periods, rows = [], []
    for index, (start, minutes) in enumerate(zip(starts, durations, strict=True)):
        begin, length = _number(start), _number(minutes)
        if begin is None or length is None:
            continue  # a day Sleep skipped (too short, too little wear): no period
        total = _number(slept[index]) if slept is not None else None
        detail = f"total sleep time {total:.0f} min" if total is not None else None
        periods.append((begin, begin + 60.0 * length))
        rows.append(("sleep", detail, begin, begin + 60.0 * length, source))
    return np.array(periods, dtype=np.float64).reshape(-1, 2), rows


def _gait_rows(result: Mapping[str, Any], source: str) -> list[Any]:
    """One row per gait bout: GaitLumbar repeats a bout's start and duration on each stride."""
    starts = np.asarray(result.get("Bout Starts", []), dtype=np.float64)
    durations = np.asarray(result.get("Bout Duration", []), dtype=np.float64)
    steps = np.asarray(result.get("Bout Steps", np.full(len(starts), np.nan)), dtype=np.float64)
    if not len(starts) or len(durations) != len(starts):
        return []
    _, first = np.unique(starts, return_index=True)
    return [
        (
            "gait",
            f"{steps[i]:.0f} steps" if np.isfinite(steps[i]) else None,
            starts[i],
            starts[i] + durations[i],
            source,
        )
        for i in sorted(first)
    ]


def cutpoint_levels(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, float, float]]] | None:
    """The study's cutpoints as SKDH resolves them (its metric's keyword arguments) and each
    level's [lower, upper) thresholds; None for cutpoints on a metric other than ENMO."""
    from skdh.activity.cutpoints import get_level_thresholds
    from skdh.activity.utility import handle_cutpoints

    cutpoints = handle_cutpoints(params.get("cutpoints", "migueles_wrist_adult"))
    if cutpoints.get("metric") != "metric_enmo":
        return None
    levels = []
    for level in LEVELS:
        lower, upper = get_level_thresholds(level, cutpoints)
        levels.append((level, float(lower), float(upper)))
    return dict(cutpoints.get("kwargs") or {}), levels


def _activity_rows(
    data: Mapping[str, Any],
    grid: pd.DataFrame,
    params: Mapping[str, Any],
    wear: np.ndarray | None,
    sleep: np.ndarray | None,
    span: tuple[float, float],
    source: str,
) -> list[Any]:
    resolved = cutpoint_levels(params)
    if resolved is None or grid.empty:
        return []
    kwargs, levels = resolved
    take_abs, trim_zero = bool(kwargs.get("take_abs", False)), bool(kwargs.get("trim_zero", True))
    minute_unix = grid["minute_unix"].to_numpy(dtype=np.float64)
    if not take_abs and trim_zero:
        metric = grid["enmo_g"].to_numpy()  # the grid's own ENMO is this metric
    else:  # the cutpoints' variant of ENMO, binned the same way
        time, accel = np.asarray(data["time"], dtype=np.float64), np.asarray(data["accel"])
        sums, counts = _binned(
            time, lambda a, b: _enmo(accel[a:b], take_abs, trim_zero), minute_unix[0], len(minute_unix)
        )
        metric = _means(sums, counts)
    middles = minute_unix + MINUTE_SECONDS / 2
    counted = np.isfinite(metric)
    if wear is not None:
        counted &= _covered(middles, wear)
    if sleep is not None and len(sleep):
        counted &= ~_covered(middles, sleep)
    codes = np.full(len(metric), -1, dtype=np.int8)
    for code, (_, lower, upper) in enumerate(levels):
        codes[counted & (metric >= lower) & (metric < upper)] = code
    # Runs of one code: a bout per run of a level.
    breaks = np.flatnonzero(np.diff(codes)) + 1
    run_starts = np.concatenate(([0], breaks))
    run_ends = np.concatenate((breaks, [len(codes)]))
    rows = []
    for first, last in zip(run_starts, run_ends, strict=True):
        code = int(codes[first])
        if code < 0:
            continue
        start = max(float(minute_unix[first]), span[0])
        end = min(float(minute_unix[last - 1]) + MINUTE_SECONDS, span[1])
        if end > start:
            rows.append(("activity", levels[code][0], start, end, source))
    return rows


def _covered(moments: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Whether each moment lies in one of the [start, end) intervals (overlaps allowed)."""
    if not len(intervals):
        return np.zeros(len(moments), bool)
    ordered = intervals[np.argsort(intervals[:, 0])]
    # The furthest end reached by any interval starting at or before each start.
    reach = np.maximum.accumulate(ordered[:, 1])
    at = np.searchsorted(ordered[:, 0], moments, side="right") - 1
    return (at >= 0) & (moments < reach[np.maximum(at, 0)])


def _gap_rows(time: np.ndarray, fs: Any, quality_row: pd.DataFrame | None) -> list[Any]:
    """Gaps as the quality report counts them: steps longer than GAP_PERIODS sample periods."""
    if quality_row is not None and "gaps" in quality_row and not quality_row["gaps"].fillna(0).any():
        return []  # the report found none: no pass over the time axis
    rate = _number(fs) or 0.0
    period = 1.0 / rate if rate > 0 else None
    rows: list[Any] = []
    for first in range(0, len(time) - 1, CHUNK_SAMPLES):
        chunk = time[first : first + CHUNK_SAMPLES + 1]  # one sample of overlap: every step once
        steps = np.diff(chunk)
        if period is None:
            period = float(np.median(steps)) if len(steps) else 0.0
        for at in np.flatnonzero(steps > GAP_PERIODS * period):
            if chunk[at] < INVALID_BEFORE_UNIX:
                continue
            start, end = float(chunk[at]) + period, float(chunk[at + 1])
            rows.append(("gap", f"{end - start:.1f} s without samples", start, end, "quality"))
    return rows
