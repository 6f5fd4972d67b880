"""Tests of the synthetic GENEActiv recording generator (biomarkerflow.demo.synthetic)."""

from __future__ import annotations

import math
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skdh

from biomarkerflow.demo.run import SHARED_SAMPLES
from biomarkerflow.demo.synthetic import (
    GroundTruth,
    RecordingSpec,
    generate_recording,
    make_recordings,
    read_geneactiv_bin,
    write_geneactiv_bin,
)

SAMPLE_DIR = SHARED_SAMPLES  # ../shared/data/skdh, found as every test finds it
SAMPLE_BIN = SAMPLE_DIR / "gnactv_sample.bin"
SAMPLE_REF = SAMPLE_DIR / "reference" / "io_gnactv_data.npz"

# SKDH warns that naive timestamps ignore DST, and at 12.5 Hz that the header's integer
# rate differs from the pages' rate; neither matters here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


def _read_bin(path: Path) -> dict:
    return skdh.io.ReadBin().predict(file=str(path))


def _keys(lines: list[bytes]) -> list[str]:
    return [ln.split(b":", 1)[0].decode() for ln in lines]


# ---------------------------------------------------------------------------------------
# the format
# ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLE_BIN.exists(), reason="needs the SKDH sample files")
def test_decoder_matches_skdh_reference_on_real_sample() -> None:
    ref = np.load(SAMPLE_REF)
    data = read_geneactiv_bin(SAMPLE_BIN)
    assert data.fs == 50.0
    assert data.accel.shape == ref["accel"].shape == (900, 3)
    # SKDH's reference comes from a rounded CSV export: it matches to 5e-5 only
    np.testing.assert_allclose(data.accel, ref["accel"], rtol=0, atol=5e-5)
    np.testing.assert_allclose(data.time, ref["time"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.temperature, ref["temperature"])
    np.testing.assert_array_equal(data.light, ref["light"])
    # and exactly what SKDH's C reader returns
    live = _read_bin(SAMPLE_BIN)
    np.testing.assert_array_equal(data.accel, live["accel"])
    np.testing.assert_array_equal(data.light, live["light"])


@pytest.mark.skipif(not SAMPLE_BIN.exists(), reason="needs the SKDH sample files")
def test_written_layout_matches_real_sample(tmp_path: Path) -> None:
    spec = RecordingSpec("L01", days=1 / 24, fs=25.0, seed=1)
    path = tmp_path / "l01.bin"
    write_geneactiv_bin(path, spec)
    ours, real = path.read_bytes(), SAMPLE_BIN.read_bytes()
    assert b"\r" not in ours and b"\r" not in real  # LF line endings, like the device file
    ours_lines, real_lines = ours.split(b"\n"), real.split(b"\n")
    assert ours.endswith(b"\n") and real.endswith(b"\n")
    # same header keys in the same 59 lines, same 10-line page layout
    assert _keys(ours_lines[:59]) == _keys(real_lines[:59])
    assert _keys(ours_lines[59:68]) == _keys(real_lines[59:68])
    n_pages = int(ours_lines[57].split(b":")[1])
    assert n_pages == spec.n_pages == (len(ours_lines) - 1 - 59) // 10
    assert all(len(ln) == 3600 for ln in ours_lines[68::10])
    assert ours_lines[19] == b"Measurement Frequency:25 Hz"
    assert ours_lines[59 + 3] == b"Page Time:2026-03-02 10:00:00:000"
    assert ours_lines[59 + 10 + 3] == b"Page Time:2026-03-02 10:00:12:000"  # 300 / 25 Hz


@pytest.mark.parametrize("fs", [50.0, 12.5])
def test_round_trip_through_skdh_reader(tmp_path: Path, fs: float) -> None:
    spec = RecordingSpec("R01", days=2 / 24, fs=fs, seed=7)
    path = tmp_path / "r01.bin"
    truth = write_geneactiv_bin(path, spec)
    rec, truth2 = generate_recording(spec)
    pd.testing.assert_frame_equal(truth.minutes, truth2.minutes)

    res = _read_bin(path)
    n = spec.n_samples
    assert n == round(2 * 3600 * fs)
    assert res["fs"] == fs
    assert res["accel"].shape == (n, 3)
    # 12-bit quantisation: within one count (100 / gain g) of the generated signal
    err = np.abs(res["accel"] - rec.accel)
    assert (err <= 100.0 / rec.gain).all()
    assert err.max() > 0  # it really is quantised
    start = (spec.start - datetime(1970, 1, 1)).total_seconds()
    np.testing.assert_allclose(res["time"], start + np.arange(n) / fs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(res["temperature"], rec.temperature)
    # light: 10 bits of lux * Volts / Lux, read back as floor(count * Lux / Volts)
    step = 886 / 42
    assert (np.abs(res["light"] - rec.light) <= step).all()
    # our numpy decoder reads exactly what SKDH reads
    ours = read_geneactiv_bin(path)
    np.testing.assert_array_equal(ours.accel, res["accel"])
    np.testing.assert_array_equal(ours.time, res["time"])
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    spec = RecordingSpec("D01", days=0.25, fs=25.0, seed=3)
    write_geneactiv_bin(a, spec)
    write_geneactiv_bin(b, spec)
    write_geneactiv_bin(c, RecordingSpec("D01", days=0.25, fs=25.0, seed=4))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="GENEActiv"):
        RecordingSpec("X", fs=30.0)
    with pytest.raises(ValueError, match="3600"):
        RecordingSpec("X", days=0.0005, fs=50.0)
    with pytest.raises(ValueError, match="whole minute"):
        RecordingSpec("X", start=datetime(2026, 1, 1, 8, 0, 30))
    with pytest.raises(ValueError, match="subject"):
        RecordingSpec("bad name")


def test_make_recordings_writes_bins_and_truth(tmp_path: Path) -> None:
    truths = make_recordings(tmp_path, ["P01", "P02"], days=0.25, fs=10.0, seed=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "P01_truth.csv",
        "P01_wrist.bin",
        "P02_truth.csv",
        "P02_wrist.bin",
    ]
    assert (tmp_path / "P01_wrist.bin").read_bytes() != (tmp_path / "P02_wrist.bin").read_bytes()
    back = GroundTruth.read_csv(tmp_path / "P01_truth.csv")
    pd.testing.assert_frame_equal(back.minutes, truths["P01"].minutes, check_dtype=False)
    assert list(back.minutes.columns) == ["time", "worn", "asleep", "intensity", "walking"]
    assert len(back.minutes) == 6 * 60


# ---------------------------------------------------------------------------------------
# the content
# ---------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the True runs."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def test_truth_is_what_the_signal_shows() -> None:
    check_truth_against_signal(RecordingSpec("T01", days=2.0, fs=25.0, seed=5))


def check_truth_against_signal(spec: RecordingSpec) -> None:
    fs = spec.fs
    rec, truth = generate_recording(spec)
    m = truth.minutes
    assert list(m.columns) == ["time", "worn", "asleep", "intensity", "walking"]
    assert len(m) == round(spec.days * 1440)
    assert m["time"].iloc[0] == pd.Timestamp(spec.start)

    # ENMO on 5 s epochs, classified with SKDH's migueles_wrist_adult cut-points
    n5 = int(5 * fs)
    enmo = np.maximum(np.linalg.norm(rec.accel, axis=1) - 1.0, 0.0)
    epoch = enmo[: len(m) * 12 * n5].reshape(-1, n5).mean(axis=1)
    level = np.digitize(epoch, [0.050, 0.110, 0.440])
    label = np.repeat(m["intensity"].to_numpy(), 12)
    for name, want, min_agree in [
        ("sedentary", 0, 0.99),
        ("light", 1, 0.95),
        ("moderate", 2, 0.99),
        ("vigorous", 3, 0.99),
    ]:
        sel = label == name
        if name != "vigorous":
            assert sel.sum() >= 12 * 20, name  # at least 20 minutes of each
        if sel.any():
            assert (level[sel] == want).mean() >= min_agree, name
    assert (m["walking"] == m["intensity"].isin(["moderate", "vigorous"])).all()

    # non-wear: daytime gaps of 1.5-3 h, flat and still, cooling toward room temperature
    gaps = _runs(~m["worn"].to_numpy())
    assert gaps, "no non-wear gap"
    spm = int(60 * fs)
    temp = rec.temperature
    for a, b in gaps:
        assert 90 <= b - a <= 180
        assert 8 <= m["time"].iloc[a].hour < 20
        seg = rec.accel[(a + 1) * spm : b * spm]
        assert (seg.std(axis=0) < 0.003).all()
        assert abs(abs(seg[:, 2].mean()) - 1.0) < 0.002
        assert temp[b * spm - 1] < 25.0 < temp[a * spm]

    # sleep: one period a night, still arm (tiny 5 s arm-angle changes), warm device
    nights = truth.nights()
    assert len(nights) == round(spec.days)
    for row in nights.itertuples():
        assert 6 * 60 <= row.period_minutes <= 11 * 60
        assert row.onset.hour >= 21 or row.onset.hour < 2
        i0 = int((row.onset - m["time"].iloc[0]) / pd.Timedelta(minutes=1))
        seg = rec.accel[(i0 + 10) * spm : (i0 + 70) * spm]
        z = np.degrees(np.arctan(seg[:, 2] / np.hypot(seg[:, 0], seg[:, 1])))
        dz = np.abs(np.diff(z[: z.size // n5 * n5].reshape(-1, n5).mean(axis=1)))
        assert np.median(dz) < 0.1
        assert temp[(i0 + 60) * spm] > 32.0

    # worn-awake temperature settles near 33 C
    awake = (m["worn"] & ~m["asleep"]).to_numpy()
    idx = np.flatnonzero(awake)[120:] * spm
    assert 31.0 < np.median(temp[idx]) < 34.0

    summary = truth.summary()
    assert list(summary.columns) == [
        "date",
        "recorded_hours",
        "wear_hours",
        "sleep_minutes",
        "mvpa_minutes",
    ]
    assert summary["recorded_hours"].sum() == pytest.approx(spec.days * 24)
    assert summary["sleep_minutes"].sum() == m["asleep"].sum()
    assert summary["wear_hours"].sum() == pytest.approx(m["worn"].sum() / 60)


def _floor15(x: int) -> int:
    return x // 15 * 15


def test_skdh_pipeline_finds_the_truth(tmp_path: Path) -> None:
    """A 2-day 25 Hz recording through SKDH's wear, sleep and activity pipeline."""
    check_skdh_finds_truth(RecordingSpec("S01", days=2.0, fs=25.0, seed=2), tmp_path)


def check_skdh_finds_truth(spec: RecordingSpec, folder: Path) -> None:
    fs = spec.fs
    path = folder / f"{spec.subject}_wrist.bin"
    truth = write_geneactiv_bin(path, spec)

    pipeline = skdh.Pipeline()
    pipeline.add(skdh.io.ReadBin())
    pipeline.add(skdh.preprocessing.CalibrateAccelerometer(min_hours=24))
    pipeline.add(skdh.preprocessing.GetDayWindowIndices(bases=(0, 12), periods=(24, 24)))
    pipeline.add(skdh.preprocessing.AccelThresholdWearDetection())
    pipeline.add(skdh.sleep.Sleep(day_window=(12, 24)))
    pipeline.add(skdh.activity.ActivityLevelClassification(cutpoints="migueles_wrist_adult"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pipeline.run(file=str(path))
    m = truth.minutes
    total_min = spec.n_samples / fs / 60

    # --- wear: results["AccelThresholdWearDetection"]["wear"] = [start, stop] sample pairs
    wear = np.asarray(res["AccelThresholdWearDetection"]["wear"])
    skdh_wear = float((wear[:, 1] - wear[:, 0]).sum()) / fs / 60
    truth_wear = float(m["worn"].sum())
    assert abs(skdh_wear - truth_wear) / truth_wear <= 0.10
    # SKDH's known shortfall, made explicit: a window (60 min, starting every 15 min from
    # the recording start) is non-wear only when it lies wholly inside the still part of a
    # gap (which begins a few seconds after the gap's first minute, once the device has
    # been taken off and laid down), and each non-wear window marks its first 15 min. A
    # gap [a, b) in minutes is therefore detected as [floor15(a) + 15, floor15(b - 60) + 15):
    # 46-74 min (60 on average) short of the truth, not 0.
    gaps = _runs(~m["worn"].to_numpy())
    assert gaps
    expected_nonwear = sum(_floor15(b - 60) - _floor15(a) for a, b in gaps)
    skdh_nonwear = total_min - skdh_wear
    assert abs(skdh_nonwear - expected_nonwear) <= 15, (skdh_nonwear, expected_nonwear)
    assert all(45 < (b - a) - (_floor15(b - 60) - _floor15(a)) < 75 for a, b in gaps)

    # --- sleep: results["Sleep"] columns per noon-to-noon day, named by the evening's date
    sleep = res["Sleep"]
    nights = truth.nights()
    assert len(nights) >= 2
    dates = list(sleep["Date"])
    for row in nights.itertuples():
        i = dates.index(str(row.night))
        tst = sleep["total sleep time"][i]
        assert np.isfinite(tst)
        assert abs(tst - row.sleep_minutes) <= 60, (row.night, tst, row.sleep_minutes)
        tso_start = pd.Timestamp(sleep["TSO Start"][i])
        assert abs(tso_start - row.onset) <= pd.Timedelta(minutes=30)

    # --- activity: results["ActivityLevelClassification"] per calendar day (0-24 h)
    act = res["ActivityLevelClassification"]
    per_day = truth.summary().set_index(truth.summary()["date"].astype(str))
    compared = 0
    for day, mvpa in zip(act["Date"], act["wake MVPA 5s epoch [min]"], strict=True):
        if not math.isfinite(mvpa):  # SKDH skips days with < 10 h wear
            continue
        want = per_day.loc[day, "mvpa_minutes"]
        assert abs(mvpa - want) <= max(5.0, 0.1 * want), (day, mvpa, want)
        compared += 1
    assert compared >= 2
