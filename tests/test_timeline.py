"""The subject timeline (`events`) and the per-minute grid, on recordings whose truth is known.

On the synthetic wrist recording (its generator's truth: worn, asleep, intensity per
minute), run by the real pipeline: non-wear events are the wear table's complement, sleep
events are the Sleep table's periods, activity minutes per level and day agree with SKDH's
activity table. Through the platform, two subjects in two zones: the consolidated `events`
keeps timestamp columns and the README's two queries return the right rows. On small
synthetic data dicts: a stream at another rate lands in the right minutes; gaps and repairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh import timeline, workflow
from biomarkerflow.plugins.skdh.workflow import JobPlan, StepPlan
from biomarkerflow.stages.processing import process
from tests.conftest import WRIST_STEPS, scanned_study

ZONE = "Europe/Berlin"
START = 1_772_442_000.0  # 2026-03-02 09:00 UTC
WRIST_PLAN = JobPlan(
    reader=None,
    steps=(
        StepPlan("CalibrateAccelerometer", {"min_hours": 24}),
        StepPlan("GetDayWindowIndices", {"bases": [0, 12], "periods": [24, 24]}),
        StepPlan("AccelThresholdWearDetection", {}),
        StepPlan("Sleep", {"day_window": [12, 24]}),
        StepPlan("ActivityLevelClassification", {"cutpoints": "migueles_wrist_adult"}),
    ),
)
SKDH_LEVELS = {"sedentary": "sed", "light": "light", "moderate": "mod", "vigorous": "vig"}
README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Timeline:
    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame  # per minute, naive local time

    def events(self, kind: str) -> pd.DataFrame:
        found = self.tables["events"]
        return found[found["event"] == kind].reset_index(drop=True)


@pytest.fixture(scope="module")
def wrist_timeline(wrist_recording: Path, tmp_path_factory: pytest.TempPathFactory) -> Timeline:
    from biomarkerflow.demo.synthetic import RecordingSpec
    from biomarkerflow.demo.synthetic.schedule import Schedule

    # The spec conftest's `wrist_recording` was written from: its truth, minute by minute.
    truth = Schedule.build(RecordingSpec(subject="P01", days=1.25, fs=25.0, seed=11)).truth()
    scratch = tmp_path_factory.mktemp("timeline")
    output = workflow.run(wrist_recording, WRIST_PLAN, {"tz_name": ZONE}, subject="P01", scratch=scratch)
    assert output.files == {"activity.png": scratch / "activity.png"}
    return Timeline(output.tables, truth.minutes)


def _utc_seconds(column: pd.Series) -> np.ndarray:
    return (column - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def test_events_have_utc_times_and_the_subjects_wall_clock(wrist_timeline: Timeline) -> None:
    found = wrist_timeline.tables["events"]
    assert list(found.columns) == list(timeline.EVENT_COLUMNS)
    assert str(found["start"].dtype) == str(found["end"].dtype) == "datetime64[us, UTC]"
    assert str(found["start_local"].dtype) == "datetime64[us]"
    assert set(found["event"]) == {"wear", "nonwear", "sleep", "activity"}  # what the pipeline has
    assert set(found["time_zone"]) == {ZONE}
    local = found["start"].dt.tz_convert(ZONE).dt.tz_localize(None)
    assert (local == found["start_local"]).all()
    assert np.allclose(_utc_seconds(found["end"]) - _utc_seconds(found["start"]), found["duration_seconds"])
    # The truth's clock is the subject's: the recording starts at 10:00 in Berlin, 09:00 UTC.
    assert found["start_local"].min() == wrist_timeline.truth["time"].iloc[0]


def test_nonwear_events_are_the_recording_outside_the_wear_bouts(wrist_timeline: Timeline) -> None:
    wear = wrist_timeline.tables["wear"]
    worn, nonworn = wrist_timeline.events("wear"), wrist_timeline.events("nonwear")
    assert np.allclose(_utc_seconds(worn["start"]), wear["start_unix"])
    assert np.allclose(_utc_seconds(worn["end"]), wear["end_unix"])
    quality = wrist_timeline.tables["quality"].iloc[0]
    edges = np.concatenate(([quality["start_unix"]], wear[["start_unix", "end_unix"]].to_numpy().ravel()))
    edges = np.append(edges, quality["end_unix"]).reshape(-1, 2)
    expected = edges[edges[:, 1] > edges[:, 0]]
    assert np.allclose(_utc_seconds(nonworn["start"]), expected[:, 0])
    assert np.allclose(_utc_seconds(nonworn["end"]), expected[:, 1])
    # Against the truth: the middle of every true non-wear period is in a non-wear event
    # (SKDH's detected bouts come out shorter than the truth, DESIGN.md).
    truth = wrist_timeline.truth
    off = truth.loc[~truth["worn"], "time"]
    periods = off.groupby((off.diff() != pd.Timedelta(minutes=1)).cumsum())
    for _, minutes in periods:
        middle = minutes.iloc[len(minutes) // 2]
        inside = (nonworn["start_local"] <= middle) & (
            nonworn["start_local"] + pd.to_timedelta(nonworn["duration_seconds"], unit="s") > middle
        )
        assert inside.any(), f"true non-wear around {middle} is not a non-wear event"


def test_sleep_events_are_the_sleep_tables_periods(wrist_timeline: Timeline) -> None:
    sleep = wrist_timeline.tables["sleep"].dropna(subset=["TSO Start Timestamp"])
    found = wrist_timeline.events("sleep")
    assert len(found) == len(sleep) >= 1
    assert np.allclose(_utc_seconds(found["start"]), sleep["TSO Start Timestamp"])
    assert np.allclose(found["duration_seconds"], sleep["TSO Duration"] * 60)
    assert list(found["detail"]) == [f"total sleep time {m:.0f} min" for m in sleep["total sleep time"]]
    # Against the truth: each night's sleep onset and wake within 45 min (TSO is time in bed).
    nights = pd.DataFrame({"onset": wrist_timeline.truth.loc[wrist_timeline.truth["asleep"], "time"]}).assign(
        night=lambda f: (f["onset"] - pd.Timedelta(hours=12)).dt.date
    )
    for (_, event), (_, night) in zip(found.iterrows(), nights.groupby("night"), strict=True):
        onset, wake = night["onset"].min(), night["onset"].max() + pd.Timedelta(minutes=1)
        end_local = event["start_local"] + pd.Timedelta(seconds=event["duration_seconds"])
        assert abs(event["start_local"] - onset) < pd.Timedelta(minutes=45)
        assert abs(end_local - wake) < pd.Timedelta(minutes=45)


def test_activity_minutes_per_day_agree_with_skdh(wrist_timeline: Timeline) -> None:
    """Per local day and level, the activity events' minutes against SKDH's `wake <level> 5s
    epoch [min]` (days SKDH analysed). Tolerance: 10 min or 10%, whichever is larger. Why:
    SKDH classifies 5 s epochs and the timeline whole clock minutes, so each minute that
    mixes two levels (a walk's first and last, the edges of sleep and wear) can count for
    the other level: a day has a few dozen such minutes; SKDH also rounds wear and sleep
    edges to its epochs."""
    activity = wrist_timeline.tables["activity"]
    found = wrist_timeline.events("activity")
    found = found.assign(day=found["start_local"].dt.strftime("%Y-%m-%d"), minutes=found["duration_seconds"] / 60)
    ours = found.groupby(["day", "detail"])["minutes"].sum()
    compared = 0
    for _, day in activity.iterrows():
        if not np.isfinite(day["wake sed 5s epoch [min]"]):
            continue  # a day SKDH left out (less wear than min_wear_time)
        for level, short in SKDH_LEVELS.items():
            skdh_minutes = float(day[f"wake {short} 5s epoch [min]"])
            mine = float(ours.get((day["Date"], level), 0.0))
            assert abs(mine - skdh_minutes) <= max(10.0, 0.1 * skdh_minutes), (day["Date"], level, mine, skdh_minutes)
            compared += 1
    assert compared >= 4
    # Against the truth: the moderate-or-vigorous minutes (walks, runs) are found as such.
    truth = wrist_timeline.truth
    active = truth["intensity"].isin(["moderate", "vigorous"]).sum()
    assert found.loc[found["detail"].isin(["moderate", "vigorous"]), "minutes"].sum() == pytest.approx(active, rel=0.1)


def test_the_minute_grid_aligns_a_stream_at_another_rate() -> None:
    """10 minutes at 50 Hz whose |a| is 1 + 0.01 g x minute; light as long as the
    acceleration, temperature at 1 Hz with its own times, and 90 s without samples."""
    fs, minutes = 50.0, 10
    time = START + 15.0 + np.arange(int(minutes * 60 * fs)) / fs  # starts 15 s into a minute
    magnitude = 1.0 + 0.01 * ((time - START) // 60)
    accel = np.column_stack([np.zeros_like(time), np.zeros_like(time), magnitude])
    keep = (time < START + 300) | (time >= START + 390)  # 05:00 to 06:30 missing
    temperature_time = START + 15.0 + np.arange(minutes * 60)
    data: dict[str, Any] = {
        "time": time[keep],
        "accel": accel[keep],
        "fs": fs,
        "light": ((time - START) // 60)[keep] * 100.0,
        "temperature": 20.0 + (temperature_time - START) // 60,
        "temperature_time": temperature_time,
    }
    grid = timeline.minute_grid(data)
    assert list(grid["minute_unix"]) == [int(START) + 60 * i for i in range(minutes + 1)]
    assert str(grid["minute"].dtype) == "datetime64[us, UTC]"
    assert list(grid["samples"]) == [2250, 3000, 3000, 3000, 3000, 0, 1500, 3000, 3000, 3000, 750]
    expected = np.array([0.01 * i for i in range(minutes + 1)])
    assert np.allclose(grid["enmo_g"].drop(5), np.delete(expected, 5))
    assert np.isnan(grid["enmo_g"][5])
    assert np.allclose(grid["light"].drop(5), np.delete(expected * 10_000, 5))
    assert np.allclose(grid["temperature_c"], 20.0 + np.arange(minutes + 1))  # its own 1 Hz times
    # A stream at its own rate without times is spread over the recording's span.
    spread = timeline.minute_grid({**data, "temperature": np.array([10.0, 30.0]), "temperature_time": None})
    assert spread["temperature_c"].iloc[0] == 10.0 and spread["temperature_c"].iloc[-1] == 30.0
    # Times going back inside the recording: the same minutes, by index instead.
    shuffled = np.random.default_rng(0).permutation(len(data["time"]))
    again = timeline.minute_grid({"time": data["time"][shuffled], "accel": data["accel"][shuffled]})
    assert np.allclose(again["enmo_g"], grid["enmo_g"], equal_nan=True)


def test_gaps_and_repairs_are_events() -> None:
    fs = 10.0
    time = START + np.arange(36_000) / fs
    time[18_000:] += 120.0  # a 2 min gap after 30 min
    data = {"time": time, "accel": np.tile([0.0, 0.0, 1.0], (len(time), 1)), "fs": fs}
    found = timeline.events(data, {}, JobPlan(reader=None, steps=()), [], None, ["a repair: trimmed"], None)
    assert list(found["event"]) == ["repair", "gap"]  # in time order: a repair is at the recording's start
    repair, gap = found.iloc[0], found.iloc[1]
    assert (gap["event"], gap["source"]) == ("gap", "quality")
    assert gap["start"] == pd.Timestamp(time[17_999] + 1 / fs, unit="s", tz="UTC")
    assert gap["duration_seconds"] == pytest.approx(120.0)
    assert (repair["event"], repair["detail"]) == ("repair", "a repair: trimmed")
    assert found["time_zone"].isna().all()  # no zone: the device's clock, read as UTC
    assert (found["start_local"] == found["start"].dt.tz_localize(None)).all()


def _readme_queries() -> list[str]:
    section = README.read_text().split("### Subject timeline", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def test_readme_queries_answer_across_two_time_zones(
    tmp_path: Path, wrist_recording: Path, executor: LocalExecutor
) -> None:
    """Two subjects, one in Berlin and one in New York (the same recording, so the same
    wall-clock day): the consolidated `events` keeps timestamp columns, and the README's
    queries give the events at a moment and the gait bouts of the nights."""
    from biomarkerflow.service import Platform

    catalog, _ = scanned_study(
        tmp_path,
        study="zones",
        files={"P01_wrist.bin": wrist_recording, "P02_wrist.bin": wrist_recording},
        steps=WRIST_STEPS + "    - GaitLumbar: {}\n",
        metadata=f"subject,height_m,tz_name\nP01,1.7,{ZONE}\nP02,1.8,America/New_York\n",
    )
    process(catalog, executor)
    runs = catalog.runs("zones")
    assert [r.outcome for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    platform = Platform(home=tmp_path / "home")
    types = platform.query("zones", "SELECT column_name, column_type FROM (DESCRIBE events)")
    described = dict(zip(types["column_name"], types["column_type"], strict=True))
    assert described["start"] == described["end"] == "TIMESTAMP WITH TIME ZONE"
    assert described["start_local"] == "TIMESTAMP"
    events = platform.query("zones", "SELECT * FROM events")
    assert set(events["time_zone"]) == {ZONE, "America/New_York"}

    at_moment, night_gait = _readme_queries()
    moment = pd.Timestamp("2026-03-03 02:00:00", tz="UTC")
    answer = platform.query("zones", at_moment)
    mine = events[(events["subject"] == "P01") & (events["start"] <= moment) & (events["end"] > moment)]
    assert sorted(answer["event"]) == sorted(mine["event"])
    # 03:00 in Berlin: asleep, wearing it (GaitLumbar, a lumbar algorithm, finds a day-long
    # "bout" on this wrist recording: whatever SKDH says is on the timeline).
    assert {"sleep", "wear"} <= set(answer["event"]) and "nonwear" not in set(answer["event"])

    answer = platform.query("zones", night_gait)
    hours = events["start_local"].dt.hour
    expected = events[(events["event"] == "gait") & ((hours >= 22) | (hours < 6))]
    assert len(answer) == len(expected) >= 1
    assert set(answer["subject"]) == set(expected["subject"])
    assert sorted(answer["start_local"]) == sorted(expected["start_local"])
    platform.close()
