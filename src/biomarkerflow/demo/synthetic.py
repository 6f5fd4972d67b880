"""Deterministic synthetic multi-day wrist recordings in GENEActiv ``.bin`` format.

The generator writes files that SKDH's own reader (``skdh.io.ReadBin``) opens, together
with the per-minute ground truth the signal was built from (worn or not, asleep or not,
activity intensity, walking), so that tests and the demo can compare SKDH's biomarkers
with the truth rather than only check that they were computed.

File format (modelled on a real GENEActiv sample file): a text header of 59 lines
(sections "Device Identity" ... "Memory Status"), then one page per 300 samples. A page is
9 lines of metadata ("Recorded Data", serial, "Sequence Number", "Page Time" = time of the
page's first sample, "Unassigned", per-page "Temperature", "Battery voltage", "Device
Status", "Measurement Frequency") and one line of 3600 upper-case hex characters: per
sample 12 characters = x, y, z as signed 12-bit counts, then 10 bits of light, 1 button
bit and 1 reserved bit. Acceleration in g is ``(count * 100 - offset) / gain`` with the
per-axis gain and offset of the header's "Calibration Data"; light in lux is
``floor(light10 * Lux / Volts)``. Lines end with LF, as in the real sample.

Signal model (wrist, in g): a unit gravity vector in the device frame, turned by the arm's
orientation, plus linear movement and a few mg of sensor noise, quantised to 12 bits.

- sedentary (awake, worn): orientation that drifts continuously by a few degrees and
  changes every 1-6 minutes, occasional small gestures; ENMO well below 0.05 g.
- light: frequent orientation changes and continuous moderate movement, ENMO 0.06-0.09 g.
- walking (moderate): arm swing at half the step frequency (steps at 1.75-2.05 Hz) with
  vertical impacts at the step frequency, ENMO 0.17-0.33 g; running (vigorous): steps at
  2.5-2.9 Hz, ENMO 0.55-0.85 g. Intensities follow SKDH's ``migueles_wrist_adult``
  cut-points (ENMO on 5 s epochs: sedentary < 0.050 <= light < 0.110 <= moderate
  < 0.440 <= vigorous); each bout's movement amplitude is scaled to a target ENMO drawn
  well inside its band.
- sleep: long still postures (posture changes every 20-75 min), small postural shifts of
  1-3 degrees every 3-15 min and brief twitches every 4-15 min, slow drift; this keeps
  every 60-minute window above SKDH's non-wear range criterion while the 5-minute median
  arm-angle change stays far below its sleep (TSO) threshold. Optional brief awakenings.
- non-wear: the device lies flat and perfectly still (sensor noise only, about 2.5 mg);
  the temperature decays toward room temperature (about 22 C).
- temperature approaches about 33 C when worn (first-order, tau 12 min) and about 22 C
  when off the wrist (tau 25 min); light is moderately high in the daytime when worn,
  higher outdoors during walks, low in the evening and near zero at night.

Everything is drawn from ``numpy.random.default_rng`` streams derived from the spec's
seed, so the same spec always gives a byte-identical file.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "GENEACTIV_RATES",
    "INTENSITIES",
    "GeneActivData",
    "GroundTruth",
    "RecordingSpec",
    "SyntheticRecording",
    "generate_recording",
    "make_recordings",
    "read_geneactiv_bin",
    "subject_spec",
    "write_geneactiv_bin",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Sampling rates a GENEActiv device can record at (Hz).
GENEACTIV_RATES: tuple[float, ...] = (10.0, 12.5, 20.0, 25.0, 50.0, 100.0)
#: Intensity labels of the ground truth, in order.
INTENSITIES: tuple[str, ...] = ("nonwear", "sleep", "sedentary", "light", "moderate", "vigorous")

SAMPLES_PER_PAGE = 300
#: skdh.io.ReadBin refuses recordings with fewer samples than this.
MIN_SAMPLES = 3600
_HEADER_LINES = 59
_PAGE_LINES = 10
_VOLTS = 42
_LUX = 886
_MAX_LUX = 5000.0
_SENSOR_NOISE_G = 0.0025

# internal activity kinds, per minute
_NONWEAR, _SLEEP, _BED_WAKE, _SEDENTARY, _LIGHT, _WALK, _RUN = range(7)
_KIND_INTENSITY = ("nonwear", "sleep", "sedentary", "sedentary", "light", "moderate", "vigorous")
# temperature (C) the device settles at, per kind (approached with tau 12 min worn, 25 min off)
_KIND_TEMPERATURE = (22.0, 33.8, 33.5, 32.8, 32.3, 31.6, 31.0)

_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
# the three upper-case hex digits of every 12-bit value
_HEX3 = _HEX_DIGITS[np.stack([(np.arange(4096) >> sh) & 0xF for sh in (8, 4, 0)], axis=1)].astype(np.uint8)
_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
_HEX_VALUES[np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)] = np.arange(16)
_HEX_VALUES[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16)
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------------
# public data classes
# ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Per-minute truth of a synthetic recording.

    ``minutes`` has one row per whole minute of the recording with the columns ``time``
    (datetime64, minute start, naive local), ``worn`` (bool), ``asleep`` (bool),
    ``intensity`` (one of :data:`INTENSITIES`; awake minutes in bed are ``sedentary``)
    and ``walking`` (bool, walking or running).
    """

    minutes: pd.DataFrame
    subject: str = ""

    def write_csv(self, path: Path) -> None:
        """Write ``minutes`` as CSV (ISO times), atomically."""
        text = self.minutes.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n")
        with _atomic_open(Path(path)) as fh:
            fh.write(text.encode("utf-8"))

    @classmethod
    def read_csv(cls, path: Path, subject: str = "") -> GroundTruth:
        """Read a truth CSV written by :meth:`write_csv`."""
        df = pd.read_csv(path)
        df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
        for col in ("worn", "asleep", "walking"):
            df[col] = df[col].astype(bool)
        df["intensity"] = df["intensity"].astype(str)
        return cls(minutes=df, subject=subject)

    def nights(self) -> pd.DataFrame:
        """One row per night with any sleep.

        A night is the noon-to-noon window it falls in, named by the date of its start
        (the evening), as SKDH's ``Sleep(day_window=(12, 24))`` names its days. Columns:
        ``night`` (date), ``onset`` and ``wake`` (first asleep minute, end of the last),
        ``period_minutes`` (wake - onset) and ``sleep_minutes`` (asleep minutes; brief
        awakenings excluded).
        """
        m = self.minutes
        asleep = m[m["asleep"]]
        rows = []
        night_of = (asleep["time"] - pd.Timedelta(hours=12)).dt.date
        for night, grp in asleep.groupby(night_of, sort=True):
            onset = grp["time"].iloc[0]
            wake = grp["time"].iloc[-1] + pd.Timedelta(minutes=1)
            rows.append(
                {
                    "night": night,
                    "onset": onset,
                    "wake": wake,
                    "period_minutes": int((wake - onset) / pd.Timedelta(minutes=1)),
                    "sleep_minutes": len(grp),
                }
            )
        cols = ["night", "onset", "wake", "period_minutes", "sleep_minutes"]
        return pd.DataFrame(rows, columns=cols)

    def summary(self) -> pd.DataFrame:
        """Per calendar day: ``date``, ``recorded_hours``, ``wear_hours``, ``sleep_minutes``
        and ``mvpa_minutes``.

        ``wear_hours`` and ``mvpa_minutes`` (moderate + vigorous) count the minutes of that
        calendar day. ``sleep_minutes`` is the night that *starts* that day (asleep minutes
        in the noon-to-noon window beginning at noon of that date), as SKDH reports sleep;
        a night that started before the recording's first day gets its own row.
        """
        m = self.minutes
        day = m["time"].dt.date
        night = (m["time"] - pd.Timedelta(hours=12)).dt.date
        mvpa = m["intensity"].isin(["moderate", "vigorous"])
        per_day = pd.DataFrame(
            {
                "recorded_hours": m.groupby(day).size() / 60.0,
                "wear_hours": m["worn"].groupby(day).sum() / 60.0,
                "mvpa_minutes": mvpa.groupby(day).sum(),
            }
        )
        sleep = m["asleep"].groupby(night).sum()
        sleep = sleep[(sleep > 0) | sleep.index.isin(per_day.index)]
        out = per_day.join(sleep.rename("sleep_minutes"), how="outer")
        out = out.fillna(0.0)
        out.index.name = "date"
        out = out.reset_index()
        out["sleep_minutes"] = out["sleep_minutes"].astype(int)
        out["mvpa_minutes"] = out["mvpa_minutes"].astype(int)
        return out[["date", "recorded_hours", "wear_hours", "sleep_minutes", "mvpa_minutes"]]


