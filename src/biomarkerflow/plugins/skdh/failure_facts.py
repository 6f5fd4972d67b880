"""What a failing step was given, and the numbers about the recording in it that explain the
failure (`explain.Recording`): gathered from the traceback's frames after the step raised,
so a run that succeeds pays nothing for them."""

from __future__ import annotations

import contextlib
import numbers
import os
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import pandas as pd

from biomarkerflow.plugins.skdh import explain
from biomarkerflow.plugins.skdh import repairs as skdh_repairs


def frames(tb: TracebackType | None) -> list[FrameType]:
    """A traceback's frames, outermost first."""
    found = []
    while tb is not None:
        found.append(tb.tb_frame)
        tb = tb.tb_next
    return found


# What a step is given that says something about the recording (SKDH's keyword names), and
# the reader's locals that say something about the file (ReadCSV's table as it read it).
GIVEN = ("time", "accel", "gyro", "temperature", "fs", "file", "raw")
STREAMS = ("accel", "gyro", "temperature")


def given(steps: list[tuple[Any, Any, str]], exc: BaseException, name: str | None) -> dict[str, Any]:
    """What the step `name` was given (or, for a reader, had read) when it raised.

    Taken from the traceback's frames of the step's own methods, outermost first: a value
    the step names as an argument (None when it was not given) comes before what SKDH's
    wrapper passed on in `kwargs`, so `accel: None` means the step got no acceleration.
    The frames are told by the step's class: SKDH's Pipeline runs a copy of each instance,
    and only the failing step of a class is on the stack.
    """
    instance = next((i for i, _, n in steps if n == name), None)
    if instance is None:
        return {}
    named: dict[str, Any] = {}
    passed: dict[str, Any] = {}
    for frame in frames(exc.__traceback__):
        local = frame.f_locals
        if type(local.get("self")) is not type(instance):
            continue
        for key in GIVEN:
            if key in local and key not in named:
                named[key] = local[key]
        if isinstance(local.get("kwargs"), dict):
            for key in GIVEN:
                passed.setdefault(key, local["kwargs"].get(key))
    given = {**{k: v for k, v in passed.items() if v is not None}, **named}
    if instance is not steps[0][0]:  # the file is the reader's business: later steps get samples
        given.pop("file", None)
        given.pop("raw", None)
    given["instance"] = instance
    return given


def recording_facts(given: dict[str, Any]) -> explain.Recording:
    """The numbers about the recording that explain failures; nothing found: empty.

    Gathered after the step failed, so they cost nothing on a run that succeeds.
    """
    import numpy as np

    from biomarkerflow.plugins.skdh.headers import CWA_BLOCK_BYTES, CWA_HEADER_BYTES
    from biomarkerflow.plugins.skdh.quality import INVALID_BEFORE_UNIX

    facts: dict[str, Any] = {}
    streams = STREAMS
    facts["streams"] = tuple(k for k in streams if given.get(k) is not None)
    facts["missing"] = tuple(k for k in streams if k in given and given[k] is None)
    fs = given.get("fs")
    time = given.get("time")
    if isinstance(time, np.ndarray) and time.ndim == 1 and time.dtype.kind in "iuf" and len(time) > 0:
        time = time.astype(np.float64, copy=False)
        facts["samples"] = len(time)
        facts["before_1971"] = int(np.count_nonzero(time < INVALID_BEFORE_UNIX))
        step = np.diff(time)
        if len(step):
            back = np.flatnonzero(step < 0)
            if len(back):
                first = int(back[0])
                facts.update(backwards=len(back), backwards_at=first + 2, backwards_seconds=float(-step[first]))
            facts["seconds"] = float(np.nanmax(time) - np.nanmin(time))
            facts["repeated"] = repeated = int(np.count_nonzero(step == 0))
            if repeated:
                facts["distinct_times"] = len(np.unique(time))
            ahead = step[:2500][step[:2500] > 0]
            rate = float(fs) if isinstance(fs, numbers.Real) and float(fs) > 0 else None
            if rate is None and len(ahead):
                rate = float(np.median(1 / ahead))  # SKDH's own estimate when no rate is given
            if rate is not None:
                gaps = step > 1.5 / rate  # SKDH's definition of a gap (fill_data_gaps)
                facts["gaps"] = int(np.count_nonzero(gaps))
                if facts["gaps"]:
                    longest = int(np.argmax(step))
                    facts.update(longest_gap_seconds=float(step[longest]), longest_gap_after=longest + 1)
                steady = step[(step > 0) & ~gaps]
                if len(steady):  # the rate between gaps: how steadily the samples come
                    facts["mean_rate"] = float(1 / steady.mean())
                facts["sample_rate"] = rate
    if "sample_rate" not in facts and isinstance(fs, numbers.Real) and float(fs) > 0:
        facts["sample_rate"] = float(fs)
    raw, instance = given.get("raw"), given.get("instance")
    if isinstance(raw, pd.DataFrame):
        facts.update(_table_facts(raw, instance))
    file = given.get("file")
    if isinstance(file, str | os.PathLike) and os.path.isfile(file):
        facts["file_bytes"] = size = os.path.getsize(file)
        if str(file).lower().endswith(".cwa") and size > CWA_HEADER_BYTES:
            with contextlib.suppress(skdh_repairs.Unrepairable, OSError):
                bad = skdh_repairs.file_defects(Path(file)).bad_blocks
                facts.update(
                    blocks=(size - CWA_HEADER_BYTES) // CWA_BLOCK_BYTES, corrupt_blocks=tuple(b + 1 for b in bad)
                )
    return explain.Recording(**facts)


def _table_facts(raw: pd.DataFrame, reader: Any) -> dict[str, Any]:
    """A text file's columns and the first row whose time is missing or not a time."""
    column = getattr(reader, "time_col_name", None)
    facts: dict[str, Any] = {"columns": tuple(str(c) for c in raw.columns)}
    if column is None:
        return facts
    facts["time_column"] = str(column)
    if column not in raw.columns:
        return facts
    values = raw[column]
    if values.dtype.kind in "iufM":  # read as numbers or times: only empty cells can be wrong
        bad = values.isna().to_numpy()
    elif (as_numbers := pd.to_numeric(values, errors="coerce")).notna().any():  # numbers, a few words among them
        bad = as_numbers.isna().to_numpy()
    else:  # times written as text: the ones pandas cannot read
        options = {k: v for k, v in (getattr(reader, "to_datetime_kw", None) or {}).items() if k != "errors"}
        try:
            bad = pd.to_datetime(values, errors="coerce", **options).isna().to_numpy()
        except (ValueError, TypeError):
            return facts
    if bad.any():
        row = int(bad.argmax())
        value = values.iloc[row]
        facts["bad_time"] = (row + 1, "" if pd.isna(value) else str(value))  # "": an empty cell
    return facts
