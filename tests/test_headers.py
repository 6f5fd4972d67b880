"""Recording facts from file headers (what cost estimates know before a file runs), checked
against SKDH's own readers on the real sample files, and read from S3 with one ranged GET."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from biomarkerflow.catalog.manager import FileRecord
from biomarkerflow.cost.estimate import file_inputs, files_inputs
from biomarkerflow.plugins.skdh.headers import HEAD_BYTES, recording_facts
from biomarkerflow.storage import store
from tests.s3server import recorded_requests
from tests.test_storage_s3 import put


def skdh_reading(path: Path) -> tuple[float, int]:
    import skdh

    reader = skdh.io.ReadBin() if path.suffix == ".bin" else skdh.io.ReadCwa()
    data = reader.predict(file=str(path))
    return float(data["fs"]), len(data["time"])


@pytest.mark.parametrize("name", ["gnactv_sample.bin", "ax3_sample.cwa", "ax6_sample.cwa"])
def test_header_facts_equal_what_skdh_reads(samples: Path, name: str) -> None:
    path = samples / name
    facts = recording_facts(path.read_bytes()[:HEAD_BYTES], path.stat().st_size, path.suffix)
    assert facts is not None
    rate, samples_read = skdh_reading(path)
    assert (facts.sample_rate_hz, facts.samples) == (rate, samples_read)
    assert facts.recording_seconds == samples_read / rate


def test_header_facts_of_a_long_synthetic_recording(wrist_recording: Path) -> None:
    facts = recording_facts(wrist_recording.read_bytes()[:HEAD_BYTES], wrist_recording.stat().st_size, "bin")
    assert facts is not None
    assert facts.sample_rate_hz == 25.0
    assert facts.recording_seconds == pytest.approx(1.25 * 86_400, abs=300 / 25)  # whole 300-sample pages


@pytest.mark.parametrize(
    ("head", "suffix"),
    [
        (b"Device Identity\nMeasurement Frequency:50 Hz\n", "bin"),  # cut before the page count
        (b"Measurement Frequency:0 Hz\nNumber of Pages:3\n", "bin"),
        (b"MD" + b"\0" * 1500, "cwa"),  # no data block after the header
        (b"time,x,y,z\n0,1,2,3\n", "csv"),  # a format whose header says nothing
    ],
)
def test_headers_that_say_nothing_give_none(head: bytes, suffix: str) -> None:
    assert recording_facts(head, 10**6, suffix) is None


def record(url: str, relative_path: str, size: int) -> FileRecord:
    return FileRecord(
        id=1,
        study_id="s",
        url=url,
        relative_path=relative_path,
        subject="S1",
        size=size,
        fingerprint="f",
        fingerprint_seen_at=datetime(2026, 1, 1),
        state="READY",
        reason=None,
        attempts=0,
        current_run_id=None,
        last_error=None,
    )


def test_estimate_inputs_read_the_header_with_one_ranged_get(samples: Path, s3_bucket: str, s3_endpoint: str) -> None:
    data = (samples / "ax3_sample.cwa").read_bytes()
    url = f"{s3_bucket}/raw/S1_ax3.cwa"
    put(url, data)
    with recorded_requests(s3_endpoint) as requests:
        (inputs,) = files_inputs([record(url, "raw/S1_ax3.cwa", len(data))])
    assert requests == [("GET", f"/{s3_bucket.removeprefix('s3://')}/raw/S1_ax3.cwa")]
    with recorded_requests(s3_endpoint) as requests:  # a format whose header says nothing is not read
        (csv,) = files_inputs([record(f"{s3_bucket}/raw/S2.csv", "raw/S2.csv", 1_000)])
    assert requests == [] and (csv.device, csv.sample_rate_hz) == ("csv", None)
    assert store.read_head(url, HEAD_BYTES) == data[:HEAD_BYTES]
    assert (inputs.sample_rate_hz, inputs.recording_seconds, inputs.device) == (200.0, 58_800 / 200, "cwa")


def test_an_unreadable_header_leaves_the_size(tmp_path: Path) -> None:
    missing = record(str(tmp_path / "gone.bin"), "gone.bin", 5_000)
    inputs = file_inputs(missing)
    assert (inputs.input_bytes, inputs.device, inputs.sample_rate_hz, inputs.recording_seconds) == (
        5_000,
        "bin",
        None,
        None,
    )