@dataclass(frozen=True, eq=False)
class SyntheticRecording:
    """The generated signal before it is written (for tests and small recordings).

    ``time`` is in seconds since 1970 of the naive local time (as SKDH returns it),
    ``accel`` in g before 12-bit quantisation, ``light`` in lux before quantisation,
    ``page_temperature`` the temperature written on each page (C, one decimal).
    """

    time: FloatArray
    accel: FloatArray
    light: FloatArray
    page_temperature: FloatArray
    gain: FloatArray
    offset: FloatArray

    @property
    def temperature(self) -> FloatArray:
        """Per-sample temperature as a reader returns it (the page's value)."""
        return np.repeat(self.page_temperature, SAMPLES_PER_PAGE)


@dataclass(frozen=True, eq=False)
class GeneActivData:
    """A decoded GENEActiv ``.bin`` file (see :func:`read_geneactiv_bin`)."""

    header: dict[str, str]
    fs: float
    time: FloatArray
    accel: FloatArray
    light: FloatArray
    temperature: FloatArray
    page_time: FloatArray
    page_temperature: FloatArray


# ---------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------


def write_geneactiv_bin(path: Path, spec: RecordingSpec) -> GroundTruth:
    """Write the recording described by ``spec`` as a GENEActiv ``.bin`` file.

    The file is written under a temporary name in the same folder and renamed at the end,
    so readers never see a partial file. Memory use is bounded by the longest activity
    segment (a night), not the recording length.

    Returns:
        The per-minute ground truth of the recording.
    """
    path = Path(path)
    plan = _Plan.build(spec)
    header = _file_header(spec, plan)
    with _atomic_open(path) as fh:
        fh.write(header)
        writer = _PageWriter(fh, spec, plan)
        for _start, accel in _iter_accel(spec, plan):
            writer.add(accel)
        writer.close()
    return plan.truth()


