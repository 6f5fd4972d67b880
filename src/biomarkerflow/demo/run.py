"""`biomarkerflow demo`: a small, complete study run end to end on this machine.

It writes a workspace with two studies, runs discovery and processing, shows a subject
waiting for missing metadata, supplies it, finishes, and compares the biomarkers with
the synthetic recordings' ground truth.

Two of its parts need something from outside the repository, and the demo says so when
it has to leave one out (a line starting "left out:", with the reason and the fix):

- `demo-lab-gait` needs SKDH's real device files (ax3_sample.cwa, ax6_sample.cwa,
  gnactv_sample.bin). They are looked for in the folder BIOMARKERFLOW_SAMPLES names, or
  else in ../shared/data/skdh beside the repository (then beside the current folder).
- `demo-wrist-skdh-0.16.15` needs a runtime with SKDH 0.16.15, built with uv from the
  package index on first use (offline, only from uv's cache).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from biomarkerflow.catalog.manager import Catalog, StudyRecord
from biomarkerflow.errors import BiomarkerflowError, RuntimeUnavailableError
from biomarkerflow.runtimes.environment import Runtimes
from biomarkerflow.terminal import line, styled

SHARED_SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "skdh"
SAMPLES_ENV = "BIOMARKERFLOW_SAMPLES"  # a folder holding REAL_SAMPLES, instead of SHARED_SAMPLES
REAL_SAMPLES = ("ax3_sample.cwa", "ax6_sample.cwa", "gnactv_sample.bin")
WAITING_SUBJECT_INDEX = -1  # the last synthetic subject starts without a height

WRIST_CONFIG = """\
study: demo-wrist
description: Free-living wrist study (synthetic GENEActiv recordings with ground truth)
data:
  location: ../data/wrist
  include: ["**/*.cwa", "**/*.bin"]
  subject: '(?P<subject>[A-Za-z0-9]+)_'
  reader: auto
metadata:
  - location: ../data/subjects.csv
requirements:
  metadata: [height_m]
  min_files_per_subject: 1
  stable_seconds: 0
pipeline:
  package: scikit-digital-health==0.17.18
  steps:
    - CalibrateAccelerometer: {min_hours: 24}
    - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
    - AccelThresholdWearDetection: {}
    - Sleep: {day_window: [12, 24]}
    - ActivityLevelClassification: {cutpoints: migueles_wrist_adult}
output:
  location: ../results/demo-wrist
"""

# The first subject again, pinned to an older SKDH: it runs in its own uv-built runtime,
# side by side with the other studies, and its numbers differ as the versions do.
OLD_VERSION = "0.16.15"
OLD_VERSION_CONFIG = f"""\
study: demo-wrist-skdh-{OLD_VERSION}
description: The first demo subject again, with the sleep pipeline of SKDH {OLD_VERSION}
data:
  location: ../data/wrist
  include: ["S01_*.bin"]
  subject: '(?P<subject>[A-Za-z0-9]+)_'
metadata:
  - location: ../data/subjects.csv
pipeline:
  package: scikit-digital-health=={OLD_VERSION}
  steps:
    - CalibrateAccelerometer: {{min_hours: 24}}
    - GetDayWindowIndices: {{bases: [0, 12], periods: [24, 24]}}
    - AccelThresholdWearDetection: {{}}
    - Sleep: {{day_window: [12, 24]}}
output:
  location: ../results/demo-wrist-skdh-{OLD_VERSION}
"""

LAB_CONFIG = """\
study: demo-lab-gait
description: Short lab recordings from the SKDH repository (real devices), lumbar gait
data:
  location: ../data/lab
  include: ["*.cwa", "*.bin"]
  subject: '(?P<subject>[A-Za-z0-9]+)_'
metadata:
  - location: ../data/lab_subjects.csv
requirements:
  metadata: [height_m]
pipeline:
  package: scikit-digital-health==0.17.18
  steps:
    - GaitLumbar: {}
output:
  location: ../results/demo-lab-gait
