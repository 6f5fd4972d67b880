"""What to generate: one subject's recording (`RecordingSpec`) and the limits a GENEActiv sets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

#: Sampling rates a GENEActiv device can record at (Hz).
GENEACTIV_RATES: tuple[float, ...] = (10.0, 12.5, 20.0, 25.0, 50.0, 100.0)
#: Intensity labels of the ground truth, in order.
INTENSITIES: tuple[str, ...] = ("nonwear", "sleep", "sedentary", "light", "moderate", "vigorous")

SAMPLES_PER_PAGE = 300
#: skdh.io.ReadBin refuses recordings with fewer samples than this.
MIN_SAMPLES = 3600
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RecordingSpec:
    """What to generate: one subject's free-living wrist recording.

    Times of day are hours after local midnight (``sleep_onset_hour`` may exceed 24 for an
    onset after midnight). Every random choice is drawn from ``seed``.

    Attributes:
        subject: subject id; letters, digits, ``.``, ``_``, ``-`` (used in file names).
        days: recording length in days (rounded up to whole 300-sample pages).
        fs: sampling rate in Hz, one of :data:`GENEACTIV_RATES`.
        start: naive local start time, on a whole minute.
        seed: non-negative random seed.
        sleep_onset_hour: mean sleep onset (hours after the evening's midnight).
        wake_hour: mean wake time (hours after the morning's midnight).
        sleep_jitter_minutes: standard deviation of the nightly onset and wake times
            (clipped at two standard deviations).
        night_awakening_probability: chance per night of one 5-15 min awakening in bed.
        nonwear_gaps: explicit non-wear gaps as ``(hours after start, duration hours)``;
            ``None`` (default) places one 1.5-3 h gap on the first afternoon at least 3 h
            into the recording, and on each later day one more daytime gap with
            probability ``extra_nonwear_probability``. Use ``()`` for none.
        extra_nonwear_probability: see ``nonwear_gaps``.
        walking_bouts_per_day: inclusive range of walking bouts per full day.
        walking_bout_minutes: inclusive range of a walking bout's length in minutes.
        running_probability: chance per full day of one 10-20 min run (vigorous).
        light_minutes_per_day: inclusive range of light-activity minutes per full day.
        location: the header's "Device Location Code".
    """

    subject: str
    days: float = 2.0
    fs: float = 50.0
    start: datetime = datetime(2026, 3, 2, 10, 0, 0)
    seed: int = 0
    sleep_onset_hour: float = 23.0
    wake_hour: float = 7.0
    sleep_jitter_minutes: float = 30.0
    night_awakening_probability: float = 0.5
    nonwear_gaps: tuple[tuple[float, float], ...] | None = None
    extra_nonwear_probability: float = 0.25
    walking_bouts_per_day: tuple[int, int] = (2, 4)
    walking_bout_minutes: tuple[int, int] = (10, 40)
    running_probability: float = 0.3
    light_minutes_per_day: tuple[int, int] = (90, 180)
    location: str = "left wrist"

    def __post_init__(self) -> None:
        if not _SUBJECT_RE.match(self.subject):
            raise ValueError(f"subject {self.subject!r}: use letters, digits, '.', '_', '-'")
        if float(self.fs) not in GENEACTIV_RATES:
            raise ValueError(f"fs={self.fs}: a GENEActiv records at one of {GENEACTIV_RATES} Hz")
        if not self.days > 0 or self.days * 86400 * self.fs < MIN_SAMPLES:
            raise ValueError(f"days={self.days}: need at least {MIN_SAMPLES} samples (SKDH's ReadBin minimum)")
        if self.start.tzinfo is not None:
            raise ValueError("start must be a naive local time")
        if self.start.second or self.start.microsecond:
            raise ValueError("start must be on a whole minute")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if not 16.0 <= self.sleep_onset_hour <= 27.0 or not 3.0 <= self.wake_hour <= 12.0:
            raise ValueError("sleep_onset_hour must be in [16, 27] and wake_hour in [3, 12]")
        for lo, hi in (
            self.walking_bouts_per_day,
            self.walking_bout_minutes,
            self.light_minutes_per_day,
        ):
            if lo < 0 or hi < lo:
                raise ValueError("ranges must be (low, high) with 0 <= low <= high")
        if self.nonwear_gaps is not None:
            for offset, duration in self.nonwear_gaps:
                if offset < 0 or duration <= 0:
                    raise ValueError("nonwear_gaps: (hours after start >= 0, duration > 0)")

    @property
    def n_pages(self) -> int:
        """Number of 300-sample pages written."""
        return math.ceil(round(self.days * 86400 * self.fs) / SAMPLES_PER_PAGE)

    @property
    def n_samples(self) -> int:
        """Number of samples written (whole pages, so at least ``days * 86400 * fs``)."""
        return self.n_pages * SAMPLES_PER_PAGE

    @property
    def samples_per_minute(self) -> int:
        """Samples in one minute (an integer for every GENEActiv rate)."""
        return round(60 * self.fs)


def subject_spec(subject: str, index: int, *, days: float, fs: float, seed: int) -> RecordingSpec:
    """The spec :func:`make_recordings` uses for the ``index``-th subject.

    Seed ``seed + index``; sleep onset 22:30, 23:00 or 23:30 and wake 07:00, 07:30 or
    06:30 in turn; 1-3 to 2-5 walks a day, 60-150 to 120-210 light minutes a day, and a
    15 %, 30 % or 50 % chance of a run each day.
    """
    i = index
    return RecordingSpec(
        subject=subject,
        days=days,
        fs=fs,
        seed=seed + i,
        sleep_onset_hour=22.5 + 0.5 * (i % 3),
        wake_hour=6.5 + 0.5 * ((i + 1) % 3),
        walking_bouts_per_day=(1 + i % 2, 3 + i % 3),
        light_minutes_per_day=(60 + 20 * (i % 4), 150 + 20 * (i % 4)),
        running_probability=(0.15, 0.3, 0.5)[i % 3],
    )
