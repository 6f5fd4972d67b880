"""The activity plot: drawn from a minute grid and events (size, content, one row per day),
written into the run folder beside the tables and named in its provenance and lineage, and
shown on the dashboard's run page through a read-scoped route confined to the run's files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh import plots, timeline
from biomarkerflow.plugins.skdh.workflow import JobPlan
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

ZONE = "America/New_York"
DAYS = 3
START = pd.Timestamp("2026-03-02 00:00", tz=ZONE)  # local midnight: three whole local days
NONWEAR_GREY = (200, 200, 200)  # plots.COLOURS["nonwear"]


def _grid_and_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three local days: a sine of activity, non-wear 12:00-14:00 each day, sleep 23:00-07:00,
    and one bout of each activity level on the second day."""
    minutes = np.arange(DAYS * 1440)
    first = int(START.timestamp())
    enmo = 0.05 + 0.05 * np.sin(minutes / 90.0) ** 2
    data = {"time": first + 60.0 * minutes + 30.0, "accel": np.column_stack([enmo * 0, enmo * 0, 1 + enmo])}
    grid = timeline.minute_grid(data)
    rows: list[tuple[str, str | None, pd.Timestamp, pd.Timestamp]] = []
    for day in range(DAYS):
        noon = START + pd.Timedelta(days=day, hours=12)
        rows.append(("nonwear", None, noon, noon + pd.Timedelta(hours=2)))
        night = START + pd.Timedelta(days=day, hours=23)
        rows.append(("sleep", "", night, night + pd.Timedelta(hours=8)))
    for offset, level in enumerate(("sedentary", "light", "moderate", "vigorous")):
        begin = START + pd.Timedelta(days=1, hours=15 + offset)
        rows.append(("activity", level, begin, begin + pd.Timedelta(minutes=45)))
    events = pd.DataFrame(rows, columns=["event", "detail", "start", "end"])
    events["start"] = pd.to_datetime(events["start"]).dt.tz_convert("UTC")
    events["end"] = pd.to_datetime(events["end"]).dt.tz_convert("UTC")
    return grid, events


def test_the_plot_has_one_row_per_day_and_its_bands(tmp_path: Path) -> None:
    grid, events = _grid_and_events()
    path = plots.activity_plot(grid, events, ZONE, tmp_path / "activity.png", title="P01 · P01_wrist.bin")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path).convert("RGB")
    assert image.size == plots.figure_pixels(DAYS)
    pixels = np.asarray(image).astype(int)
    assert pixels.std() > 10  # not blank
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    for key in ("nonwear", "sleep", "sedentary", "light", "moderate", "vigorous"):
        wanted = tuple(int(plots.COLOURS[key][i : i + 2], 16) for i in (1, 3, 5))
        assert wanted in colours, key
    # One row per day: down the 13:00 column, non-wear grey comes in DAYS separate stretches.
    width = image.size[0]
    column = pixels[:, int(width * (0.11 + 0.88 * 13 / 24))]
    grey_rows = np.flatnonzero(np.all(column == NONWEAR_GREY, axis=1))
    # The ENMO line crosses a band (a few pixels); the gap between two days' rows is wider.
    stretches = 1 + int(np.count_nonzero(np.diff(grey_rows) > 4))
    assert stretches == DAYS


def test_an_empty_recording_still_gets_a_picture(tmp_path: Path) -> None:
    data = {"time": np.empty(0), "accel": np.empty((0, 3))}
    events = timeline.events(data, {}, JobPlan(reader=None, steps=()), [], None, [], None)
    path = plots.activity_plot(timeline.minute_grid(data), events, None, tmp_path / "a.png")
    assert Image.open(path).size == plots.figure_pixels(0)


def test_a_run_folder_holds_its_plot_and_the_run_page_shows_it(
    tmp_path: Path, wrist_recording: Path, executor: LocalExecutor
) -> None:
    from biomarkerflow.api import create_app
    from biomarkerflow.errors import NotFoundError
    from biomarkerflow.results import writer
    from biomarkerflow.results.lineage import lineage
    from biomarkerflow.service import Platform
    from tests.test_dashboard import _client, _csrf, _page

    catalog, _ = scanned_study(
        tmp_path,
        study="plots",
        files={"P01_wrist.bin": wrist_recording},
        steps="- GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}\n- AccelThresholdWearDetection: {}\n",
        metadata=f"subject,tz_name\nP01,{ZONE}\n",
        requirements="min_files_per_subject: 1",
    )
    process(catalog, executor)
    [run] = catalog.runs("plots")
    assert run.outcome == "succeeded", run.error
    folder = Path(str(run.result_location))
    picture = folder / "activity.png"
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["files"] == {
        "activity.png": {"bytes": picture.stat().st_size, "sha256": hashlib.sha256(picture.read_bytes()).hexdigest()}
    }
    days = pd.date_range("2026-03-02", "2026-03-03")  # 10:00 on the 2nd to 16:00 on the 3rd
    assert Image.open(picture).size == plots.figure_pixels(len(days))
    traced = lineage(str(picture), catalog)
    assert traced["result"]["run_files"][0]["url"].endswith("/activity.png")
    assert "activity.png" in traced["result"]["files"]

    platform = Platform(home=tmp_path / "home")
    client = _client(create_app(platform))
    url = f"/api/v1/runs/{run.id}/files/activity.png"
    assert client.get(url).status_code == 401  # neither a session nor a token
    token = platform.create_token("viewer", "read").token
    by_token = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert by_token.status_code == 200 and by_token.headers["content-type"] == "image/png"
    assert by_token.content == picture.read_bytes()
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": _csrf(form.text), "next": "/"}).status_code == 303
    page = _page(client, f"/runs/{run.id}")
    assert f'src="{url}"' in page and f'href="{url}"' in page
    assert client.get(url).content == picture.read_bytes()  # the session's cookie is enough
    # Only the files the run's provenance names, and only inside its folder.
    for name in ("provenance.json", "wear.parquet", "..%2Fprovenance.json", "%2E%2E%2F_SUCCESS", "activity.png%00"):
        refused = client.get(f"/api/v1/runs/{run.id}/files/{name}")
        assert refused.status_code == 404, name
        assert refused.content != (folder / "provenance.json").read_bytes()
    for name in ("../provenance.json", f"../{run.id}/activity.png", str(picture)):
        with pytest.raises(NotFoundError):
            writer.read_run_file(str(folder), name)
    platform.close()


@pytest.mark.parametrize("name", ["../x.png", "provenance.json", "wear.parquet", ".hidden.png", "a/b.png"])
def test_a_run_file_cannot_take_a_name_outside_its_folder_or_a_tables(name: str) -> None:
    from biomarkerflow.results import writer

    with pytest.raises(ValueError, match="cannot name a file"):
        writer.check_file_name(name)