"""


def sample_locations() -> list[Path]:
    """Where the demo looks for SKDH's sample files, in order.

    The folder BIOMARKERFLOW_SAMPLES names, if set (and then only there); else ../shared/data/skdh
    beside the repository, then beside the current folder.
    """
    configured = os.environ.get(SAMPLES_ENV, "").strip()
    if configured:
        return [Path(configured).expanduser().resolve()]
    beside_cwd = (Path.cwd().parent / "shared" / "data" / "skdh").resolve()
    return list(dict.fromkeys([SHARED_SAMPLES, beside_cwd]))


def find_samples() -> Path | None:
    """The first of `sample_locations()` that holds every one of REAL_SAMPLES."""
    for candidate in sample_locations():
        if all((candidate / name).is_file() for name in REAL_SAMPLES):
            return candidate
    return None


@dataclass(frozen=True)
class LeftOut:
    """A part of the demo it could not include here: which, why, and what would include it."""

    study: str
    what: str
    because: str
    remedy: str

    def __str__(self) -> str:
        return f"left out: {self.study} ({self.what}), because {self.because.rstrip('. ')}; {self.remedy}"


LAB_STUDY = "demo-lab-gait"
OLD_VERSION_STUDY = f"demo-wrist-skdh-{OLD_VERSION}"


def samples_left_out() -> LeftOut | None:
    """Why `demo-lab-gait` cannot be included (its sample files are not found), or None."""
    if find_samples() is not None:
        return None
    reasons = []
    for location in sample_locations():
        missing = [name for name in REAL_SAMPLES if not (location / name).is_file()]
        if not location.is_dir():
            reasons.append(f"{location} does not exist")
        else:
            reasons.append(f"{location} has no {', '.join(missing)}")
    return LeftOut(
        LAB_STUDY,
        "SKDH's real device files",
        " and ".join(reasons),
        f"put the sample files ({', '.join(REAL_SAMPLES)}) in {sample_locations()[0]}, "
        f"or point {SAMPLES_ENV} at a folder holding them, to include it",
    )


def old_version_left_out(runtimes: Runtimes) -> LeftOut | None:
    """Why `demo-wrist-skdh-0.16.15` cannot be included (its runtime cannot be built), or None.

    Builds the runtime when it is missing (with uv, from the package index; about 15 s).
    """
    try:
        runtimes.for_pin(f"scikit-digital-health=={OLD_VERSION}")
    except RuntimeUnavailableError as exc:
        return LeftOut(
            OLD_VERSION_STUDY,
            f"the first subject again under SKDH {OLD_VERSION}",
            f"its runtime cannot be built here: {exc.message}",
            "connect to the package index (or set UV_INDEX_URL to a mirror), then run the demo again to include it",
        )
    return None


def build_workspace(
    workspace: Path, *, subjects: int, days: float, seed: int, samples: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Write configs, recordings and metadata; returns ground truth per subject (daily).

    `demo-lab-gait` is written only when `samples` (a folder holding REAL_SAMPLES) is given.
    """
    from biomarkerflow.demo import synthetic

    if workspace.exists():
        shutil.rmtree(workspace)
    (workspace / "studies").mkdir(parents=True)
    wrist = workspace / "data" / "wrist"
    truth_folder = workspace / "data" / "truth"
    wrist.mkdir(parents=True)
    truth_folder.mkdir(parents=True)
    names = [f"S{i + 1:02d}" for i in range(subjects)]
    truths = synthetic.make_recordings(wrist, names, days=days, fs=50.0, seed=seed)
    for truth_csv in wrist.glob("*_truth.csv"):
        truth_csv.rename(truth_folder / truth_csv.name)
    heights = [1.62 + 0.05 * i for i in range(subjects)]
    rows = [{"subject": s, "height_m": h, "tz_name": ""} for s, h in zip(names, heights, strict=True)]
    rows[WAITING_SUBJECT_INDEX]["height_m"] = None
    pd.DataFrame(rows).to_csv(workspace / "data" / "subjects.csv", index=False)
    (workspace / "studies" / "demo-wrist.yaml").write_text(WRIST_CONFIG)
    (workspace / "studies" / f"demo-wrist-skdh-{OLD_VERSION}.yaml").write_text(OLD_VERSION_CONFIG)

    if samples is not None:
        lab = workspace / "data" / "lab"
        lab.mkdir(parents=True)
        for name in REAL_SAMPLES:
            shutil.copyfile(samples / name, lab / name)
        lab_rows = [{"subject": n.split("_")[0], "height_m": 1.75} for n in REAL_SAMPLES]
        pd.DataFrame(lab_rows).to_csv(workspace / "data" / "lab_subjects.csv", index=False)
        (workspace / "studies" / f"{LAB_STUDY}.yaml").write_text(LAB_CONFIG)
    return {subject: truth.summary() for subject, truth in truths.items()}


SUMMARY_SQL = """
WITH wear AS (
    SELECT subject, SUM(duration_minutes) / 60 AS wear_hours FROM wear GROUP BY subject
), sleep AS (
    SELECT subject, AVG("total sleep time") AS sleep_minutes, COUNT("total sleep time") AS nights
    FROM sleep GROUP BY subject
), activity AS (
    SELECT subject, AVG("wake MVPA 5s epoch [min]") AS mvpa_minutes_per_day
    FROM activity WHERE "N wear hours" >= 10 GROUP BY subject
)
SELECT wear.subject, wear.wear_hours, sleep.sleep_minutes, sleep.nights, activity.mvpa_minutes_per_day
FROM wear LEFT JOIN sleep USING (subject) LEFT JOIN activity USING (subject)
ORDER BY wear.subject
"""


