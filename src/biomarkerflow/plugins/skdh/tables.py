"""SKDH's result dictionaries -> tidy tables, without changing a single value.

Column names stay SKDH's own (e.g. `total sleep time`, `wake MVPA 5s epoch [min]`), so a
number in our tables can be found in SKDH's documentation and compared with SKDH's output.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

# Result table per SKDH step; other steps get their snake_case name.
TABLE_FOR_STEP: dict[str, str] = {
    "AccelThresholdWearDetection": "wear",
    "CtaWearDetection": "wear",
    "DETACH": "wear",
    "CountWearDetection": "wear",
    "Sleep": "sleep",
    "ActivityLevelClassification": "activity",
    "StaudenmayerClassification": "activity",
    "GaitLumbar": "gait",
    "Sit2Stand": "sit2stand",
}

# Result keys that are sample-index bouts (start, stop); turned into timed bouts.
BOUT_KEYS = {"wear": "wear"}
# Values SKDH passes between steps (the signal itself, day indices): inputs to later
# steps, not results. CalibrateAccelerometer, e.g., returns the whole corrected signal.
INTERMEDIATE_KEYS = {
    "day_ends",
    "accel",
    "time",
    "gyro",
    "magnet",
    "temperature",
    "light",
    "fs",
    "file",
    "tz_name",
    "idle_sleep",  # ReadGt3x's mark of samples the device did not measure
}


def table_name(step_name: str) -> str:
    if step_name in TABLE_FOR_STEP:
        return TABLE_FOR_STEP[step_name]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", step_name).lower()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def _column(values: Any) -> Any:
    """A column pyarrow can store: numbers stay numbers; mixed text/NaN becomes text/None."""
    array = np.asarray(values)
    if array.dtype.kind in "iufbM":
        return array
    items = list(values)
    if all(_is_missing(v) or isinstance(v, int | float | np.integer | np.floating) for v in items):
        return np.array([np.nan if _is_missing(v) else float(v) for v in items], dtype=float)
    return [None if _is_missing(v) else str(v) for v in items]


def utc_times(unix: Any) -> pd.DatetimeIndex:
    """Unix seconds as UTC timestamps in microseconds, whatever pandas would infer: every run's
    table then has one column type (TIMESTAMPTZ in queries), whichever zone its subject is in,
    and the study's consolidated table keeps it."""
    microseconds = np.round(np.asarray(unix, dtype=np.float64) * 1e6).astype("int64")
    return pd.DatetimeIndex(microseconds.astype("datetime64[us]")).tz_localize("UTC")


def local_times(utc: pd.DatetimeIndex, tz_name: str | None) -> pd.DatetimeIndex:
    """The subject's wall-clock times (naive); without a zone, the device's clock as read."""
    return (utc.tz_convert(tz_name) if tz_name else utc).tz_localize(None)


def bouts_table(index_pairs: np.ndarray, time: np.ndarray, tz_name: str | None) -> pd.DataFrame:
    """Sample-index bouts -> start/end times (UTC, and the subject's wall clock) and durations."""
    pairs = np.asarray(index_pairs, dtype=np.int64).reshape(-1, 2)
    last = len(time) - 1
    start_unix = time[np.clip(pairs[:, 0], 0, last)]
    end_unix = time[np.clip(pairs[:, 1], 0, last)]
    start, end = utc_times(start_unix), utc_times(end_unix)
    return pd.DataFrame(
        {
            "bout": np.arange(1, len(pairs) + 1),
            "start": start,
            "end": end,
            "time_zone": pd.Series([tz_name] * len(pairs), dtype=object),
            "start_local": local_times(start, tz_name),
            "end_local": local_times(end, tz_name),
            "start_unix": start_unix,
            "end_unix": end_unix,
            "duration_minutes": (end_unix - start_unix) / 60.0,
            "start_index": pairs[:, 0],
            "end_index": pairs[:, 1],
        }
    )


def step_tables(
    step_name: str, result: dict[str, Any], time: np.ndarray, tz_name: str | None
) -> dict[str, pd.DataFrame]:
    """One step's result dict -> named tables (usually one)."""
    base = table_name(step_name)
    tables: dict[str, pd.DataFrame] = {}
    by_length: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in result.items():
        if key in INTERMEDIATE_KEYS:
            continue
        if key in BOUT_KEYS and isinstance(value, np.ndarray) and value.ndim == 2:
            tables[base if len(result) == 1 else f"{base}_{BOUT_KEYS[key]}"] = bouts_table(value, time, tz_name)
            continue
        if isinstance(value, dict):
            for sub, table in step_tables(step_name, value, time, tz_name).items():
                tables[f"{sub}_{key}"] = table
            continue
        array = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if array.ndim == 2 and array.shape[0] == 1:  # e.g. calibration's (1, 3) temperature scale
            array = value = array[0]
        if array.ndim == 0:
            by_length[1][key] = [value]
        elif array.ndim == 1:
            by_length[len(array)][key] = value
        else:  # 2-D arrays: one column per component, SKDH has no names for them
            for j in range(array.shape[1]):
                by_length[array.shape[0]][f"{key}[{j}]"] = array[:, j]
    # Columns of equal length form one table; stray lengths get their own, never dropped.
    if by_length:
        main_length = max(by_length, key=lambda n: (len(by_length[n]), n))
        for length, columns in by_length.items():
            frame = pd.DataFrame({k: _column(v) for k, v in columns.items()})
            name = base if length == main_length else f"{base}_{'_'.join(sorted(columns))[:40]}"
            tables[re.sub(r"[^a-z0-9_]+", "_", name.lower())] = frame
    return tables
