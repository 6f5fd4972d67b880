"""Failures explained from the recording itself: what the job found in the samples (or the
file) the failing step was given, whatever SKDH's message said: no valid time, time going
backwards, repeated or unreadable times, gaps the reader could not fill, a missing stream
or column. Each is a pure function of the `Failure`, None when it does not apply.
"""

from __future__ import annotations

import re

from biomarkerflow.plugins.skdh.failure import EXCLUDE, Failure, Recording, plural, rate, span

# Steps that need the device's temperature, and the ones that work without it.
TEMPERATURE_STEPS: frozenset[str] = frozenset({"CtaWearDetection", "DETACH"})


# Facts-based: what the job found in the samples the step was given, whatever SKDH said.


def no_valid_time(failure: Failure) -> str | None:
    rec = failure.recording
    if not rec.samples or rec.before_1971 < rec.samples:
        return None
    if rec.samples > 1 and rec.seconds and rec.seconds * 1000 < rec.samples:
        # Over 1000 samples a second (but not all at one time, as a file without data gives):
        # numbers read as nanoseconds, pandas' default for a number.
        return (
            f"{failure.name}: the recording has no valid time: all {rec.samples:,} of its samples are dated before "
            f"1971, within {span(rec.seconds)} of each other, as when unix seconds are read as nanoseconds: if the "
            f"time column holds unix seconds, set to_datetime_kwargs: {{unit: s}} in the reader's parameters, "
            f"otherwise {EXCLUDE}"
        )
    return (
        f"{failure.name}: the recording has no valid time: all {rec.samples:,} of its samples are dated before 1971, "
        f"as when the device's clock was never set or the file holds no data; copy the file again from the device, "
        f"or {EXCLUDE}"
    )


def time_backwards(failure: Failure) -> str | None:
    rec = failure.recording
    if rec.backwards_at is None:
        return None
    of = f" of {rec.samples:,}" if rec.samples else ""
    by = f" by {span(rec.backwards_seconds)}" if rec.backwards_seconds is not None else ""
    more = f" ({rec.backwards:,} times in all)" if rec.backwards > 1 else ""
    return (
        f"{failure.name}: the recording's time goes backwards at sample {rec.backwards_at:,}{of}{by}{more}: its "
        f"samples are not in time order, which every SKDH step assumes; sort the samples by time, or {EXCLUDE}"
    )


def missing_data(failure: Failure) -> str | None:
    rec = failure.recording
    has = f" (it has {' and '.join(rec.streams)} only)" if rec.streams else ""
    if "accel" in rec.missing:
        return (
            f"{failure.name}: the recording has no acceleration{has}, so this step cannot run: check the reader's "
            f"parameters (for ReadCSV, column_names: accel must name the file's acceleration columns), or {EXCLUDE}"
        )
    needs = failure.message.startswith("Temperature is required") or (
        "temperature" in rec.missing and failure.kind in TEMPERATURE_STEPS
    )
    if not needs:
        return None
    return (
        f"{failure.name}: the recording has no temperature{has}, and this wear detection needs it: use "
        f"AccelThresholdWearDetection instead, or, for ReadCSV, name the file's temperature column in column_names"
    )


def repeated_times(failure: Failure) -> str | None:
    if "Blocks of non-unique timestamps are not all equal size" not in failure.message:
        return None
    rec = failure.recording
    facts = ""
    if rec.samples and rec.distinct_times is not None:
        facts = f" (its {rec.samples:,} samples have {rec.distinct_times:,} different times)"
    unit = ""
    if rec.samples and rec.samples > 1 and rec.seconds is not None and rec.seconds * 1000 < rec.samples:
        # Over 1000 samples a second: numbers read as nanoseconds, pandas' default for a number.
        unit = (
            f"; all of them fall within {span(rec.seconds)}, as when unix seconds are read as nanoseconds: if the "
            f"time column holds unix seconds, set to_datetime_kwargs: {{unit: s}} in the reader's parameters"
        )
    return (
        f"{failure.name}: the file's times repeat in blocks of unequal size{facts}, so the time of each sample cannot "
        f"be worked out{unit}; if rows are duplicated set drop_duplicate_timestamps: true, otherwise {EXCLUDE}"
    )