def _summary(output_location: str, truths: dict[str, pd.DataFrame]) -> Table:
    from biomarkerflow.results.query import run_query

    measured = run_query(output_location, SUMMARY_SQL)
    from biomarkerflow.plugins.skdh.checks import installed_version

    table = Table(title=f"demo-wrist: biomarkers per subject (SKDH {installed_version()}) vs. synthetic ground truth")
    for column in ("subject", "wear h", "truth", "sleep min/night", "truth", "MVPA min/day", "truth"):
        table.add_column(column, justify="right")
    for row in measured.itertuples(index=False):
        truth = truths.get(str(row.subject))
        truth_wear = truth_sleep = truth_mvpa = float("nan")
        if truth is not None:
            truth_wear = float(truth["wear_hours"].sum())
            nights = truth["sleep_minutes"][truth["sleep_minutes"] > 0]
            truth_sleep = float(nights.mean()) if len(nights) else float("nan")
            # Same rule as the measured column: days with at least 10 h of wear.
            truth_mvpa = float(truth["mvpa_minutes"][truth["wear_hours"] >= 10].mean())
        table.add_row(
            str(row.subject),
            f"{row.wear_hours:.1f}",
            f"{truth_wear:.1f}",
            f"{row.sleep_minutes:.0f}",
            f"{truth_sleep:.0f}",
            f"{row.mvpa_minutes_per_day:.0f}",
            f"{truth_mvpa:.0f}",
        )
    return table


VERSIONS_SQL = 'SELECT subject, Date, "total sleep time", "Wear Minutes" FROM sleep ORDER BY subject, Date'


def _versions(catalog: Catalog, new_study: StudyRecord, old_study: StudyRecord) -> Table:
    """The same recording's nights under two pinned SKDH versions, each from its own runtime."""
    from biomarkerflow.results.query import run_query

    new = run_query(new_study.output_location, VERSIONS_SQL)
    old = run_query(old_study.output_location, VERSIONS_SQL)
    merged = old.merge(new, on=["subject", "Date"], suffixes=("_old", "_new"))
    versions = {}
    for study in (old_study, new_study):
        done = [r for r in catalog.runs(study.id) if r.outcome == "succeeded"]
        versions[study.id] = (done[-1].package_version, (done[-1].lock_hash or "")[:12]) if done else ("?", "")
    (old_version, old_lock), (new_version, new_lock) = versions[old_study.id], versions[new_study.id]
    table = Table(
        title="The same recording under two pinned SKDH versions, each run in its own runtime",
        caption=f"runtime lock hashes: {old_version} {old_lock}…, {new_version} {new_lock}…",
    )
    table.add_column("subject")
    table.add_column("night")
    for label in ("sleep min", "wear min"):
        for version in (old_version, new_version):
            table.add_column(f"{label} {version}", justify="right")
    for _, row in merged.iterrows():
        table.add_row(
            str(row["subject"]),
            str(row["Date"])[:10],
            f"{row['total sleep time_old']:.0f}",
            f"{row['total sleep time_new']:.0f}",
            f"{row['Wear Minutes_old']:.1f}",
            f"{row['Wear Minutes_new']:.1f}",
        )
    return table


def _costs(catalog: Catalog, table_name: str) -> Table:
    """What each study's processing cost, failed attempts included, under the table in force."""
    from biomarkerflow.cost.reports import group_costs

    groups, total = group_costs(catalog.cost_summary(), "study")
    table = Table(title=f"What it cost ({table_name}, on-demand; settings.yaml in the home)")
    for column in ("study", "runs", "subject-days", "cost", "per subject-day"):
        table.add_column(column, justify="left" if column == "study" else "right")
    for group in [*groups, total]:
        per_day = "-" if group.per_subject_day is None else f"${group.per_subject_day:.5f}"
        table.add_row(group.key, str(group.runs), f"{group.subject_days:.1f}", f"${group.cost:.4f}", per_day)
    return table


def prepare_workspace(
    console: Console, workspace: Path, runtimes: Runtimes, *, subjects: int, days: float, seed: int
) -> tuple[dict[str, pd.DataFrame], list[LeftOut]]:
    """Stage 1: the workspace with every part that can run here; prints each part left out and why.

    Returns the ground truth per subject and the parts left out.
    """
    samples = find_samples()
    with console.status(f"Writing {subjects} synthetic {days:g}-day GENEActiv recordings at 50 Hz..."):
        truths = build_workspace(workspace, subjects=subjects, days=days, seed=seed, samples=samples)
    console.print(f"workspace: {workspace}")
    left_out = [part for part in (samples_left_out(),) if part is not None]
    old_version = old_version_left_out(runtimes)  # runtimes may live in the workspace: built after it
    if old_version is not None:
        (workspace / "studies" / f"{OLD_VERSION_STUDY}.yaml").unlink()
        left_out.append(old_version)
    for part in left_out:
        line(console, styled("note: ", "yellow"), str(part))
    return truths, left_out


