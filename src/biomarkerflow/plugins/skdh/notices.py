"""SKDH's warnings that change results, in words a scientist can act on ("height not provided,
not computing spatial metrics" -> what is not computed, and what to add). Pure functions of
SKDH's own warning texts (the same in 0.16.15 and 0.17.18), importing nothing from SKDH.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from biomarkerflow.plugins.skdh.failure import duration, subject_words

__all__ = ["notice", "notices"]

GAIT_BOUT_EXAMPLES = 3  # a gait study can skip hundreds of bouts: name a few, count the rest


def _height(found: re.Match[str], subject: str | None) -> str:
    return (
        f"no height for {subject_words(subject)}: gait speed, step and stride length are not computed (NaN); "
        f"add height (metres) to the metadata"
    )


def _utc_day_windows(found: re.Match[str], subject: str | None) -> str:
    return (
        f"no time zone for {subject_words(subject)}: the file's timestamps are UTC, so day windows are cut at UTC "
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
