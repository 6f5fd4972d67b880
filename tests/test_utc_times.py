"""Times in results are UTC instants with the subject's zone named beside them and their
wall-clock time in `*_local` columns, so one study's table keeps timestamp types across
subjects in different zones (here three, two of them crossing into daylight saving time)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.results.consolidate import unified_schema
from biomarkerflow.service import Platform
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

# (zone, local start): Berlin and New York each record through their spring-forward night.
SUBJECTS = {
    "P01": ("Europe/Berlin", datetime(2026, 3, 28, 20, 0)),
    "P02": ("America/New_York", datetime(2026, 3, 7, 20, 0)),
    "P03": ("Asia/Kolkata", datetime(2026, 3, 20, 20, 0)),
}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin

    folder = tmp_path_factory.mktemp("zones")
    paths = {}
    for subject, (_, start) in SUBJECTS.items():
        path = folder / f"{subject}_wrist.bin"
        write_geneactiv_bin(path, RecordingSpec(subject=subject, days=0.5, fs=25.0, start=start, seed=7))
        paths[path.name] = path
    return paths


def test_three_time_zones_keep_timestamp_types_in_the_study_tables(
    tmp_path: Path, recordings: dict[str, Path], executor: LocalExecutor
) -> None:
    rows = "\n".join(f"{subject},{zone}" for subject, (zone, _) in SUBJECTS.items())
    catalog, _ = scanned_study(
        tmp_path,
        study="zones",
        files=recordings,
        steps="- AccelThresholdWearDetection: {}\n",
        metadata=f"subject,tz_name\n{rows}\n",
        requirements="metadata: [tz_name]",
    )
    info = process(catalog, executor)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"] * 3, [o.error for _, o, _ in info.outcomes]
    platform = Platform(home=tmp_path / "home")
    for table in ("wear", "quality", "events"):
        types = platform.query(
            "zones", f"SELECT DISTINCT typeof(start) AS utc, typeof(start_local) AS wall FROM {table}"
        ).to_dict("records")
        assert types == [{"utc": "TIMESTAMP WITH TIME ZONE", "wall": "TIMESTAMP"}], (table, types)
        # Every row's wall-clock time is its UTC instant in its subject's zone, DST nights included.
        wrong = platform.query(
            "zones",
            f"SELECT subject, start, start_local, time_zone FROM {table} "
            "WHERE start_local <> timezone(time_zone, start)",
        )
        assert wrong.empty, (table, wrong)
    zones = platform.query("zones", "SELECT DISTINCT subject, time_zone FROM wear ORDER BY subject")
    assert dict(zip(zones["subject"], zones["time_zone"], strict=True)) == {s: z for s, (z, _) in SUBJECTS.items()}
    # The spring-forward night: Berlin's wall clock skips 02:00-03:00, so 4 h of UTC from its
    # evening start end at 01:00 local + 1 h more than a naive subtraction would say.
    berlin = platform.query(
        "zones",
        'SELECT min(start) AS first, max("end") AS last, min(start_local) AS first_local, '
        "max(end_local) AS last_local FROM wear WHERE subject = 'P01'",
    ).iloc[0]
    utc_hours = (berlin["last"] - berlin["first"]).total_seconds() / 3600
    wall_hours = (berlin["last_local"] - berlin["first_local"]).total_seconds() / 3600
    assert wall_hours == pytest.approx(utc_hours + 1, abs=1e-6)  # the clock jumped forward an hour
    platform.close()


def test_runs_written_with_local_zones_merge_as_utc_instants() -> None:
    """Tables from before times were UTC (one zone per subject) still consolidate as timestamps."""
    berlin = pa.schema([("start", pa.timestamp("ns", tz="Europe/Berlin"))])
    new_york = pa.schema([("start", pa.timestamp("ns", tz="America/New_York"))])
    naive = pa.schema([("start", pa.timestamp("ns"))])
    assert unified_schema([berlin, new_york]).field("start").type == pa.timestamp("us", tz="UTC")
    assert unified_schema([naive, pa.schema([("start", pa.timestamp("us"))])]).field("start").type == pa.timestamp("us")
    assert unified_schema([berlin, naive]).field("start").type == pa.large_string()  # instants vs wall clocks