def run_demo(console: Console, workspace: Path, *, subjects: int, days: float, seed: int, workers: int) -> int:
    from biomarkerflow.engine.executor import LocalExecutor

    workspace = workspace.resolve()
    executor = LocalExecutor(workers)
    executor.prestart()  # the workers import SKDH while the recordings are written
    try:
        return _run_demo(console, workspace, executor, subjects=subjects, days=days, seed=seed, workers=workers)
    finally:
        executor.close()


def _rule(console: Console, title: str) -> None:
    console.rule(styled(title, "bold"))


def _run_demo(
    console: Console, workspace: Path, executor: Any, *, subjects: int, days: float, seed: int, workers: int
) -> int:
    from biomarkerflow.service.platform import Platform
    from biomarkerflow.terminal.work import print_scan, process_with_bar

    _rule(console, "1. Build the demo workspace")
    home = workspace / ".biomarkerflow"
    platform = Platform(home, announce=lambda message: line(console, message))
    truths, left_out = prepare_workspace(console, workspace, platform.runtimes, subjects=subjects, days=days, seed=seed)
    catalog = platform.catalog
    configs = str(workspace / "studies")

    _rule(console, "2. Discover and process")
    settings = platform.settings
    print_scan(console, platform.scan(configs, executor), configs)
    first = _processed(process_with_bar(console, platform, executor))

    _rule(console, "3. One subject waits for its metadata")
    waiting = [(s.study_id, f, r) for s in catalog.status() for f, r in s.waiting]
    for study, file, reason in waiting:
        console.print(f"WAITING {study}/{file}: {reason}")
    metadata = workspace / "data" / "subjects.csv"
    frame = pd.read_csv(metadata)
    frame.loc[frame["height_m"].isna(), "height_m"] = 1.80
    frame.to_csv(metadata, index=False)
    console.print(f"added the missing height to {metadata.relative_to(workspace)}; processing again")
    second = _processed(process_with_bar(console, platform, executor))

    _rule(console, "4. Results")
    wrist = catalog.get_study("demo-wrist")
    assert wrist is not None
    console.print(_summary(wrist.output_location, truths))
    console.print(
        "Wear is about an hour above the truth per non-wear gap: SKDH's wear detection uses 60-minute "
        "windows and finds each gap about that much short (a known SKDH behaviour, not a platform error)."
    )
    old_study = catalog.get_study(OLD_VERSION_STUDY)
    if old_study is not None:
        try:
            console.print(_versions(catalog, wrist, old_study))
        except BiomarkerflowError as exc:  # e.g. its run failed: no tables to compare
            part = LeftOut(
                "the version comparison",
                f"SKDH {OLD_VERSION} next to the installed version",
                f"its results cannot be read: {exc.message}",
                "see `biomarkerflow status` for why",
            )
            left_out.append(part)
            line(console, styled("note: ", "yellow"), str(part))
        else:
            console.print(
                f"SKDH {OLD_VERSION} and the installed version compute wear and sleep differently; each study "
                "gets the numbers of the version it pins. `biomarkerflow lineage` shows the runtime behind any result."
            )
    console.print(_costs(catalog, settings.prices.in_force))
    sleep_sql = 'SELECT subject, Date, "total sleep time" FROM sleep'
    gait_sql = "SELECT subject, COUNT(*) AS strides FROM gait GROUP BY 1"
    tries = [
        "status",
        f"query --study demo-wrist '{sleep_sql}'",
        *([f"query --study {LAB_STUDY} '{gait_sql}'"] if catalog.get_study(LAB_STUDY) is not None else []),
        f"lineage {wrist.output_location}/tables/sleep.parquet",
        "runtimes list",
        "costs --by subject",
    ]
    console.print(
        f"Results (Parquet, one folder per run, with provenance): {wrist.output_location}/runs\n"
        f"Consolidated tables: {wrist.output_location}/tables\n"
        "Try:\n" + "".join(f"  biomarkerflow --home {home} {command}\n" for command in tries),
        soft_wrap=True,
    )
    for part in left_out:  # again at the end, where it is read
        line(console, styled("note: ", "yellow"), str(part))
    platform.close()
    return first or second


def _processed(info: Any) -> int:
    """The demo's exit code for one processing round: 1 when a file failed."""
    return 1 if info is not None and info.failed else 0
