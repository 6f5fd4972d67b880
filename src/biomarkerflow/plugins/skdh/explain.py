"""SKDH's failures and result-changing warnings, in words a scientist can act on.

SKDH raises and warns in its own terms ("Cannot have a window length larger than the
computation axis", "height not provided, not computing spatial metrics"). These pure
functions turn what a job gathered when SKDH raised or warned — the step, the exception's
type names and message, the step's parameters, the recording's length — into a sentence
that names the step, says what is wrong with the recording or a parameter, and what to do.

They import nothing from SKDH, so they run in any pinned runtime, and the patterns match
the texts of SKDH 0.16.15 and 0.17.18 (the same in both; the tests use the real texts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Failure", "explain", "notices"]

# Steps whose moving window is one of their parameters: (parameter, seconds per unit).
WINDOW_PARAMS: dict[str, tuple[str, float]] = {
    "AccelThresholdWearDetection": ("window_length", 60.0),
    "CtaWearDetection": ("window_length", 60.0),
    "CountWearDetection": ("nonwear_window_min", 60.0),
}
# Subject metadata SKDH computes with: keyword -> what it must be.
NUMERIC_INPUTS: dict[str, str] = {"height": "a number in metres", "leg_length": "a number in metres"}
# Readers whose files are decoded by SKDH's C/Fortran code: a RuntimeError there means a damaged file.
BINARY_READERS: dict[str, str] = {"ReadCwa": "Axivity .cwa", "ReadBin": "GENEActiv .bin"}
# SKDH's texts for damaged .cwa blocks -> what they mean.
_CWA_PROBLEMS: dict[str, str] = {
    "Bad block of timestamps not equal to data block sample size": "a data block's timestamps do not match its samples",
    "Incorrect number of axes given file configuration": "a data block has a number of axes the file does not have",
    "Invalid number of samples in data block": "a data block claims an impossible number of samples",
    "Invalid packing code": "a data block has an unknown sample packing",
}
GAIT_BOUT_EXAMPLES = 3  # a gait study can skip hundreds of bouts: name a few, count the rest


@dataclass(frozen=True)
class Failure:
    """What a job knows when a step raised; everything but the texts is optional."""

    step: str | None  # as named in the pipeline (ReadBin, Sleep, Sleep_1); None when not found
    kind: str | None  # the step's class name (Sleep for Sleep_1)
    error_types: tuple[str, ...]  # the exception's class and its bases, most specific first
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)  # the study's values for the step
    defaults: Mapping[str, Any] = field(default_factory=dict)  # SKDH's defaults for the step
    inputs: Mapping[str, Any] = field(default_factory=dict)  # subject metadata under SKDH names
    subject: str | None = None
    recording_seconds: float | None = None
    # A moving window SKDH refused, and the signal it was to move over (in samples).
    window_samples: int | None = None
    signal_samples: int | None = None

    @property
    def name(self) -> str:
        return self.step or "the pipeline"

    @property
    def error_type(self) -> str:
        return self.error_types[0] if self.error_types else "Exception"


def duration(seconds: float) -> str:
    """45 s, 18 min, 5.5 h, 3.2 days: a recording's length as people say it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _number(value: float) -> str:
    return f"{value:g}"


def _subject(subject: str | None) -> str:
    return f"subject {subject}" if subject else "this file's subject"


# ---- failures ----------------------------------------------------------------------------------


def _window_too_long(failure: Failure) -> str | None:
    if not failure.message.startswith("Cannot have a window length larger than the computation axis"):
        return None
    recording = failure.recording_seconds
    param = WINDOW_PARAMS.get(failure.kind or "")
    if param is not None and recording is not None:
        name, unit_seconds = param
        value = failure.params.get(name, failure.defaults.get(name))
        if isinstance(value, int | float) and value * unit_seconds > recording:
            window_seconds = value * unit_seconds
            fits = max(1, math.floor(recording / unit_seconds - 1e-9))
            unit = "minutes" if unit_seconds == 60.0 else "seconds"
            return (
                f"{failure.name}: the recording ({duration(recording)}) is shorter than the step's "
                f"{_number(value)}-{unit.rstrip('s')} window ({name}): recording too short; use a recording of at "
                f"least {duration(window_seconds)}, or set {name} to {fits} or less ({unit}; results then differ "
                f"from the default)"
            )
    length = f" ({duration(recording)})" if recording is not None else ""
    moving = ""
    if failure.window_samples and failure.signal_samples is not None:
        moving = f": it moves a window of {failure.window_samples} samples over a signal of {failure.signal_samples}"
    return f"{failure.name}: the recording{length} is too short for this step{moving}; use a longer recording"


_DAY_INDICES = re.compile(r"Day indices for \((?P<base>-?\d+), (?P<period>\d+)\) \(base, period\) not found")


def _day_windows_missing(failure: Failure) -> str | None:
    found = _DAY_INDICES.search(failure.message)
    if found is None:
        return None
    base, period = found["base"], found["period"]
    return (
        f"{failure.name}: no day windows starting at {base} h and lasting {period} h were computed before it "
        f"(its day_window is ({base}, {period})): add GetDayWindowIndices before it with base {base} and period "
        f"{period}, e.g. GetDayWindowIndices: {{bases: [0, {base}], periods: [24, {period}]}}, "
        f"or set its day_window to a window that step computes"
    )


