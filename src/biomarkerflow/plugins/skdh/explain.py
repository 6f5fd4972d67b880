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
from collections.abc import Callable
from typing import Any

from biomarkerflow.plugins.skdh.explain_recording import (
    bad_time_value,
    missing_column,
    missing_data,
    no_valid_time,
    not_a_time,
    repeated_times,
    time_backwards,
    time_gaps,
)
from biomarkerflow.plugins.skdh.failure import (
    EXCLUDE,
    TRACEBACK_PLACES,
    Failure,
    Recording,
    duration,
    number,
    plural,
    rate,
    subject_words,
)
from biomarkerflow.plugins.skdh.notices import notice, notices

__all__ = ["EXCLUDE", "TRACEBACK_PLACES", "Failure", "Recording", "duration", "explain", "notice", "notices"]

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
            fits = math.floor(recording / unit_seconds - 1e-9)
            unit = "minutes" if unit_seconds == 60.0 else "seconds"
            if fits < 1:
                # No shorter window helps: suggesting "set it to 1" would only fail again.
                return (
                    f"{failure.name}: the recording is {duration(recording)} long; this step needs at least "
                    f"{duration(window_seconds)} ({name} {number(value)} {unit}), and even its shortest window "
                    f"(1 {unit.rstrip('s')}) is longer than the recording: {EXCLUDE}, or use a longer recording"
                )
            return (
                f"{failure.name}: the recording ({duration(recording)}) is shorter than the step's "
                f"{number(value)}-{unit.rstrip('s')} window ({name}): recording too short; use a recording of at "
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
    corrupt, blocks = failure.recording.corrupt_blocks, failure.recording.blocks
    if corrupt and blocks:
        # The count says whether a copy is worth fetching (one bad block) or the file is lost.
        which = (
            f"block {corrupt[0]:,} of {blocks:,} is"
            if len(corrupt) == 1
            else (f"{len(corrupt):,} of its {blocks:,} data blocks are")
        )
        first, them = (f", the first is block {corrupt[0]:,}", "them") if len(corrupt) > 1 else ("", "it")
        return (
            f"{failure.name}: {which} corrupt (checksum{first}), and the {device} reader cannot read the file "
            f"around {them}: {detail}; copy it again from the device, or leave it out of the study (data.exclude)"
        )
    return (
        f"{failure.name}: the {device} file has corrupt data blocks and cannot be read: {detail}; copy it again "
        f"from the device, or leave it out of the study (data.exclude)"
    )


def _empty_file(failure: Failure) -> str | None:
    if not failure.message.startswith("File is less than 1kb"):
        return None
    size = failure.recording.file_bytes
    bytes_ = f" ({plural(size, 'byte')})" if size is not None else ""
    return (
        f"{failure.name}: the file is smaller than 1 kB{bytes_}, so it holds no recording; check that it was copied "
        f"completely, or {EXCLUDE}"
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
                f"{subject_words(failure.subject)}'s {name} is {value!r} ({given}), but it must be {wanted}; "
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


def _wrong_type_named(failure: Failure) -> str | None:
    if "TypeError" not in failure.error_types:
        return None
    culprit = _mistyped_param(failure) or _mistyped_input(failure)
    return f"{failure.name}: wrong type: {culprit}" if culprit is not None else None


def _wrong_type(failure: Failure) -> str | None:
    """A TypeError whose culprit is not known (a named one is `_wrong_type_named`'s)."""
    if "TypeError" not in failure.error_types:
        return None
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


def _unexplained(failure: Failure) -> str:
    """Nothing matched: the step, the recording's numbers, SKDH's own words, where the traceback is."""
    rec = failure.recording
    facts = [f"{duration(failure.seconds)} long"] if failure.seconds is not None else []
    if rec.samples:
        facts.append(plural(rec.samples, "sample") + (f" at {rate(rec.sample_rate)}" if rec.sample_rate else ""))
    about = f" ({', '.join(facts)})" if facts else ""
    message = failure.message or "(no message)"
    return (
        f"{failure.name} could not process this recording{about}: SKDH raised {failure.error_type}: {message}; "
        f"the full traceback is in {TRACEBACK_PLACES}"
    )


# In order: the machine's limits, mistakes in the study config that are certain, then what the
# job found in the recording itself (a time that runs backwards misleads every later check, such
# as the sample rate SKDH estimates from it), then SKDH's own texts.
_EXPLAINERS: tuple[Callable[[Failure], str | None], ...] = (
    _out_of_memory,
    _unknown_param,
    _wrong_type_named,
    repeated_times,  # before the time checks: its times may be nanoseconds read as seconds
    bad_time_value,  # an empty time reads as 1677, which the time checks would call disorder
    no_valid_time,
    time_backwards,
    missing_data,
    _window_too_long,
    _day_windows_missing,
    _truncated_bin,
    _empty_file,
    _low_sample_rate,
    _damaged_binary,
    time_gaps,
    missing_column,
    not_a_time,
    _wrong_type,
)


def explain(failure: Failure) -> str:
    """One sentence: the step, what is wrong with the recording or a parameter, what to do.

    When nothing explains the failure, the sentence still says the step could not process this
    recording, the recording's length and sample rate, SKDH's message and where the traceback is.
    """
    for explainer in _EXPLAINERS:
        text = explainer(failure)
        if text is not None:
            return text
    return _unexplained(failure)
