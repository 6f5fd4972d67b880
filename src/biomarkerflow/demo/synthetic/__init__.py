"""Deterministic synthetic multi-day wrist recordings in GENEActiv ``.bin`` format.

The generator writes files that SKDH's own reader (``skdh.io.ReadBin``) opens, together
with the per-minute ground truth the signal was built from (worn or not, asleep or not,
activity intensity, walking), so that tests and the demo can compare SKDH's biomarkers
with the truth rather than only check that they were computed.

One module per step, in the order a recording is made:

    spec.py        RecordingSpec: what to generate; the spec of the n-th demo subject
    schedule.py    the day plan: each minute's activity kind, light and temperature
    motion.py      the signal model: wrist acceleration for each activity kind
    geneactiv.py   the .bin format: the device's calibration, the page writer, a reader
    truth.py       GroundTruth: the per-minute truth, per night and per day
    recordings.py  the whole recording, in memory or written with its truth
    atomic.py      files appear whole or not at all

Everything is drawn from ``numpy.random.default_rng`` streams derived from the spec's
seed, so the same spec always gives a byte-identical file.
"""

from biomarkerflow.demo.synthetic.geneactiv import GeneActivData, read_geneactiv_bin
from biomarkerflow.demo.synthetic.recordings import (
    SyntheticRecording,
    generate_recording,
    make_recordings,
    write_geneactiv_bin,
)
from biomarkerflow.demo.synthetic.spec import (
    GENEACTIV_RATES,
    INTENSITIES,
    MIN_SAMPLES,
    SAMPLES_PER_PAGE,
    RecordingSpec,
    subject_spec,
)
from biomarkerflow.demo.synthetic.truth import GroundTruth

__all__ = [
    "GENEACTIV_RATES",
    "INTENSITIES",
    "MIN_SAMPLES",
    "SAMPLES_PER_PAGE",
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