def _where_gaps(rec: Recording) -> str:
    longest = ""
    if rec.longest_gap_seconds is not None and rec.longest_gap_after is not None:
        of = f" of {rec.samples:,}" if rec.samples else ""
        longest = f" (the longest {span(rec.longest_gap_seconds)}, after sample {rec.longest_gap_after:,}{of})"
    return f"{plural(rec.gaps, 'gap')} in time{longest}"


def time_gaps(failure: Failure) -> str | None:
    rec = failure.recording
    refused = failure.message.startswith("There are data gaps")
    unfilled = "could not broadcast input array" in failure.message and rec.gaps > 0
    if not (refused or unfilled):
        return None
    if refused:
        return (
            f"{failure.name}: the recording has {_where_gaps(rec)}, and the reader refuses gaps (fill_gaps: false, "
            f"gaps_error: raise): set fill_gaps: true to fill them, gaps_error: warn to keep them, or {EXCLUDE}"
        )
    steady = ""
    if rec.sample_rate and rec.mean_rate and abs(rec.mean_rate - rec.sample_rate) > 1e-6 * rec.sample_rate:
        steady = f" (this one's is {rate(rec.sample_rate)} at the start, {rate(rec.mean_rate)} overall)"
    return (
        f"{failure.name}: the recording has {_where_gaps(rec)}, which the reader could not fill: SKDH fills gaps "
        f"only in recordings whose samples come at a steady rate{steady}; split the file at the gap, set "
        f"fill_gaps: false and gaps_error: warn to read it with the gap left in, or {EXCLUDE}"
    )


def missing_column(failure: Failure) -> str | None:
    rec = failure.recording
    if "KeyError" not in failure.error_types or rec.columns is None:
        return None
    wanted = failure.message.strip("'\"")
    if wanted in rec.columns:
        return None
    parameter = "time_col_name" if wanted == rec.time_column else "column_names"
    if all(_is_number(column) for column in rec.columns):
        # The "names" are the first row's values: the file has no header row.
        return (
            f"{failure.name}: the file has no column {wanted!r}: it has no header row (its first row is "
            f"{', '.join(rec.columns)}); set read_csv_kwargs: {{header: null}} and name columns by position "
            f"(0 for the first) in {parameter}, or {EXCLUDE}"
        )
    return (
        f"{failure.name}: the file has no column {wanted!r} (its {len(rec.columns):,} columns are "
        f"{', '.join(rec.columns)}): set {parameter} in the reader's parameters to the file's column, or {EXCLUDE}"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_UNPARSED_TIME = re.compile(r"(Unknown datetime string format|Unknown string format).*?: (?P<value>[^,]*)")


def bad_time_value(failure: Failure) -> str | None:
    return not_a_time(failure) if failure.recording.bad_time is not None else None


def not_a_time(failure: Failure) -> str | None:
    rec = failure.recording
    column = f" ({rec.time_column})" if rec.time_column is not None else ""
    if rec.bad_time is not None:
        row, text = rec.bad_time
        what = f"a value that is not a time in data row {row:,}: {text!r}" if text else f"no time in data row {row:,}"
        return f"{failure.name}: the time column{column} holds {what}; correct or remove that row, or {EXCLUDE}"
    found = _UNPARSED_TIME.search(failure.message)
    if found is None:
        return None
    return (
        f"{failure.name}: the time column{column} holds a value that cannot be read as a time: "
        f"{found['value'].strip()!r}; correct that value, set the reader's to_datetime_kwargs to the file's time "
        f"format, or {EXCLUDE}"
    )
