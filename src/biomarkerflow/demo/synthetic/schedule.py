"""The day plan of a recording: what the subject does each minute, and the light and temperature.

Every minute gets one activity kind. Nights come first (onset on the evening of each date,
wake on the next morning, each jittered; optionally one 5-15 min awakening in bed), then
daytime non-wear gaps (away from sleep and from the recording's ends), then the bouts of
each day's awake, worn time: an optional run, walks and light activity, placed at random
only where the minutes are still sedentary (with a margin). The amount of activity is
scaled by how much of a full waking day the recording covers.

Per minute, light is moderately high in the daytime when worn, higher outdoors during
walks, low in the evening and near zero at night; the temperature approaches about 33 C
when worn (first-order, tau 12 min) and about 22 C when off the wrist (tau 25 min).

All of it is drawn from one random stream (``[seed, 0]``) in a fixed order, so the same
spec always gives the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from biomarkerflow.demo.synthetic.spec import SAMPLES_PER_PAGE, RecordingSpec
from biomarkerflow.demo.synthetic.truth import GroundTruth

FloatArray = npt.NDArray[np.float64]
KindArray = npt.NDArray[np.uint8]

# activity kinds, per minute (awake in bed at night is its own kind: it moves differently)
NONWEAR, SLEEP, BED_WAKE, SEDENTARY, LIGHT, WALK, RUN = range(7)
_KIND_INTENSITY = ("nonwear", "sleep", "sedentary", "sedentary", "light", "moderate", "vigorous")
# temperature (C) the device settles at, per kind (approached with tau 12 min worn, 25 min off)
_KIND_TEMPERATURE = (22.0, 33.8, 33.5, 32.8, 32.3, 31.6, 31.0)
_MAX_LUX = 5000.0


@dataclass(frozen=True, eq=False)
class Schedule:
    """Per-minute activity kinds (covering every sample), light (lux) and per-page temperature."""

    spec: RecordingSpec
    kinds: KindArray
    minute_light: FloatArray
    page_temperature: FloatArray  # C per page, one decimal

    @classmethod
    def build(cls, spec: RecordingSpec) -> Schedule:
        """Lay out nights, non-wear and activity bouts, then light and temperature."""
        rng = np.random.default_rng([spec.seed, 0])
        timeline = _Timeline(spec, rng)
        timeline.place_nights()
        timeline.place_nonwear()
        timeline.place_bouts()
        kinds = timeline.kinds
        minute_light = _minute_light(spec, kinds, rng)
        page_temperature = _page_temperature(spec, kinds, rng)
        return cls(spec, kinds, minute_light, page_temperature)

    def truth(self) -> GroundTruth:
        """The ground truth of every whole minute recorded."""
        spec = self.spec
        n_full = spec.n_samples // spec.samples_per_minute
        k = self.kinds[:n_full]
        times = pd.date_range(spec.start, periods=n_full, freq="min")
        df = pd.DataFrame(
            {
                "time": np.asarray(times, dtype="datetime64[ns]"),
                "worn": k != NONWEAR,
                "asleep": k == SLEEP,
                "intensity": np.asarray(_KIND_INTENSITY, dtype=object)[k],
                "walking": (k == WALK) | (k == RUN),
            }
        )
        return GroundTruth(minutes=df, subject=spec.subject)

    def segments(self) -> list[tuple[int, int, int]]:
        """Runs of one kind as (first sample, end sample, kind)."""
        k = self.kinds
        change = np.flatnonzero(np.diff(k.astype(np.int16))) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [k.size]))
        spm = self.spec.samples_per_minute
        n = self.spec.n_samples
        out = []
        for a, b in zip(starts, ends, strict=True):
            s0, s1 = int(a) * spm, min(int(b) * spm, n)
            if s1 > s0:
                out.append((s0, s1, int(k[a])))
        return out

    def sample_light(self, s0: int, s1: int) -> FloatArray:
        """Light (lux) of samples ``s0`` to ``s1``: their minute's value."""
        spm = self.spec.samples_per_minute
        idx = np.arange(s0, s1) // spm
        return self.minute_light[idx]