def _truncated_bin(failure: Failure) -> str | None:
    if "Data length is shorter than 3600" not in failure.message:
        return None
    return (
        f"{failure.name}: the file is truncated or damaged: a data page has fewer than the 3600 characters "
        f"(300 samples) every GENEActiv page holds, as when a download or copy stopped early; copy the file "
        f"again from the device or its export"
    )


def _damaged_binary(failure: Failure) -> str | None:
    device = BINARY_READERS.get(failure.kind or "")
    if device is None or "RuntimeError" not in failure.error_types:
        return None
    what = next((words for text, words in _CWA_PROBLEMS.items() if text in failure.message), None)
    detail = f"{what} (SKDH: {failure.message})" if what else f"SKDH: {failure.message}"
    return (
        f"{failure.name}: the {device} file has corrupt data blocks and cannot be read: {detail}; copy it again "
        f"from the device, or leave it out of the study (data.exclude)"
    )


def _empty_file(failure: Failure) -> str | None:
    if not failure.message.startswith("File is less than 1kb"):
        return None
    return (
        f"{failure.name}: the file is smaller than 1 kB, so it holds no recording; check that it was copied completely"
    )


_LOW_RATE = re.compile(r"Frequency \((?P<rate>[\d.]+)Hz\) is too low \(<(?P<least>[\d.]+)Hz\)")


def _low_sample_rate(failure: Failure) -> str | None:
    found = _LOW_RATE.search(failure.message)
    if found is None:
        return None
    return (
        f"{failure.name}: the recording is sampled at {found['rate']} Hz, below the {found['least']} Hz this step "
        f"needs: it cannot run on this recording; leave such files out, or record at {found['least']} Hz or more"
    )


def _kind_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _mistyped_param(failure: Failure) -> str | None:
    for name, value in failure.params.items():
        expected = _kind_of(failure.defaults.get(name))
        given = _kind_of(value)
        if expected is not None and given != expected:
            return (
                f"parameter {name} is {value!r} ({given or 'empty'}), but it must be {expected} "
                f"(SKDH's default is {failure.defaults[name]!r}); fix {name} in the study config"
            )
    return None


def _mistyped_input(failure: Failure) -> str | None:
    for name, wanted in NUMERIC_INPUTS.items():
        value = failure.inputs.get(name)
        if value is not None and _kind_of(value) != "a number":
            given = _kind_of(value)
            return (
                f"{_subject(failure.subject)}'s {name} is {value!r} ({given}), but it must be {wanted}; "
                f"fix it in the metadata"
            )
    return None


_UNKNOWN_PARAM = re.compile(r"got an unexpected keyword argument '(?P<param>\w+)'")


def _unknown_param(failure: Failure) -> str | None:
    found = _UNKNOWN_PARAM.search(failure.message)
    if found is None or "TypeError" not in failure.error_types:
        return None
    return (
        f"{failure.name}: it has no parameter {found['param']} in this SKDH version: remove {found['param']} "
        f"from the step in the study config, or correct its name (`biomarkerflow validate` lists the accepted ones)"
    )


def _wrong_type(failure: Failure) -> str | None:
    if "TypeError" not in failure.error_types:
        return None
    culprit = _mistyped_param(failure) or _mistyped_input(failure)
    if culprit is not None:
        return f"{failure.name}: wrong type: {culprit}"
    return (
        f"{failure.name}: wrong type: a value it was given has the wrong type (SKDH: {failure.message}); "
        f"check the step's parameters in the study config and the subject's metadata"
    )


def _out_of_memory(failure: Failure) -> str | None:
    if "MemoryError" not in failure.error_types:
        return None
    length = f" of {duration(failure.recording_seconds)}" if failure.recording_seconds is not None else ""
    return (
        f"{failure.name}: ran out of memory on this recording{length}; it is tried again, but give the jobs "
        f"more memory (fewer workers per machine, or a larger machine) if it keeps failing"
    )


_EXPLAINERS: tuple[Callable[[Failure], str | None], ...] = (
    _out_of_memory,
    _window_too_long,
    _day_windows_missing,
    _truncated_bin,
    _empty_file,
    _low_sample_rate,
    _damaged_binary,
    _unknown_param,
    _wrong_type,
)


def explain(failure: Failure) -> str:
    """One sentence: the step, what is wrong with the recording or a parameter, what to do."""
    for explainer in _EXPLAINERS:
        text = explainer(failure)
        if text is not None:
            return text
    message = failure.message or "(no message)"
    return f"{failure.name} failed: {message} ({failure.error_type})"


# ---- warnings that change results ----------------------------------------------------------------


def _height(found: re.Match[str], subject: str | None) -> str:
    return (
        f"no height for {_subject(subject)}: gait speed, step and stride length are not computed (NaN); "
        f"add height (metres) to the metadata"
    )


