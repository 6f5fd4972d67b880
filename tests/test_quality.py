"""The per-file quality report on recordings whose defects are known: each injected defect
(gaps, clipping, a 1970 tail, clock drift, a stuck axis, a calibration offset, timestamps
that go backwards or repeat) is found with the right magnitude, and a clean recording
reports none; wear hours per calendar day in the subject's zone (a DST night included)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh.quality import QualitySettings, report
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

FS = 50.0
START = 1_700_000_000.0  # 2023-11-14, UTC


def recording(seconds: float = 3600.0, gravity: float = 1.0, seed: int = 1) -> dict[str, Any]:
    """A clean recording: still (noise 3 mg) for its first half, then moving (a 0.4 g sine)."""
    n = int(seconds * FS)
    rng = np.random.default_rng(seed)
    accel = rng.normal(0.0, 0.003, (n, 3))
    accel[:, 2] += gravity
    moving = np.arange(n) >= n // 2
    accel[moving, 0] += 0.4 * np.sin(np.arange(moving.sum()) / FS * 2 * np.pi)
    temperature = np.linspace(21.0, 33.0, n)
    return {"time": START + np.arange(n) / FS, "accel": accel, "fs": FS, "temperature": temperature}


def row(data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    quality, _ = report(data, **kwargs)
    return dict(quality.iloc[0])


def test_a_clean_recording_reports_no_defect() -> None:
    found = row(recording())
    assert found["samples"] == 180_000
    assert found["duration_seconds"] == pytest.approx(3600 - 1 / FS)
    assert found["sample_rate_observed_hz"] == pytest.approx(FS, rel=1e-9)
    assert abs(found["rate_difference_ppm"]) < 0.01
    for name in ("timestamps_invalid", "timestamps_backwards", "timestamps_repeated", "gaps"):
        assert found[name] == 0, name
    assert found["clipping_fraction_x"] == found["clipping_fraction_y"] == found["clipping_fraction_z"] == 0.0
    assert found["stuck_seconds_longest_y"] < 0.1
    assert found["calibration_error_g"] == pytest.approx(0.0, abs=0.001)
    assert found["still_windows"] == 180  # the still half, in 10 s windows
    assert (found["temperature_min_c"], found["temperature_max_c"]) == (21.0, 33.0)
    assert found["nonwear_fraction"] is None and found["valid_days"] is None  # no wear step ran
    assert found["idle_sleep_fraction"] is None  # not an ActiGraph


def test_gaps_are_counted_with_their_length() -> None:
    data = recording()
    keep = np.ones(len(data["time"]), bool)
    keep[60_000:61_500] = False  # 30 s
    keep[90_000:90_500] = False  # 10 s
    data = {**data, "time": data["time"][keep], "accel": data["accel"][keep]}
    found = row(data)
    assert found["gaps"] == 2
    assert found["gap_seconds_total"] == pytest.approx(40.0, abs=1e-6)
    assert found["gap_seconds_longest"] == pytest.approx(30.0, abs=1e-6)
    assert found["sample_rate_observed_hz"] == pytest.approx(FS, rel=1e-9)  # gaps are not drift


def test_clipping_is_the_share_of_samples_held_at_the_range() -> None:
    data = recording()
    accel = data["accel"].copy()
    for first in range(0, 180_000, 10_000):  # 18 flat tops of 100 samples at +8 g: 1%
        accel[first : first + 100, 0] = 8.0
    accel[5, 1] = -7.99  # one sample near the range on y: a peak, not clipping
    found = row({**data, "accel": accel})
    assert found["range_g"] == 8.0
    assert found["clipping_fraction_x"] == pytest.approx(0.01)
    assert found["clipping_fraction_y"] == 0.0


def test_a_1970_tail_is_counted_and_left_out_of_the_time_span() -> None:
    data = recording()
    time = data["time"].copy()
    time[-900:] = np.arange(900) / FS  # the clock reset: 1970-01-01
    found = row({**data, "time": time})
    assert found["timestamps_invalid"] == 900
    assert found["duration_seconds"] == pytest.approx((180_000 - 900 - 1) / FS)
    assert found["timestamps_backwards"] == 0  # the tail is not read as steps back


def test_clock_drift_is_the_rate_difference_in_ppm() -> None:
    data = recording()
    data["time"] = START + np.arange(len(data["time"])) / FS * (1 + 100e-6)  # 100 ppm slow samples
    found = row(data)
    assert found["rate_difference_ppm"] == pytest.approx(-100.0, abs=0.5)


def test_a_stuck_axis_reports_its_longest_run() -> None:
    data = recording()
    accel = data["accel"].copy()
    accel[100_000:106_000, 1] = accel[100_000, 1]  # y stuck for 120 s
    found = row({**data, "accel": accel})
    assert found["stuck_seconds_longest_y"] == pytest.approx(120.0)
    assert found["stuck_seconds_longest_x"] < 0.1


def test_calibration_error_before_and_after() -> None:
    data = recording(gravity=1.02)
    calibrated = data["accel"].copy()
    calibrated[:, 2] -= 0.02
    found = row(data, calibrated_accel=calibrated)
    assert found["calibration_error_g"] == pytest.approx(0.02, abs=0.001)
    assert found["calibration_error_after_g"] == pytest.approx(0.0, abs=0.001)


def test_timestamps_going_backwards_or_repeating() -> None:
    data = recording()
    time = data["time"].copy()
    time[1000] = time[999]  # repeated
    time[2001:2004] = time[2000]  # three more
    time[50_000] = time[49_990]  # back by 10 samples
    found = row({**data, "time": time})
    assert found["timestamps_repeated"] == 4
    assert found["timestamps_backwards"] == 1


def test_valid_days_count_wear_hours_per_local_day_across_dst() -> None:
    """Three local days in New York around the end of DST (2023-11-05 has 25 hours): worn
    20 h of the first, all 25 h of the second, 10 h of the third; valid at 16 h: two."""
    zone = "America/New_York"
    fs = 1.0  # one sample a second is enough for bouts
    start = 1_699_070_400.0  # 2023-11-04 00:00 EDT
    seconds = (24 + 25 + 24) * 3600
    time = start + np.arange(seconds) / fs
    data = {"time": time, "accel": np.tile([0.0, 0.0, 1.0], (seconds, 1)), "fs": fs}
    bouts = np.array([[2 * 3600, 22 * 3600], [24 * 3600, 49 * 3600 + 10 * 3600]])  # index = seconds
    quality, days = report(data, wear_bouts=bouts, tz_name=zone, settings=QualitySettings(valid_day_hours=16))
    assert days is not None
    assert list(days["day"]) == [date(2023, 11, 4), date(2023, 11, 5), date(2023, 11, 6)]
    assert list(days["wear_hours"]) == pytest.approx([20.0, 25.0, 10.0])
    assert list(days["valid"]) == [True, True, False]
    found = dict(quality.iloc[0])
    assert (found["valid_days"], found["days"]) == (2, 3)
    assert found["nonwear_fraction"] == pytest.approx(1 - 55 / 73, abs=1e-4)
    assert found["time_zone"] == zone and found["start_unix"] == start
    assert found["start_local"] == pd.Timestamp("2023-11-04 00:00:00")  # local wall-clock time, naive
    assert found["start"] == pd.Timestamp("2023-11-04 04:00:00", tz="UTC")


def test_a_processed_recording_has_its_report_in_results_and_on_its_run_page(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    """End to end on SKDH's real GENEActiv sample: the run writes `quality` (queryable) and the
    dashboard's run page shows it; figures checked against the reader's own arrays."""
    import skdh

    from biomarkerflow.api import create_app
    from biomarkerflow.service import Platform
    from tests.test_dashboard import _client, _csrf, _page

    catalog, _ = scanned_study(
        tmp_path,
        study="qc",
        files={"S1_wrist.bin": samples / "gnactv_sample.bin"},
        steps="- CalibrateAccelerometer: {min_hours: 0.001}\n",
        metadata=None,
        requirements="min_files_per_subject: 1",
    )
    process(catalog, executor)
    [run] = catalog.runs("qc")
    assert run.outcome == "succeeded", run.error
    read = skdh.io.ReadBin().predict(file=str(samples / "gnactv_sample.bin"))
    platform = Platform(home=tmp_path / "home")
    [found] = platform.query("qc", "SELECT * FROM quality").to_dict("records")
    assert found["samples"] == len(read["time"]) and found["sample_rate_nominal_hz"] == read["fs"]
    assert found["temperature_max_c"] == pytest.approx(float(np.max(read["temperature"])))

    client = _client(create_app(platform))
    token = platform.create_token("qc", "read").token
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": _csrf(form.text), "next": "/"}).status_code == 303
    page = _page(client, f"/runs/{run.id}")
    section = page[page.index("<h2>Data quality</h2>") : page.index("</section>", page.index("<h2>Data quality</h2>"))]
    assert "50 Hz nominal" in section and f"{found['gaps']}" in section and "°C" in section
    platform.close()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_the_longest_run_is_found_across_chunks(chunk: int) -> None:
    """Runs that start, end or lie wholly inside a chunk, or span several: the same longest
    run as counting sample by sample."""
    from biomarkerflow.plugins.skdh.quality import _longest_run

    rng = np.random.default_rng(chunk)
    for _ in range(20):
        values = np.repeat(rng.integers(0, 3, 40), rng.integers(1, 12, 40)).astype(float)
        expected = longest = 1
        for before, after in zip(values[:-1], values[1:], strict=True):
            longest = longest + 1 if after == before else 1
            expected = max(expected, longest)
        assert _longest_run(values, chunk) == expected
    assert _longest_run(np.empty(0), chunk) == 0
    assert _longest_run(np.ones(10), chunk) == 10
