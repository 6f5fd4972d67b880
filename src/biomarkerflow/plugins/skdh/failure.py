"""What a job knows when an SKDH step raised (`Failure`, with the `Recording`'s numbers), and
the small text helpers the explanations share (`explain`, `explain_recording`, `notices`).

Pure values: nothing from SKDH, so they run in any pinned runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Where a scientist finds the exception and traceback behind a failure's sentence.
TRACEBACK_PLACES = "`biomarkerflow status --verbose` or the run's lineage"
EXCLUDE = "exclude the file (data.exclude)"


@dataclass(frozen=True)
class Recording:
    """Numbers about the recording a failing step was given (or a reader was reading), gathered
    by the job when the step raised; None or empty where unknown. Sample and row numbers count
    from 1, as a scientist counts rows in a file."""

    samples: int | None = None
    sample_rate: float | None = None  # Hz: the rate the step worked with (the reader's, or SKDH's estimate)
    mean_rate: float | None = None  # Hz: samples per second on average, gaps left out
    seconds: float | None = None
    streams: tuple[str, ...] = ()  # the data streams the step was given (accel, gyro, temperature, ...)
    missing: tuple[str, ...] = ()  # data streams the step takes but was given none of (accel, temperature)
    backwards: int = 0  # samples whose time is before the one before them
    backwards_at: int | None = None  # the first such sample
    backwards_seconds: float | None = None  # how far back the time goes there
    gaps: int = 0  # breaks of more than 1.5 sample periods (SKDH's definition of a gap)
    longest_gap_seconds: float | None = None
    longest_gap_after: int | None = None  # the sample before the longest gap
    repeated: int = 0  # samples with the same time as the one before
    distinct_times: int | None = None  # different times among the samples, when some repeat
    before_1971: int = 0  # samples whose time is before 1971 (a clock never set)
    columns: tuple[str, ...] | None = None  # a text file's columns, as the reader saw them
    time_column: str | None = None  # the column the reader takes the time from
    bad_time: tuple[int, str] | None = None  # (data row, its text; "" if empty): the first time that is not a time
    blocks: int | None = None  # an Axivity file's data blocks
    corrupt_blocks: tuple[int, ...] = ()  # those whose checksum fails (numbered from 1)
    file_bytes: int | None = None


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
    recording: Recording = field(default_factory=Recording)

    @property
    def name(self) -> str:
        return self.step or "the pipeline"

    @property
    def seconds(self) -> float | None:
        """The recording's length: as read, else as far as the step or reader saw it."""
        return self.recording_seconds if self.recording_seconds is not None else self.recording.seconds

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


def number(value: float) -> str:
    return f"{value:g}"


def subject_words(subject: str | None) -> str:
    return f"subject {subject}" if subject else "this file's subject"


def span(seconds: float) -> str:
    """A stretch of time, down to the fractions of a second that matter in a sample's timing."""
    if seconds < 0.001:
        return "less than a millisecond"
    if seconds < 10:
        return f"{seconds:.3g} s"
    return duration(seconds)


def rate(hertz: float) -> str:
    return f"{hertz:.4g} Hz"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