def _utc_day_windows(found: re.Match[str], subject: str | None) -> str:
    return (
        f"no time zone for {_subject(subject)}: the file's timestamps are UTC, so day windows are cut at UTC "
        f"midnight and noon, not local ones; add tz_name (an IANA name such as Europe/London) to the metadata"
    )


def _calibration_skipped(found: re.Match[str], subject: str | None) -> str:
    hours = float(found["hours"])
    return (
        f"calibration skipped: the recording ({duration(hours * 3600)}) is shorter than CalibrateAccelerometer's "
        f"min_hours ({found['min']} h), so the accelerations are not calibrated; lower min_hours or use longer "
        f"recordings"
    )


def _calibration_not_applied(found: re.Match[str], subject: str | None) -> str:
    return (
        f"calibration not applied: the first {found['upto']} h of the recording have too few still periods to "
        f"calibrate the accelerometer, so the accelerations are used uncalibrated"
    )


def _wear_assumed(found: re.Match[str], subject: str | None) -> str:
    step = found["step"]
    return (
        f"{step} assumed the device was worn the whole time: no wear-detection step runs before it; "
        f"add one (e.g. AccelThresholdWearDetection) before {step}"
    )


def _no_wear(found: re.Match[str], subject: str | None) -> str:
    return (
        "no wear detected: the wear-detection step found no period in which the device was worn, so results "
        "that need wear time (sleep, activity) are empty or NaN"
    )


def _bad_blocks(found: re.Match[str], subject: str | None) -> str:
    return (
        "the file has corrupt data blocks: the reader kept their samples, so some values and times may be "
        "wrong; copy the file again from the device if you can"
    )


def _cutpoints(found: re.Match[str], subject: str | None) -> str:
    return (
        f"ActivityLevelClassification did not find the cutpoints asked for and used {found['used']} instead; "
        f"set cutpoints to a name SKDH knows"
    )


def _csv_stream(found: re.Match[str], subject: str | None) -> str:
    return (
        f"ReadCSV left out {found['stream']}: its columns {found['columns']} are not in the file; "
        f"fix column_names in the reader's parameters"
    )


# SKDH's own texts (warn(...) calls in skdh/) -> a notice. Other warnings (numpy's, pandas',
# SKDH's informational ones such as "local but naive" timestamps) are not notices.
_NOTICES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str | None], str]], ...] = (
    (re.compile(r"^height not provided, not computing spatial (metrics|endpoints)"), _height),
    (re.compile(r"^Timestamps are not localized, but no time-zone information is available"), _utc_day_windows),
    (
        re.compile(r"^Less than (?P<min>[\d.]+) hours of data \((?P<hours>[-+\d.eE]+) hours\)\. No Calibration"),
        _calibration_skipped,
    ),
    (
        re.compile(r"^Recalibration not done with [\d.]+ - (?P<upto>[\d.]+) hours due to insufficient non-movement"),
        _calibration_not_applied,
    ),
    (re.compile(r"^\[(?P<step>\w+)\] External wear detection not provided\. Assuming 100% wear"), _wear_assumed),
    (re.compile(r"^No wear periods detected"), _no_wear),
    (re.compile(r"^Bad data blocks present"), _bad_blocks),
    (re.compile(r"^Specified cutpoints not found, or cutpoints undefined\. Using `(?P<used>\w+)`"), _cutpoints),
    (
        re.compile(r"^Data stream (?P<stream>\S+) specified in column names but all columns (?P<columns>.+?) not f"),
        _csv_stream,
    ),
)
_GAIT_BOUT = re.compile(r"^Caught error processing bout no\. (?P<bout>\d+): (?P<error>.*)", re.DOTALL)


def notice(message: str, subject: str | None = None) -> str | None:
    """The notice for one of SKDH's warning texts, None when it does not change results."""
    for pattern, words in _NOTICES:
        found = pattern.search(message)
        if found is not None:
            return words(found, subject)
    return None


def _skipped_bouts(bouts: list[tuple[str, str]]) -> str:
    shown = "; ".join(f"bout {bout}: {error}" for bout, error in bouts[:GAIT_BOUT_EXAMPLES])
    more = f"; and {len(bouts) - GAIT_BOUT_EXAMPLES} more" if len(bouts) > GAIT_BOUT_EXAMPLES else ""
    noun = "bout" if len(bouts) == 1 else "bouts"
    return (
        f"GaitLumbar skipped {len(bouts)} gait {noun} after an error in it ({shown}{more}); "
        f"their strides are missing from the results"
    )


def notices(messages: Iterable[str], subject: str | None = None) -> tuple[str, ...]:
    """The notices for SKDH's warnings of one run, each once, in the order first seen.

    `messages` must be SKDH's own warnings (the caller filters by where they were raised).
    """
    found: dict[str, None] = {}
    bouts: list[tuple[str, str]] = []
    for message in messages:
        bout = _GAIT_BOUT.search(message)
        if bout is not None:
            bouts.append((bout["bout"], bout["error"].strip().splitlines()[0] if bout["error"].strip() else "?"))
            continue
        text = notice(message, subject)
        if text is not None:
            found.setdefault(text, None)
    if bouts:
        found.setdefault(_skipped_bouts(bouts), None)
    return tuple(found)