class _Timeline:
    """The per-minute kinds while they are laid out, in minutes after the recording's start.

    The order of the steps and of the draws within them is part of the output: changing
    it changes every recording generated from a seed.
    """

    def __init__(self, spec: RecordingSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.n_min = math.ceil(spec.n_samples / spec.samples_per_minute)
        self.kinds = np.full(self.n_min, SEDENTARY, dtype=np.uint8)
        # from the day before the start to the day after the end, so that the nights
        # around both ends are planned too
        first_day = spec.start.date() - timedelta(days=1)
        last_day = (spec.start + timedelta(minutes=self.n_min)).date() + timedelta(days=1)
        self.dates = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        self.onsets: dict[date, int] = {}  # keyed by the evening's date
        self.wakes: dict[date, int] = {}  # keyed by the morning's date

    def minute(self, dt: datetime) -> int:
        return round((dt - self.spec.start).total_seconds() / 60.0)

    def mark(self, m0: int, m1: int, kind: int) -> None:
        self.kinds[max(m0, 0) : max(min(m1, self.n_min), 0)] = kind

    def awake_window(self, d: date) -> tuple[int, int]:
        """From the wake on the morning of `d` to the onset that evening, inside the recording."""
        lo = self.wakes.get(d, self.minute(datetime.combine(d, time())))
        hi = self.onsets.get(d, self.minute(datetime.combine(d, time()) + timedelta(days=1)))
        return max(lo, 0), min(hi, self.n_min)

    def place_nights(self) -> None:
        """Onset on the evening of each date, wake on the morning after; maybe one awakening."""
        spec, rng = self.spec, self.rng
        jit = spec.sleep_jitter_minutes
        for d in self.dates:
            midnight = datetime.combine(d, time())
            j1, j2 = np.clip(rng.standard_normal(2) * jit, -2 * jit, 2 * jit)
            onset = self.minute(midnight + timedelta(hours=spec.sleep_onset_hour, minutes=float(j1)))
            wake = self.minute(midnight + timedelta(days=1, hours=spec.wake_hour, minutes=float(j2)))
            self.onsets[d] = onset
            self.wakes[d + timedelta(days=1)] = wake
            self.mark(onset, wake, SLEEP)
            if rng.random() < spec.night_awakening_probability:
                dur = int(rng.integers(5, 16))
                at = onset + int((wake - onset) * rng.uniform(0.25, 0.7))
                self.mark(at, at + dur, BED_WAKE)

    def place_nonwear(self) -> None:
        """The spec's gaps, else daytime gaps of 90-180 min away from sleep and the recording's ends."""
        if self.spec.nonwear_gaps is not None:
            for off_h, dur_h in self.spec.nonwear_gaps:
                self.mark(round(off_h * 60), round((off_h + dur_h) * 60), NONWEAR)
            return
        spec, rng = self.spec, self.rng
        placed_first = False
        for d in self.dates:
            if d < spec.start.date():
                continue
            midnight = datetime.combine(d, time())
            if not placed_first:  # the first gap in an afternoon, until one fits
                start = self.minute(midnight + timedelta(hours=13.5)) + int(rng.integers(0, 91))
            else:
                if rng.random() >= spec.extra_nonwear_probability:
                    continue
                start = self.minute(midnight + timedelta(hours=9.5)) + int(rng.integers(0, 391))
            dur = int(rng.integers(90, 181))
            lo, hi = self.awake_window(d)
            wake_lo = self.wakes.get(d, lo)
            if (
                start >= max(180, wake_lo + 120)
                and start + dur <= min(hi - 60, self.n_min - 180)
                and (self.kinds[start : start + dur] == SEDENTARY).all()
            ):
                self.mark(start, start + dur, NONWEAR)
                placed_first = True

    def place_bouts(self) -> None:
        """A run, walks and light activity inside each day's awake, worn time."""
        spec, rng = self.spec, self.rng
        for d in self.dates:
            lo, hi = self.awake_window(d)
            lo, hi = lo + 30, hi - 60
            if hi - lo < 20:
                continue
            # a partly recorded day gets its share of a full (16 h) day's activity
            frac = min(float((self.kinds[lo:hi] == SEDENTARY).sum()) / 960.0, 1.0)
            if rng.random() < spec.running_probability * frac:
                self.place(int(rng.integers(10, 21)), lo, hi, RUN)
            w_lo, w_hi = spec.walking_bouts_per_day
            n_walk = round(int(rng.integers(w_lo, w_hi + 1)) * frac)
            b_lo, b_hi = spec.walking_bout_minutes
            for _ in range(n_walk):
                self.place(int(rng.integers(b_lo, b_hi + 1)), lo, hi, WALK)
            l_lo, l_hi = spec.light_minutes_per_day
            budget = int(rng.integers(l_lo, l_hi + 1) * frac)
            for _ in range(40):
                if budget < 5:
                    break
                dur = min(int(rng.integers(5, 31)), budget)
                if self.place(dur, lo, hi, LIGHT, margin=3):
                    budget -= dur

    def place(self, dur: int, lo: int, hi: int, kind: int, margin: int = 10) -> bool:
        """Put a bout of `dur` minutes in [lo, hi) where it and its margins are sedentary (80 tries)."""
        if hi - lo < dur:
            return False
        for _ in range(80):
            s = int(self.rng.integers(lo, hi - dur + 1))
            a, b = max(s - margin, 0), min(s + dur + margin, self.n_min)
            if (self.kinds[a:b] == SEDENTARY).all():
                self.kinds[s : s + dur] = kind
                return True
        return False


def _minute_light(spec: RecordingSpec, kinds: KindArray, rng: np.random.Generator) -> FloatArray:
    n = kinds.size
    hour = ((spec.start.hour * 60 + spec.start.minute + np.arange(n)) % 1440) / 60.0
    day = (hour >= 7) & (hour < 19)
    evening = (hour >= 19) & (hour < 23)
    indoor = np.where(day, 350.0, np.where(evening, 90.0, 15.0))
    # light changes every few minutes, not every minute
    level = np.repeat(rng.lognormal(0.0, 0.35, size=n // 5 + 1), 5)[:n]
    lux = indoor * level
    lux = np.where((kinds == WALK) | (kinds == RUN), np.where(day, 3000.0 * level, lux), lux)
    lux = np.where(kinds == SLEEP, 0.5 * level, lux)
    lux = np.where(kinds == BED_WAKE, 8.0 * level, lux)
    lux = np.where(kinds == NONWEAR, np.where(day, 150.0 * level, 2.0 * level), lux)
    return np.clip(lux, 0.0, _MAX_LUX)


def _page_temperature(spec: RecordingSpec, kinds: KindArray, rng: np.random.Generator) -> FloatArray:
    target = np.asarray(_KIND_TEMPERATURE)[kinds]
    tau = np.where(kinds == NONWEAR, 25.0, 12.0)
    decay = np.exp(-1.0 / tau)
    noise = rng.normal(0.0, 0.04, size=kinds.size)
    temp = np.empty(kinds.size + 1)
    temp[0] = 26.0
    for i in range(kinds.size):  # first-order approach, one step per minute
        temp[i + 1] = target[i] + (temp[i] - target[i]) * decay[i] + noise[i]
    page_minutes = np.arange(spec.n_pages) * SAMPLES_PER_PAGE / spec.samples_per_minute
    page_temp = np.interp(page_minutes, np.arange(temp.size), temp)
    return np.round(page_temp, 1)
