"""Whole recordings: a spec's schedule, signal and device put together, in memory or as files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from biomarkerflow.demo.synthetic.atomic import atomic_open
from biomarkerflow.demo.synthetic.geneactiv import Device, PageWriter, file_header
from biomarkerflow.demo.synthetic.motion import accel_segments
from biomarkerflow.demo.synthetic.schedule import Schedule
from biomarkerflow.demo.synthetic.spec import SAMPLES_PER_PAGE, RecordingSpec, subject_spec
from biomarkerflow.demo.synthetic.truth import GroundTruth

FloatArray = npt.NDArray[np.float64]


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


def write_geneactiv_bin(path: Path, spec: RecordingSpec) -> GroundTruth:
    """Write the recording described by ``spec`` as a GENEActiv ``.bin`` file.

    The file is written under a temporary name in the same folder and renamed at the end,
    so readers never see a partial file. Memory use is bounded by the longest activity
    segment (a night), not the recording length.

    Returns:
        The per-minute ground truth of the recording.
    """
    path = Path(path)
    schedule = Schedule.build(spec)
    device = Device.of(spec)
    header = file_header(spec, device)
    with atomic_open(path) as fh:
        fh.write(header)
        writer = PageWriter(fh, spec, schedule, device)
        for _start, accel in accel_segments(spec, schedule):
            writer.add(accel)
        writer.close()
    return schedule.truth()


def generate_recording(spec: RecordingSpec) -> tuple[SyntheticRecording, GroundTruth]:
    """Generate the signal of ``spec`` in memory (what :func:`write_geneactiv_bin` writes).

    Holds the whole recording in memory: meant for tests and recordings of hours.
    """
    schedule = Schedule.build(spec)
    device = Device.of(spec)
    accel = np.concatenate([a for _s, a in accel_segments(spec, schedule)], axis=0)
    t0 = _unix_seconds(spec.start)
    time_s = t0 + np.arange(spec.n_samples, dtype=np.float64) / spec.fs
    rec = SyntheticRecording(
        time=time_s,
        accel=accel,
        light=schedule.sample_light(0, spec.n_samples),
        page_temperature=schedule.page_temperature,
        gain=device.gain.copy(),
        offset=device.offset.copy(),
    )
    return rec, schedule.truth()


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


def _unix_seconds(dt: datetime) -> float:
    """Seconds since 1970 of a naive time read as UTC (what SKDH's readers return)."""
    return (dt - datetime(1970, 1, 1)).total_seconds()