def generate_recording(spec: RecordingSpec) -> tuple[SyntheticRecording, GroundTruth]:
    """Generate the signal of ``spec`` in memory (what :func:`write_geneactiv_bin` writes).

    Holds the whole recording in memory: meant for tests and recordings of hours.
    """
    plan = _Plan.build(spec)
    accel = np.concatenate([a for _s, a in _iter_accel(spec, plan)], axis=0)
    t0 = _unix_seconds(spec.start)
    time_s = t0 + np.arange(spec.n_samples, dtype=np.float64) / spec.fs
    rec = SyntheticRecording(
        time=time_s,
        accel=accel,
        light=plan.sample_light(0, spec.n_samples),
        page_temperature=plan.page_temperature,
        gain=plan.gain.copy(),
        offset=plan.offset.copy(),
    )
    return rec, plan.truth()


def make_recordings(
    folder: Path, subjects: Sequence[str], *, days: float, fs: float, seed: int
) -> dict[str, GroundTruth]:
    """Write one recording per subject into ``folder``.

    Writes ``{subject}_wrist.bin`` and ``{subject}_truth.csv``. Subject ``i`` gets seed
    ``seed + i`` and a slightly different schedule (sleep timing, number of walks, light
    activity, running). Returns the truths by subject.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truths: dict[str, GroundTruth] = {}
    for i, subject in enumerate(subjects):
        spec = subject_spec(subject, i, days=days, fs=fs, seed=seed)
        truth = write_geneactiv_bin(folder / f"{subject}_wrist.bin", spec)
        truth.write_csv(folder / f"{subject}_truth.csv")
        truths[subject] = truth
    return truths


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


def read_geneactiv_bin(path: Path) -> GeneActivData:
    """Decode a GENEActiv ``.bin`` file with numpy (the same arithmetic as SKDH's reader).

    Time is in seconds since 1970 of the naive local page times; each page's samples are
    ``page_time + i / fs``. Acceleration is ``(count * 100 - offset) / gain``, light is
    ``floor(light10 * Lux / Volts)``, temperature is the page's value.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    header: dict[str, str] = {}
    for raw in lines[:_HEADER_LINES]:
        key, sep, value = raw.decode("latin-1").partition(":")
        if sep:
            header[key.strip()] = value.replace("\x00", "").strip()
    body = lines[_HEADER_LINES:]
    n_pages = len(body) // _PAGE_LINES
    if n_pages == 0:
        raise ValueError(f"{path}: no data pages")
    pages = [body[i * _PAGE_LINES : (i + 1) * _PAGE_LINES] for i in range(n_pages)]
    fs = float(pages[0][8].split(b":", 1)[1])
    gain = np.array([float(header[f"{ax} gain"]) for ax in "xyz"])
    offset = np.array([float(header[f"{ax} offset"]) for ax in "xyz"])
    volts, lux = float(header["Volts"]), float(header["Lux"])

    hexdata = np.frombuffer(b"".join(p[9][:3600] for p in pages), dtype=np.uint8)
    nib = _HEX_VALUES[hexdata].reshape(-1, 4, 3).astype(np.int32)
    values = (nib[..., 0] << 8) | (nib[..., 1] << 4) | nib[..., 2]
    counts = values[:, :3].astype(np.float64)
    counts[counts > 2047] -= 4096
    accel = (counts * 100.0 - offset) / gain
    light = np.floor((values[:, 3] >> 2).astype(np.float64) * (lux / volts))

    stamps = np.array([p[3].split(b":", 1)[1].decode() for p in pages])
    page_time = _parse_page_times(stamps)
    page_temp = np.array([float(p[5].split(b":", 1)[1]) for p in pages])
    seq = np.array([int(p[2].split(b":", 1)[1]) for p in pages])
    order = np.argsort(seq, kind="stable")
    offsets = np.arange(SAMPLES_PER_PAGE) / fs
    time_s = (page_time[order][:, None] + offsets[None, :]).ravel()
    per_page = order[:, None] * SAMPLES_PER_PAGE + np.arange(SAMPLES_PER_PAGE)[None, :]
    idx = per_page.ravel()
    return GeneActivData(
        header=header,
        fs=fs,
        time=time_s,
        accel=accel[idx],
        light=light[idx],
        temperature=np.repeat(page_temp[order], SAMPLES_PER_PAGE),
        page_time=page_time[order],
        page_temperature=page_temp[order],
    )


# ---------------------------------------------------------------------------------------
# the schedule
# ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    spec: RecordingSpec
    kinds: npt.NDArray[np.uint8]  # per minute (covers every sample)
    minute_light: FloatArray  # lux per minute
    page_temperature: FloatArray  # C per page, one decimal
    gain: FloatArray
    offset: FloatArray
    serial: str

    @classmethod
    def build(cls, spec: RecordingSpec) -> _Plan:
        rng = np.random.default_rng([spec.seed, 0])
        spm = spec.samples_per_minute
        n_min = math.ceil(spec.n_samples / spm)
        kinds = np.full(n_min, _SEDENTARY, dtype=np.uint8)
        t0 = spec.start
        rec_end = n_min

        def minute(dt: datetime) -> int:
            return round((dt - t0).total_seconds() / 60.0)

        def mark(m0: int, m1: int, kind: int) -> None:
            kinds[max(m0, 0) : max(min(m1, n_min), 0)] = kind

        first_day = t0.date() - timedelta(days=1)
        last_day = (t0 + timedelta(minutes=n_min)).date() + timedelta(days=1)
        dates = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]

        # nights: onset on the evening of date d, wake on the morning of d + 1
        jit = spec.sleep_jitter_minutes
        onsets: dict[date, int] = {}
        wakes: dict[date, int] = {}  # keyed by the morning's date
        for d in dates:
            midnight = datetime.combine(d, time())
            j1, j2 = np.clip(rng.standard_normal(2) * jit, -2 * jit, 2 * jit)
            onset = minute(midnight + timedelta(hours=spec.sleep_onset_hour, minutes=float(j1)))
            wake = minute(midnight + timedelta(days=1, hours=spec.wake_hour, minutes=float(j2)))
            onsets[d] = onset
            wakes[d + timedelta(days=1)] = wake
            mark(onset, wake, _SLEEP)
            if rng.random() < spec.night_awakening_probability:
                dur = int(rng.integers(5, 16))
                at = onset + int((wake - onset) * rng.uniform(0.25, 0.7))
                mark(at, at + dur, _BED_WAKE)

        def awake_window(d: date) -> tuple[int, int]:
            lo = wakes.get(d, minute(datetime.combine(d, time())))
            hi = onsets.get(d, minute(datetime.combine(d, time()) + timedelta(days=1)))
            return max(lo, 0), min(hi, rec_end)

        # non-wear gaps (daytime, at least 90 min, away from sleep and the recording ends)
        if spec.nonwear_gaps is not None:
            for off_h, dur_h in spec.nonwear_gaps:
                mark(round(off_h * 60), round((off_h + dur_h) * 60), _NONWEAR)
        else:
            placed_first = False
            for d in dates:
                if d < t0.date():
                    continue
                midnight = datetime.combine(d, time())
                if not placed_first:
                    start = minute(midnight + timedelta(hours=13.5)) + int(rng.integers(0, 91))
                else:
                    if rng.random() >= spec.extra_nonwear_probability:
                        continue
                    start = minute(midnight + timedelta(hours=9.5)) + int(rng.integers(0, 391))
                dur = int(rng.integers(90, 181))
                lo, hi = awake_window(d)
                wake_lo = wakes.get(d, lo)
                if (
                    start >= max(180, wake_lo + 120)
                    and start + dur <= min(hi - 60, rec_end - 180)
                    and (kinds[start : start + dur] == _SEDENTARY).all()
                ):
                    mark(start, start + dur, _NONWEAR)
                    placed_first = True

        # activity bouts inside each day's awake, worn time
        def place(dur: int, lo: int, hi: int, kind: int, margin: int = 10) -> bool:
            if hi - lo < dur:
                return False
            for _ in range(80):
                s = int(rng.integers(lo, hi - dur + 1))
                a, b = max(s - margin, 0), min(s + dur + margin, n_min)
                if (kinds[a:b] == _SEDENTARY).all():
                    kinds[s : s + dur] = kind
                    return True
            return False

        for d in dates:
            lo, hi = awake_window(d)
            lo, hi = lo + 30, hi - 60
            if hi - lo < 20:
                continue
            frac = min(float((kinds[lo:hi] == _SEDENTARY).sum()) / 960.0, 1.0)
            if rng.random() < spec.running_probability * frac:
                place(int(rng.integers(10, 21)), lo, hi, _RUN)
            w_lo, w_hi = spec.walking_bouts_per_day
            n_walk = round(int(rng.integers(w_lo, w_hi + 1)) * frac)
            b_lo, b_hi = spec.walking_bout_minutes
            for _ in range(n_walk):
                place(int(rng.integers(b_lo, b_hi + 1)), lo, hi, _WALK)
            l_lo, l_hi = spec.light_minutes_per_day
            budget = int(rng.integers(l_lo, l_hi + 1) * frac)
            for _ in range(40):
                if budget < 5:
                    break
                dur = min(int(rng.integers(5, 31)), budget)
                if place(dur, lo, hi, _LIGHT, margin=3):
                    budget -= dur

        minute_light = _minute_light(spec, kinds, rng)
        page_temperature = _page_temperature(spec, kinds, rng)
        dev = np.random.default_rng([spec.seed, 2])
        gain = (25000 + dev.integers(0, 700, size=3)).astype(np.float64)
        offset = dev.integers(-1200, 601, size=3).astype(np.float64)
        serial = f"{zlib.crc32(spec.subject.encode()) % 1_000_000:06d}"
        return cls(spec, kinds, minute_light, page_temperature, gain, offset, serial)

    def truth(self) -> GroundTruth:
        spec = self.spec
        n_full = spec.n_samples // spec.samples_per_minute
        k = self.kinds[:n_full]
        times = pd.date_range(spec.start, periods=n_full, freq="min")
        df = pd.DataFrame(
            {
                "time": np.asarray(times, dtype="datetime64[ns]"),
                "worn": k != _NONWEAR,
                "asleep": k == _SLEEP,
                "intensity": np.asarray(_KIND_INTENSITY, dtype=object)[k],
                "walking": (k == _WALK) | (k == _RUN),
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
        spm = self.spec.samples_per_minute
        idx = np.arange(s0, s1) // spm
        return self.minute_light[idx]


def _minute_light(spec: RecordingSpec, kinds: npt.NDArray[np.uint8], rng: np.random.Generator) -> FloatArray:
    n = kinds.size
    hour = ((spec.start.hour * 60 + spec.start.minute + np.arange(n)) % 1440) / 60.0
    day = (hour >= 7) & (hour < 19)
    evening = (hour >= 19) & (hour < 23)
    indoor = np.where(day, 350.0, np.where(evening, 90.0, 15.0))
    # light changes every few minutes, not every minute
    level = np.repeat(rng.lognormal(0.0, 0.35, size=n // 5 + 1), 5)[:n]
    lux = indoor * level
    lux = np.where((kinds == _WALK) | (kinds == _RUN), np.where(day, 3000.0 * level, lux), lux)
    lux = np.where(kinds == _SLEEP, 0.5 * level, lux)
    lux = np.where(kinds == _BED_WAKE, 8.0 * level, lux)
    lux = np.where(kinds == _NONWEAR, np.where(day, 150.0 * level, 2.0 * level), lux)
    return np.clip(lux, 0.0, _MAX_LUX)


def _page_temperature(spec: RecordingSpec, kinds: npt.NDArray[np.uint8], rng: np.random.Generator) -> FloatArray:
    target = np.asarray(_KIND_TEMPERATURE)[kinds]
    tau = np.where(kinds == _NONWEAR, 25.0, 12.0)
    decay = np.exp(-1.0 / tau)
    noise = rng.normal(0.0, 0.04, size=kinds.size)
    temp = np.empty(kinds.size + 1)
    temp[0] = 26.0
    for i in range(kinds.size):  # first-order approach, one step per minute
        temp[i + 1] = target[i] + (temp[i] - target[i]) * decay[i] + noise[i]
    page_minutes = np.arange(spec.n_pages) * SAMPLES_PER_PAGE / spec.samples_per_minute
    page_temp = np.interp(page_minutes, np.arange(temp.size), temp)
    return np.round(page_temp, 1)


# ---------------------------------------------------------------------------------------
# the signal
# ---------------------------------------------------------------------------------------


def _iter_accel(spec: RecordingSpec, plan: _Plan) -> Iterator[tuple[int, FloatArray]]:
    """Yield (first sample, accel in g) per activity segment, in order."""
    el, az = -30.0, 0.0
    fs = spec.fs
    for i, (s0, s1, kind) in enumerate(plan.segments()):
        rng = np.random.default_rng([spec.seed, 1, i])
        n = s1 - s0
        if kind == _NONWEAR:
            acc, el, az = _gen_nonwear(rng, n, fs, el, az)
        elif kind == _SLEEP:
            acc, el, az = _gen_sleep(rng, n, fs, el, az)
        elif kind == _BED_WAKE:
            acc, el, az = _gen_bed_wake(rng, n, fs, el, az)
        elif kind == _SEDENTARY:
            acc, el, az = _gen_sedentary(rng, n, fs, el, az)
        elif kind == _LIGHT:
            acc, el, az = _gen_light(rng, n, fs, el, az)
        else:
            acc, el, az = _gen_walk(rng, n, fs, el, az, running=kind == _RUN)
        acc += _SENSOR_NOISE_G * rng.standard_normal(acc.shape, dtype=np.float32)
        yield s0, acc


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _knot_noise(rng: np.random.Generator, n: int, fs: float, knot_hz: float, dims: int) -> FloatArray:
    """Smooth noise: unit normal knots at ``knot_hz``, smoothstep-interpolated, (n, dims)."""
    step = fs / knot_hz
    knots = rng.standard_normal((int(n / step) + 2, dims))
    pos = np.arange(n) / step
    whole = np.floor(pos)
    frac = pos - whole
    # smoothstep interpolation == linear interpolation at a warped position (fast in C)
    warped = whole + frac * frac * (3.0 - 2.0 * frac)
    grid = np.arange(knots.shape[0], dtype=np.float64)
    out = np.empty((n, dims))
    for k in range(dims):
        out[:, k] = np.interp(warped, grid, knots[:, k])
    return out


def _ramp_in(n: int, fs: float, seconds: float = 2.0) -> FloatArray:
    return _smoothstep(np.arange(n) / max(seconds * fs, 1.0))


def _orientation_path(
    n: int, el0: float, az0: float, events: Sequence[tuple[int, int, float, float]]
) -> tuple[FloatArray, FloatArray]:
    """Hold an orientation and move smoothly to each event's (elevation, azimuth).

    ``events`` are (start sample, transition samples, elevation deg, azimuth deg), sorted.
    Azimuth moves the short way round.
    """
    el = np.empty(n)
    az = np.empty(n)
    cur_el, cur_az = el0, az0
    pos = 0
    for s, length, t_el, t_az in events:
        s = min(max(s, pos), n)
        el[pos:s] = cur_el
        az[pos:s] = cur_az
        t_az = cur_az + ((t_az - cur_az + 180.0) % 360.0 - 180.0)
        length = max(length, 1)
        e = min(s + length, n)
        if e > s:
            f = _smoothstep((np.arange(s, e) - s + 1.0) / length)
            el[s:e] = cur_el + (t_el - cur_el) * f
            az[s:e] = cur_az + (t_az - cur_az) * f
        cur_el, cur_az = t_el, t_az
        pos = e
        if pos >= n:
            break
    el[pos:] = cur_el
    az[pos:] = cur_az
    return el, az


def _unit(el_deg: FloatArray, az_deg: FloatArray) -> FloatArray:
    """Gravity direction in the device frame; elevation is SKDH's z-angle."""
    el = np.radians(el_deg)
    az = np.radians(az_deg)
    c = np.cos(el)
    return np.stack((c * np.cos(az), c * np.sin(az), np.sin(el)), axis=1)


def _bursts(
    rng: np.random.Generator,
    n: int,
    fs: float,
    every_s: tuple[float, float],
    dur_s: tuple[float, float],
    amp: tuple[float, float],
) -> FloatArray:
    """Envelope (n,) of Hann-shaped movement bursts at random intervals."""
    env = np.zeros(n)
    t = rng.uniform(*every_s) * rng.random()
    while True:
        s = int(t * fs)
        if s >= n:
            break
        length = max(int(rng.uniform(*dur_s) * fs), 2)
        e = min(s + length, n)
        env[s:e] += rng.uniform(*amp) * np.hanning(length)[: e - s]
        t += rng.uniform(*every_s)
    return env


def _enmo(acc: FloatArray) -> float:
    return float(np.maximum(np.linalg.norm(acc, axis=1) - 1.0, 0.0).mean())


def _scale_to_enmo(g: FloatArray, dyn: FloatArray, target: float, fs: float) -> float:
    """Scale factor s such that ENMO(g + s * dyn) is ``target`` (bisection)."""
    sub = slice(None, None, max(1, int(fs // 10)))
    gs, ds = g[sub], dyn[sub]
    lo, hi = 0.0, 1.0
    while _enmo(gs + hi * ds) < target and hi < 256:
        lo, hi = hi, hi * 2.0
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        if _enmo(gs + mid * ds) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


Gen = tuple[FloatArray, float, float]


def _finish(el: FloatArray, az: FloatArray, dyn: FloatArray | None) -> Gen:
    acc = _unit(el, az)
    if dyn is not None:
        acc += dyn
    return acc, float(el[-1]), float(az[-1])


def _gen_nonwear(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Taken off and laid flat on a table: still, sensor noise only."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    flat_el = side * (90.0 - rng.uniform(0.5, 2.0))  # a table is never quite level
    events = [(0, int(rng.uniform(2.0, 4.0) * fs), flat_el, rng.uniform(-180, 180))]
    el, az = _orientation_path(n, el0, az0, events)
    # handling while taking it off: a 3 s burst of movement, then nothing
    k = min(n, int(3 * fs))
    dyn = np.zeros((n, 3))
    dyn[:k] = 0.08 * np.hanning(k)[:, None] * _knot_noise(rng, k, fs, 3.0, 3)
    return _finish(el, az, dyn)


def _gen_sedentary(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Sitting or standing still-ish: drifting arm, posture changes, small gestures."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(1.5, 4.0) * fs),
                rng.uniform(-75.0, 25.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(60.0, 360.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    wob = _knot_noise(rng, n, fs, 0.7, 2) * ramp[:, None]
    el += 4.0 * wob[:, 0]
    az += 6.0 * wob[:, 1]
    env = _bursts(rng, n, fs, (15.0, 75.0), (1.0, 3.0), (0.04, 0.12))
    env += 0.01 * ramp  # fidgeting
    dyn = env[:, None] * _knot_noise(rng, n, fs, 3.0, 3)
    return _finish(el, az, dyn)


def _gen_bed_wake(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Awake in bed at night: restless, frequent small movements."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(2.0, 5.0) * fs),
                rng.uniform(-70.0, 70.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(30.0, 120.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    # turning the arm about: large, fairly quick rotations (SKDH's activity index sees them,
    # ENMO hardly does), plus small movements
    wob = _knot_noise(rng, n, fs, 1.2, 2) * ramp[:, None]
    el += 15.0 * wob[:, 0]
    az += 20.0 * wob[:, 1]
    dyn = 0.04 * _knot_noise(rng, n, fs, 3.0, 3) * ramp[:, None]
    return _finish(el, az, dyn)


def _gen_light(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Light activity (chores, slow pottering): continuous moderate movement."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(1.0, 2.5) * fs),
                rng.uniform(-80.0, 40.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(10.0, 40.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    wob = _knot_noise(rng, n, fs, 1.0, 2) * ramp[:, None]
    el += 8.0 * wob[:, 0]
    az += 10.0 * wob[:, 1]
    # a few arm rhythms per axis (0.6-2.5 Hz) with slowly wandering amplitude: steady enough
    # that nearly every 5 s epoch stays inside the light band
    secs = np.arange(n) / fs
    dyn = np.zeros((n, 3))
    for axis in range(3):
        for _ in range(3):
            f = rng.uniform(0.6, 2.5)
            dyn[:, axis] += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * secs + rng.uniform(0, 7))
    envelope = np.clip(1.0 + 0.08 * _knot_noise(rng, n, fs, 0.1, 1)[:, 0], 0.7, None)
    dyn *= (envelope * ramp)[:, None]
    g = _unit(el, az)
    scale = _scale_to_enmo(g, dyn, rng.uniform(0.068, 0.082), fs)
    return g + scale * dyn, float(el[-1]), float(az[-1])


def _gen_walk(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float, *, running: bool) -> Gen:
    """Walking or running: periodic arm swing and step impacts."""
    if running:
        cadence, swing, base_el = rng.uniform(2.5, 2.9), rng.uniform(25, 40), rng.uniform(-50, -20)
        target = rng.uniform(0.55, 0.85)
    else:
        cadence, swing, base_el = rng.uniform(1.75, 2.05), rng.uniform(15, 25), rng.uniform(-20, 10)
        target = rng.uniform(0.17, 0.33)
    base_az = 180.0 + rng.uniform(-25.0, 25.0)
    el, az = _orientation_path(n, el0, az0, [(0, int(2.0 * fs), base_el, base_az)])
    ramp = _ramp_in(n, fs, 3.0)
    freq = cadence * (1.0 + 0.02 * _knot_noise(rng, n, fs, 0.1, 1)[:, 0])
    step_phase = 2.0 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)
    arm_phase = 0.5 * step_phase
    el = el + swing * ramp * np.sin(arm_phase)
    az = az + 3.0 * _knot_noise(rng, n, fs, 0.5, 1)[:, 0] * ramp
    g = _unit(el, az)
    # local frame: along gravity, along increasing elevation (swing), and lateral
    elr, azr = np.radians(el), np.radians(az)
    e_el = np.stack((-np.sin(elr) * np.cos(azr), -np.sin(elr) * np.sin(azr), np.cos(elr)), axis=1)
    e_az = np.stack((-np.sin(azr), np.cos(azr), np.zeros(n)), axis=1)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    vertical = np.sin(step_phase + ph[0]) + 0.35 * np.sin(2.0 * step_phase + ph[1])
    forward = 0.8 * np.sin(arm_phase + ph[2])
    lateral = 0.3 * np.sin(step_phase + ph[2])
    amp = np.clip(1.0 + 0.1 * _knot_noise(rng, n, fs, 0.2, 1)[:, 0], 0.5, None) * ramp
    dyn = (vertical[:, None] * g + forward[:, None] * e_el + lateral[:, None] * e_az) * amp[:, None]
    dyn += 0.15 * _knot_noise(rng, n, fs, 8.0, 3) * amp[:, None]
    scale = _scale_to_enmo(g, dyn, target, fs)
    return g + scale * dyn, float(el[-1]), float(az[-1])


def _gen_sleep(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Asleep: still postures, small postural shifts, twitches, slow drift."""
    events: list[tuple[int, int, float, float]] = []
    posture_el, posture_az = rng.uniform(-60.0, 60.0), rng.uniform(-180.0, 180.0)
    events.append((0, int(rng.uniform(3.0, 6.0) * fs), posture_el, posture_az))
    cur_el, cur_az = posture_el, posture_az
    big: list[tuple[int, int]] = [(0, events[0][1])]
    t_posture = rng.uniform(20.0, 75.0) * 60.0
    t_shift = rng.uniform(3.0, 15.0) * 60.0
    while min(t_posture, t_shift) * fs < n:
        if t_posture <= t_shift:
            # a new posture at least 30 degrees away (elevation or azimuth)
            while True:
                new_el, new_az = rng.uniform(-70.0, 70.0), rng.uniform(-180.0, 180.0)
                d_az = abs((new_az - cur_az + 180.0) % 360.0 - 180.0)
                if abs(new_el - cur_el) > 30.0 or d_az > 45.0:
                    break
            length = int(rng.uniform(3.0, 8.0) * fs)
            events.append((int(t_posture * fs), length, new_el, new_az))
            big.append((int(t_posture * fs), length))
            cur_el, cur_az = new_el, new_az
            t_posture += rng.uniform(20.0, 75.0) * 60.0
        else:
            d_el = rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.0)
            d_az = rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.0)
            cur_el = float(np.clip(cur_el + d_el, -80.0, 80.0))
            cur_az = cur_az + d_az
            events.append((int(t_shift * fs), int(rng.uniform(0.5, 1.5) * fs), cur_el, cur_az))
            t_shift += rng.uniform(3.0, 15.0) * 60.0
    events.sort(key=lambda ev: ev[0])
    el, az = _orientation_path(n, el0, az0, events)
    drift = _knot_noise(rng, n, fs, 1.0 / 120.0, 2) * _ramp_in(n, fs, 60.0)[:, None]
    el += 0.3 * drift[:, 0]
    az += 0.3 * drift[:, 1]
    env = _bursts(rng, n, fs, (240.0, 900.0), (0.5, 1.5), (0.08, 0.16))
    for s, length in big:  # movement while turning over
        e = min(s + length + int(2 * fs), n)
        if e > s:
            env[s:e] += 0.12 * np.hanning(e - s + 2)[1:-1][: e - s]
    dyn = env[:, None] * _knot_noise(rng, n, fs, 4.0, 3)
    return _finish(el, az, dyn)


# ---------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------


def _fmt_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S:") + f"{dt.microsecond // 1000:03d}"


def _file_header(spec: RecordingSpec, plan: _Plan) -> bytes:
    start = spec.start
    end = start + timedelta(seconds=spec.n_samples / spec.fs)
    fs_txt = f"{spec.fs:g}"
    lines = [
        "Device Identity",
        f"Device Unique Serial Code:{plan.serial}",
        "Device Type:GENEActiv",
        "Device Model:1.1",
        "Device Firmware Version:Ver4.08a date14Jul14",
        f"Calibration Date:{_fmt_time(datetime.combine(start.date(), time(13, 49, 24)) - timedelta(days=400))}",
        "",
        "Device Capabilities",
        "Accelerometer Range:-8 to 8",
        "Accelerometer Resolution:0.0039",
        "Accelerometer Units:g",
        "Light Meter Range:0 to 5000",
        "Light Meter Resolution:5",
        "Light Meter Units:lux",
        "Temperature Sensor Range:0 to 70",
        "Temperature Sensor Resolution:0.1",
        "Temperature Sensor Units:deg. C",
        "",
        "Configuration Info",
        f"Measurement Frequency:{fs_txt} Hz",
        f"Measurement Period:{math.ceil(spec.days * 24)} Hours",
        f"Start Time:{_fmt_time(start)}",
        "Time Zone:GMT +00:00",
        "",
        "Trial Info",
        "Study Centre:biomarkerflow synthetic",
        "Study Code:SYNTH",
        "Investigator ID:",
        "Exercise Type:",
        "Config Operator ID:",
        f"Config Time:{_fmt_time(start - timedelta(minutes=17, seconds=22.312))}",
        f"Config Notes:synthetic recording, seed {spec.seed}",
        "Extract Operator ID:",
        f"Extract Time:{_fmt_time(end + timedelta(days=1, minutes=8, seconds=28.461))}",
        "Extract Notes:(device clock drift 0.000s)",
        "",
        "Subject Info",
        f"Device Location Code:{spec.location}",
        f"Subject Code:{spec.subject}",
        "Date of Birth:1900-1-1",
        "Sex:",
        "Height:",
        "Weight:",
        "Handedness Code:",
        "Subject Notes:",
        "",
        "Calibration Data",
        f"x gain:{int(plan.gain[0])}",
        f"x offset:{int(plan.offset[0])}",
        f"y gain:{int(plan.gain[1])}",
        f"y offset:{int(plan.offset[1])}",
        f"z gain:{int(plan.gain[2])}",
        f"z offset:{int(plan.offset[2])}",
        f"Volts:{_VOLTS}",
        f"Lux:{_LUX}",
        "",
        "Memory Status",
        f"Number of Pages:{spec.n_pages}",
        "",
    ]
    assert len(lines) == _HEADER_LINES
    return ("\n".join(lines) + "\n").encode("ascii")


class _PageWriter:
    """Quantise, hex-encode and write whole pages as samples arrive."""

    _BATCH_PAGES = 1200

    def __init__(self, fh: IO[bytes], spec: RecordingSpec, plan: _Plan) -> None:
        self.fh = fh
        self.spec = spec
        self.plan = plan
        self.pending: list[FloatArray] = []
        self.n_pending = 0
        self.page = 0  # next page to write
        page_ms = round(SAMPLES_PER_PAGE * 1000 / spec.fs)
        t0 = np.datetime64(spec.start, "ms")
        stamps = t0 + np.arange(spec.n_pages, dtype=np.int64) * np.timedelta64(page_ms, "ms")
        txt = np.datetime_as_string(stamps, unit="ms")
        self.stamps = [s.replace("T", " ").replace(".", ":") for s in txt.tolist()]
        # battery discharges slowly over the recording
        self.battery = 4.18 - 0.025 * np.arange(spec.n_pages) * SAMPLES_PER_PAGE / spec.fs / 86400
        self.fs_txt = f"{spec.fs:.1f}"

    def add(self, accel: FloatArray) -> None:
        self.pending.append(accel)
        self.n_pending += accel.shape[0]
        if self.n_pending >= self._BATCH_PAGES * SAMPLES_PER_PAGE:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        if self.page != self.spec.n_pages:
            raise RuntimeError(f"wrote {self.page} pages, expected {self.spec.n_pages}")

    def _flush(self, *, final: bool) -> None:
        if not self.pending:
            return
        acc = np.concatenate(self.pending, axis=0) if len(self.pending) > 1 else self.pending[0]
        n_pages = acc.shape[0] // SAMPLES_PER_PAGE
        if final and acc.shape[0] % SAMPLES_PER_PAGE:
            raise RuntimeError("sample count is not a whole number of pages")
        n_take = n_pages * SAMPLES_PER_PAGE
        rest = acc[n_take:]
        self.pending = [rest] if rest.shape[0] else []
        self.n_pending = rest.shape[0]
        if n_pages:
            self._write(acc[:n_take])

    def _write(self, acc: FloatArray) -> None:
        plan = self.plan
        s0 = self.page * SAMPLES_PER_PAGE
        n = acc.shape[0]
        counts = np.rint((acc * plan.gain + plan.offset) / 100.0)
        counts = np.clip(counts, -2048, 2047).astype(np.int32) & 0xFFF
        light10 = np.clip(np.rint(plan.sample_light(s0, s0 + n) * _VOLTS / _LUX), 0, 1023)
        values = np.empty((n, 4), dtype=np.int32)
        values[:, :3] = counts
        values[:, 3] = light10.astype(np.int32) << 2  # button and reserved bits are 0
        n_pages = n // SAMPLES_PER_PAGE
        rows = np.empty((n_pages, 3601), dtype=np.uint8)
        rows[:, :3600] = _HEX3[values].reshape(n_pages, 3600)
        rows[:, 3600] = ord("\n")
        chunks: list[bytes] = []
        serial = plan.serial
        for j in range(n_pages):
            k = self.page + j
            chunks.append(
                (
                    "Recorded Data\n"
                    f"Device Unique Serial Code:{serial}\n"
                    f"Sequence Number:{k}\n"
                    f"Page Time:{self.stamps[k]}\n"
                    "Unassigned:\n"
                    f"Temperature:{plan.page_temperature[k]:.1f}\n"
                    f"Battery voltage:{self.battery[k]:.4f}\n"
                    "Device Status:Recording\n"
                    f"Measurement Frequency:{self.fs_txt}\n"
                ).encode("ascii")
            )
            chunks.append(rows[j].tobytes())
        self.fh.write(b"".join(chunks))
        self.page += n_pages


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _unix_seconds(dt: datetime) -> float:
    """Seconds since 1970 of a naive time read as UTC (what SKDH's readers return)."""
    return (dt - datetime(1970, 1, 1)).total_seconds()


def _parse_page_times(stamps: npt.NDArray[np.str_]) -> FloatArray:
    """'YYYY-MM-DD HH:MM:SS:mmm' -> seconds since 1970 (naive)."""
    iso = [s[:19].replace(" ", "T") + "." + s[20:23] for s in stamps.tolist()]
    ms = np.array(iso, dtype="datetime64[ms]").astype(np.int64)
    return ms / 1000.0


@contextmanager
def _atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing under a temporary name in the same folder; rename
    it into place on success, remove it on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
