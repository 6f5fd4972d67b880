"""REST API and dashboard under load: 100k files and 100k runs, 50 concurrent clients.

    .venv/bin/python benchmarks/bench_api.py [--backend sqlite|postgresql|both] [--files 100000]

Per backend (SQLite in the home; PostgreSQL at 127.0.0.1:5432, a fresh database):

1. Four csv-stats studies, registered by the platform's own scan: three large ones whose
   files, runs and file events are then written straight into the catalog's tables (in
   bulk through SQLAlchemy core, rows as the platform writes them: ~97% of the files
   SUCCEEDED, ~2% WAITING for subject metadata, ~1% FAILED with errors, 2-11 events per
   file, runs with metering and cost, as many runs as files), and a small real one that a
   `watch` service processes meanwhile (a feeder drops a new CSV into it every 3 s).
2. The catalog reads behind the endpoints, timed in this process; an admin token
   (`Platform.create_token`).
3. `biomarkerflow serve` as a subprocess on a free loopback port. One estimate is asked
   before the pipeline has a model (the refusal path); then a cost model fitted on the
   pipeline's newest 1,000 runs is recorded as its champion (the platform's own training
   on the whole history takes minutes), and one champion prediction is timed as its
   calibration grows. Then `biomarkerflow watch` (unless --no-watch), sign-in to the
   dashboard with the token, and one whole-study estimate.
4. Each endpoint in turn, the order rotating per round: 50 clients in a closed loop (each
   sends its next request as soon as the last answered) until a request or time bound,
   then a round where each client thinks 0.5-1.5 s between requests (at most ~50 req/s
   offered; skipped where the closed loop already stayed below that). Latencies of every
   response, errors (non-2xx, or no response), requests per second, and the CPU the
   server, the watch, this client and the whole machine used. Before each, 3 requests one
   at a time give the unloaded latency. /healthz is the baseline: no token, no catalog.

Writes benchmarks/results/api.json. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx2 as httpx
import psutil
from sqlalchemy import Table, create_engine, insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.databases (the throwaway PostgreSQL database helper)

from benchmarks.bench_catalog import machine  # noqa: E402
from tests.databases import catalog_url  # noqa: E402

from biomarkerflow.catalog.connection import sqlalchemy_url, utcnow  # noqa: E402
from biomarkerflow.catalog.models import DataFile, FileEvent, Run  # noqa: E402
from biomarkerflow.config.schema import StudyConfig  # noqa: E402
from biomarkerflow.cost.identity import study_pipeline_id  # noqa: E402
from biomarkerflow.cost.prices import BUILT_IN_TABLES, Usage, charge  # noqa: E402
from biomarkerflow.results.consolidate import MANIFEST, tables_location  # noqa: E402
from biomarkerflow.service import Platform  # noqa: E402

BIOMARKERFLOW = str(Path(sys.executable).parent / "biomarkerflow")
PRICE_TABLE = "aws-fargate-us-east-1"
SMALL_STUDY = "lab-values"
# The large studies and their share of --files; the first is the one whose pages are measured.
LARGE_STUDIES = (("wrist-main", 0.70), ("wrist-followup", 0.25), ("gait-pilot", 0.05))
FILES_PER_SUBJECT = 50  # one file a day
WAITING_SHARE, FAILED_SHARE = 0.02, 0.01
MAX_ATTEMPTS = 3
CONFIG = """\
study: {study}
workflow: csv-stats
data:
  location: ../data/{study}
  subject: '(?P<subject>[A-Za-z0-9]+)_'
metadata:
  - location: ../data/{study}-subjects.csv
requirements:
  metadata: [site]
stats:
  columns: [x]
output:
  location: ../results/{study}
"""
# Failures as jobs report them. A step error fails the file at once: (error, the step).
STEP_ERRORS = (
    ("{name} has no column x (its columns: time, acc_x, acc_y, acc_z)", "ColumnMeans"),
    ("{name}: could not convert string to float: 'NaN,,'", "ColumnMeans"),
    ("{name} is empty (0 rows)", "ColumnMeans"),
)
# Retried until the attempts run out (or it succeeds on the next attempt).
TRANSIENT_ERRORS = (
    "the job was killed: out of memory (peak 7.9 GB, limit 8.0 GB)",
    "worker process exited unexpectedly (signal 9)",
    "job exceeded its time limit of 3600 s",
)
# The goals for p95 latency; /healthz (no catalog, no token) is the framework's baseline.
GOALS_MS: dict[str, float | None] = {"json list": 50.0, "page": 150.0, "baseline": None}
FILES, RUNS, EVENTS = (cast(Table, model.__table__) for model in (DataFile, Run, FileEvent))


# ---- the machine ------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(limit: float, seconds: float) -> dict[str, Any]:
    """Wait (once, up to `seconds`) while the 1-minute load average is above `limit`."""
    before = load_average()
    waited = 0.0
    if before[0] > limit:
        print(f"  load {before[0]} > {limit}: waiting up to {seconds:.0f} s", flush=True)
        started = time.monotonic()
        while os.getloadavg()[0] > limit and time.monotonic() - started < seconds:
            time.sleep(2)
        waited = time.monotonic() - started
    return {"load_before_wait": before, "waited_seconds": round(waited, 1), "load": load_average()}


# ---- the workspace and the catalog ------------------------------------------------------------


@dataclass
class LargeStudy:
    name: str
    files: int
    subjects: list[str] = field(default_factory=list)
    no_row: set[str] = field(default_factory=set)  # waiting: no metadata row
    no_site: set[str] = field(default_factory=set)  # waiting: a row without site


def plan_studies(total_files: int) -> list[LargeStudy]:
    studies = []
    for name, share in LARGE_STUDIES:
        study = LargeStudy(name, max(FILES_PER_SUBJECT, round(total_files * share)))
        letter = name[0].upper()
        count = math.ceil(study.files / FILES_PER_SUBJECT)
        study.subjects = [f"{letter}{i:05d}" for i in range(count)]
        # The newest subjects wait for their metadata: two thirds have no row yet, a third no site.
        waiting = study.subjects[len(study.subjects) - max(1, round(count * WAITING_SHARE)) :]
        study.no_row = set(waiting[: math.ceil(len(waiting) * 2 / 3)])
        study.no_site = set(waiting) - study.no_row
        studies.append(study)
    return studies


def small_csv(rows: int, seed: int) -> str:
    lines = ["x,y,label"] + [f"{(seed * 7 + i * 3) % 11},{seed + i / 4},r{i}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def make_workspace(root: Path, studies: list[LargeStudy]) -> Path:
    """Configs, data folders and metadata for the small study and the (empty) large ones."""
    configs, data = root / "studies", root / "data"
    configs.mkdir(parents=True)
    (data / SMALL_STUDY).mkdir(parents=True)
    for i in range(4):
        (data / SMALL_STUDY / f"L{i % 2:02d}_{i}.csv").write_text(small_csv(5 + i, i))
    (data / f"{SMALL_STUDY}-subjects.csv").write_text("subject,site\nL00,north\nL01,south\n")
    (configs / f"{SMALL_STUDY}.yaml").write_text(CONFIG.format(study=SMALL_STUDY))
    for study in studies:
        (data / study.name).mkdir()  # the files are only in the catalog: nothing to list
        rows = [f"{s},site-{int(s[1:]) % 7}" for s in study.subjects if s not in study.no_row | study.no_site]
        rows += [f"{s}," for s in sorted(study.no_site)]
        (data / f"{study.name}-subjects.csv").write_text("subject,site\n" + "\n".join(rows) + "\n")
        (configs / f"{study.name}.yaml").write_text(CONFIG.format(study=study.name))
    return configs


class Loader:
    """Rows for one large study, as the platform writes them, inserted in bulk."""

    def __init__(self, study: LargeStudy, record: Any, now: datetime, seed: int) -> None:
        self.study = study
        self.record = record
        self.now = now
        self.rng = random.Random(seed)
        self.pipeline = study_pipeline_id(StudyConfig.model_validate(record.config))
        self.table = BUILT_IN_TABLES[PRICE_TABLE]
        self.workers = [f"node-{n}:{4000 + n * 17}:{self.rng.getrandbits(24):06x}" for n in range(1, 5)]
        self.run_ids: set[str] = set()
        self.current: list[str] = []

    def run_id(self, at: datetime) -> str:
        while True:
            candidate = f"{at:%Y%m%dT%H%M%S}-{self.rng.getrandbits(32):08x}"
            if candidate not in self.run_ids:
                self.run_ids.add(candidate)
                return candidate

    def file_rows(self) -> list[dict[str, Any]]:
        """The files, discovered day by day over the last 60 days (the waiting ones last)."""
        rows = []
        location = self.record.data_location.rstrip("/")
        span = timedelta(days=59).total_seconds()
        for i in range(self.study.files):
            subject = self.study.subjects[i // FILES_PER_SUBJECT]
            relative = f"{subject}/{subject}_day{i % FILES_PER_SUBJECT + 1:03d}.csv"
            size = int(min(max(self.rng.lognormvariate(math.log(60e6), 0.6), 1e6), 1.5e9))
            seen = self.now - timedelta(days=60) + timedelta(seconds=span * i / self.study.files)
            mtime = seen.timestamp() - 3600
            rows.append(
                {
                    "study_id": self.study.name,
                    "url": f"{location}/{relative}",
                    "relative_path": relative,
                    "subject": subject,
                    "size": size,
                    "mtime": mtime,
                    "fingerprint": f"{size}:{mtime}",
                    "fingerprint_seen_at": seen,
                    "state": "DISCOVERED",
                    "reason": "new file",
                    "attempts": 0,
                    "current_run_id": None,
                    "last_error": None,
                    "discovered_at": seen,
                    "updated_at": seen,
                }
            )
        return rows

    def metered(self, size: int) -> dict[str, Any]:
        wall = (5.0 + size / 25e6) * self.rng.uniform(0.9, 1.1)
        cpu = wall * self.rng.uniform(0.85, 0.98)
        peak = int((300e6 + 2.5 * size) * self.rng.uniform(0.95, 1.05))
        billed = charge(Usage(wall, cpu, peak, cores=2.0), self.table, table_name=PRICE_TABLE)
        return {
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_bytes": peak,
            "bytes_read": size + 50_000,
            "cost": billed.amount,
            "currency": billed.currency,
            "price_table": billed.table,
            "capacity": billed.capacity,
            "billed_seconds": billed.billed_seconds,
            "vcpus": billed.vcpus,
            "memory_gb": billed.memory_gb,
        }

    def history(self, files: list[dict[str, Any]], runs_wanted: int) -> tuple[list[Any], list[Any]]:
        """Each file's story: its row moved to where it ended, and its (runs, events), whose
        `file_id` is the file's position in `files` until the files have ids."""
        study, rng = self.study, self.rng
        waiting = study.no_row | study.no_site
        candidates = [i for i, f in enumerate(files) if f["subject"] not in waiting]
        failed = set(rng.sample(candidates, max(1, round(len(files) * FAILED_SHARE))))
        # A failed file's story: a step error (once) or a transient one (every attempt).
        stories = {i: (rng.random() < 0.6, rng.randrange(3)) for i in failed}
        failed_runs = sum(1 if step else MAX_ATTEMPTS for step, _ in stories.values())
        succeeded = [i for i in candidates if i not in failed]
        # Runs beyond one per file: succeeded files whose first attempt failed transiently.
        retried = set(rng.sample(succeeded, max(0, min(len(succeeded), runs_wanted - len(succeeded) - failed_runs))))
        runs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for i, row in enumerate(files):
            file_id = i
            t = row["discovered_at"]
            events.append(self._event(file_id, t, None, "DISCOVERED", "new file"))
            t += timedelta(seconds=1)
            subject = row["subject"]
            if subject in waiting:
                reason = (
                    f"no metadata row for subject '{subject}'"
                    if subject in study.no_row
                    else f"metadata missing for subject '{subject}': site"
                )
                events.append(self._event(file_id, t, "DISCOVERED", "WAITING", reason))
                row.update(state="WAITING", reason=reason, updated_at=t)
                continue
            events.append(self._event(file_id, t, "DISCOVERED", "READY", None))
            name = row["relative_path"].rsplit("/", 1)[-1]
            attempts: list[tuple[str | None, str | None, bool]]  # (error, failed step, retried)
            if i in failed:
                step, which = stories[i]
                if step:
                    attempts = [(STEP_ERRORS[which][0].format(name=name), STEP_ERRORS[which][1], False)]
                else:
                    attempts = [(TRANSIENT_ERRORS[which], None, n < MAX_ATTEMPTS - 1) for n in range(MAX_ATTEMPTS)]
            else:
                attempts = [(rng.choice(TRANSIENT_ERRORS), None, True)] if i in retried else []
                attempts.append((None, None, False))
            run_id = ""
            for number, (error, failed_step, retry) in enumerate(attempts, start=1):
                worker = rng.choice(self.workers)
                t += timedelta(seconds=rng.uniform(5, 600))
                events.append(self._event(file_id, t, "READY", "CLAIMED", f"claimed by {worker}"))
                t += timedelta(seconds=0.01)
                events.append(self._event(file_id, t, "CLAIMED", "RUNNING", f"attempt {number} on {worker}"))
                run_id = self.run_id(t)
                metering = self.metered(row["size"])
                started = t
                t += timedelta(seconds=metering["wall_seconds"] + 0.05)
                runs.append(
                    self._run(run_id, file_id, row, number, worker, started, t, metering, error, failed_step, name)
                )
                if error is None:
                    events.append(self._event(file_id, t, "RUNNING", "SUCCEEDED", None))
                elif retry:
                    retry_at = t + timedelta(seconds=30 * 2 ** (number - 1))
                    why = f"attempt {number} of {MAX_ATTEMPTS} failed, retrying after {retry_at:%H:%M:%S} UTC: {error}"
                    events.append(self._event(file_id, t, "RUNNING", "READY", why))
                    t = retry_at
                else:
                    events.append(self._event(file_id, t, "RUNNING", "FAILED", error))
            last_error, _, _ = attempts[-1]
            row.update(attempts=len(attempts), updated_at=t)
            if last_error is None:
                row.update(state="SUCCEEDED", reason=None, current_run_id=run_id)
                self.current.append(run_id)
            else:
                row.update(state="FAILED", reason=last_error, last_error=last_error)
        return runs, events

    @staticmethod
    def _event(file_id: int, at: datetime, old: str | None, new: str, reason: str | None) -> dict[str, Any]:
        return {"file_id": file_id, "at": at, "from_state": old, "to_state": new, "reason": reason}

    def _run(
        self,
        run_id: str,
        file_id: int,
        row: dict[str, Any],
        attempt: int,
        worker: str,
        started: datetime,
        finished: datetime,
        metering: dict[str, Any],
        error: str | None,
        failed_step: str | None,
        name: str,
    ) -> dict[str, Any]:
        stem = name.rsplit(".", 1)[0]
        ok = error is None
        traceback = (
            None
            if ok
            else 'Traceback (most recent call last):\n  File "entrypoint.py", line 199, in _run\n'
            f"    output = workflow_type.run_job(path, job.plan, job.inputs, subject=job.subject)\n{error}\n"
        )
        return {
            "id": run_id,
            "file_id": file_id,
            "study_id": self.study.name,
            "attempt": attempt,
            "worker": worker,
            "host": worker.split(":", 1)[0],
            "config_sha256": self.record.config_sha256,
            "package_version": "0.1.0",
            "lock_hash": "5f3c0b8e" * 8,
            "input_fingerprint": row["fingerprint"],
            "started_at": started,
            "finished_at": finished,
            "outcome": "succeeded" if ok else "failed",
            "error": error,
            **metering,
            "bytes_written": 35_000 + row["size"] // 4000 if ok else 0,
            "facts": {"rows": row["size"] // 38} if ok else None,
            "result_location": f"{self.record.output_location}/runs/{row['subject']}/{stem}/{run_id}" if ok else None,
            "pipeline": self.pipeline,
            "failed_step": failed_step,
            "traceback": traceback,
            "notices": None,
        }


def chunks(rows: list[dict[str, Any]], size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def load_catalog(url: str, platform_: Platform, studies: list[LargeStudy], runs_total: int) -> dict[str, Any]:
    """Bulk-insert the large studies' files, runs and events; the manifest of their consolidated tables."""
    engine = create_engine(sqlalchemy_url(url))
    records = {s.id: s for s in platform_.catalog.studies()}
    now = utcnow()
    counts = {"files": 0, "runs": 0, "events": 0}
    started = time.perf_counter()
    total_files = sum(s.files for s in studies)
    for n, study in enumerate(studies):
        loader = Loader(study, records[study.name], now, seed=n)
        files = loader.file_rows()
        runs, events = loader.history(files, round(runs_total * study.files / total_files))
        with engine.begin() as connection:
            for part in chunks(files):
                connection.execute(insert(FILES), part)
            query = select(DataFile.url, DataFile.id).where(DataFile.study_id == study.name)
            ids = {url: file_id for url, file_id in connection.execute(query)}
            for item in (*runs, *events):
                item["file_id"] = ids[files[item["file_id"]]["url"]]
            for part in chunks(runs):
                connection.execute(insert(RUNS), part)
            for part in chunks(events):
                connection.execute(insert(EVENTS), part)
        # What consolidation leaves behind (the tables would be there too): the study is current.
        manifest = Path(tables_location(records[study.name].output_location)) / MANIFEST
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(sorted(loader.current)))
        counts["files"] += len(files)
        counts["runs"] += len(runs)
        counts["events"] += len(events)
        print(f"  {study.name}: {len(files)} files, {len(runs)} runs, {len(events)} events", flush=True)
    engine.dispose()
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


# ---- the server and the watch service ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"serve did not answer /healthz within {seconds} s: {log.read_text()[-2000:]}")


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """CPU time of a process and its children so far (0 when it is gone)."""
    if process is None:
        return 0.0
    try:
        proc = psutil.Process(process.pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total
    except psutil.Error:
        return 0.0


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (every process, every core)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class Feeder(threading.Thread):
    """New CSV files for the small study every `every` seconds: work for the watch service."""

    def __init__(self, folder: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.folder, self.every, self.count = folder, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.count += 1
            subject = f"L{self.count % 2:02d}"
            (self.folder / f"{subject}_new{self.count:04d}.csv").write_text(small_csv(20 + self.count % 30, self.count))


def sign_in(base: str, token: str) -> tuple[str | None, str]:
    """The dashboard's session cookie after POST /login with the token; (None, why) when it fails."""
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        form = client.get("/login")
        if form.status_code != 200:
            return None, f"GET /login: {form.status_code}"
        found = re.search(r'name="csrf" value="([^"]+)"', form.text)
        cookie = form.cookies.get("bmf_session")
        if not found or not cookie:
            return None, "no CSRF field or session cookie on /login"
        answer = client.post(
            "/login",
            data={"token": token, "csrf": found.group(1), "next": "/"},
            headers={"Cookie": f"bmf_session={cookie}"},
        )
        session = answer.cookies.get("bmf_session")
        if answer.status_code != 303 or not session:
            return None, f"POST /login: {answer.status_code}"
        return session, "signed in"


# ---- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    kind: str  # "json list" | "page" (which goal applies)
    web: bool = False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


async def closed_loop(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    clients: int,
    requests: int,
    seconds: float,
    think: float = 0.0,
) -> dict[str, Any]:
    """`clients` tasks each sending its next request when the last answered (after a think time
    drawn uniformly from 0.5-1.5 x `think`, none when 0), until the bounds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def one() -> None:
        nonlocal issued
        if think:
            await asyncio.sleep(rng.uniform(0, think))  # spread the first requests
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            sent = time.perf_counter()
            try:
                response = await client.get(path, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - sent)
            if not 200 <= response.status_code < 300:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            if think:
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall": wall}


async def sequential(client: httpx.AsyncClient, path: str, headers: dict[str, str], count: int) -> list[float]:
    times = []
    for _ in range(count):
        sent = time.perf_counter()
        await client.get(path, headers=headers)
        times.append(time.perf_counter() - sent)
    return times


def summarize(endpoint: Endpoint, entry: dict[str, Any]) -> dict[str, Any]:
    latencies, responses, wall = entry["latencies"], max(1, len(entry["latencies"])), max(entry["wall"], 1e-9)
    p95 = percentile(latencies, 0.95) * 1000
    errors = sum(entry["errors"].values())
    goal = GOALS_MS[endpoint.kind]
    return {
        "n": len(latencies),
        "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(p95, 1),
        "rps": round(statistics.median(entry["rps"]), 1),
        "rps_rounds": [round(r, 1) for r in entry["rps"]],
        "errors": errors,
        "error_kinds": entry["errors"],
        "server_cpu_ms_per_request": round(entry["server_cpu"] / responses * 1000, 1),
        "server_cores_used": round(entry["server_cpu"] / wall, 2),
        "watch_cores_used": round(entry["watch_cpu"] / wall, 2),
        "client_cores_used": round(entry["client_cpu"] / wall, 2),
        # Every process on the machine (2.0: both cores busy): besides ours, PostgreSQL's backends
        # (their CPU cannot be told apart from other databases' on the same server) and other
        # sessions' work.
        "machine_cores_busy": round(entry["machine_cpu"] / wall, 2),
        "goal_met": None if goal is None else bool(latencies) and p95 < goal and not errors,
    }


async def measure(
    base: str,
    endpoints: list[Endpoint],
    headers: dict[str, str],
    web_headers: dict[str, str],
    args: argparse.Namespace,
    server: subprocess.Popen[bytes],
    watcher: subprocess.Popen[bytes] | None,
) -> dict[str, Any]:
    """Every endpoint, `args.rounds` closed-loop rounds then one round with think time, the
    endpoints' order rotating from round to round. The think round is skipped for an endpoint
    whose closed-loop throughput is below what it offers (clients / think requests a second):
    it would be saturated all the same."""
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under a request.
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients, keepalive_expiry=3)
    modes = [("closed", 0.0)] * args.rounds + ([("think", args.think)] if args.think else [])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    alone: dict[str, list[float]] = {e.name: [] for e in endpoints}
    skipped: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        for round_, (mode, think) in enumerate(modes):
            shift = round_ % len(endpoints)
            for endpoint in endpoints[shift:] + endpoints[:shift]:
                sent_headers = web_headers if endpoint.web else headers
                closed = found.get(("closed", endpoint.name))
                if think and closed and statistics.median(closed["rps"]) < args.clients / think:
                    skipped[endpoint.name] = (
                        f"saturated: {statistics.median(closed['rps']):.1f} req/s closed-loop, "
                        f"below the {args.clients / think:.0f} req/s the think round offers"
                    )
                    continue
                # Unloaded latency (and a warm server): a few requests one after another.
                alone[endpoint.name] += await sequential(client, endpoint.path, sent_headers, 3)
                cpu_server, cpu_watch, cpu_client = cpu_seconds(server), cpu_seconds(watcher), time.process_time()
                cpu_machine = machine_busy_seconds()
                result = await closed_loop(
                    client, endpoint.path, sent_headers, args.clients, args.requests, args.seconds, think
                )
                entry = found.setdefault(
                    (mode, endpoint.name),
                    {
                        "latencies": [],
                        "errors": {},
                        "rps": [],
                        "server_cpu": 0.0,
                        "watch_cpu": 0.0,
                        "client_cpu": 0.0,
                        "machine_cpu": 0.0,
                        "wall": 0.0,
                    },
                )
                entry["latencies"] += result["latencies"]
                for key, n in result["errors"].items():
                    entry["errors"][key] = entry["errors"].get(key, 0) + n
                entry["rps"].append(len(result["latencies"]) / result["wall"])
                entry["server_cpu"] += cpu_seconds(server) - cpu_server
                entry["watch_cpu"] += cpu_seconds(watcher) - cpu_watch
                entry["client_cpu"] += time.process_time() - cpu_client
                entry["machine_cpu"] += machine_busy_seconds() - cpu_machine
                entry["wall"] += result["wall"]
                median = statistics.median(result["latencies"]) * 1000 if result["latencies"] else float("nan")
                print(
                    f"    {mode} round {round_ + 1}, {endpoint.name}: {len(result['latencies'])} in "
                    f"{result['wall']:.1f} s, median {median:.0f} ms, errors {result['errors'] or 0}",
                    flush=True,
                )
    summary: dict[str, Any] = {}
    for endpoint in endpoints:
        summary[endpoint.name] = {
            "path": endpoint.path,
            "kind": endpoint.kind,
            "goal_p95_ms": GOALS_MS[endpoint.kind],
            "alone_median_ms": round(statistics.median(alone[endpoint.name]) * 1000, 1),
            **{
                mode: summarize(endpoint, found[(mode, endpoint.name)])
                for mode in dict(modes)
                if (mode, endpoint.name) in found
            },
            **({"think_skipped": skipped[endpoint.name]} if endpoint.name in skipped else {}),
        }
    return summary


def query_timings(service: Platform, big: str, files: int) -> dict[str, float]:
    """Milliseconds (median of 3, in this process) of the catalog reads behind the endpoints."""
    from biomarkerflow.catalog.browse import FileFilter, RunFilter

    catalog = service.catalog
    token = service.create_token("bench-timing", "read").token
    reads: dict[str, Any] = {
        "identify (token lookup)": lambda: service.identify(token),
        "state_counts (files per study and state)": catalog.state_counts,
        "cost_totals (sum of run costs per study)": catalog.cost_totals,
        "last_activities (latest file event per study)": catalog.last_activities,
        "finished_per_day (events per day, one study)": lambda: catalog.finished_per_day(big),
        "waiting_reasons (one study)": lambda: catalog.waiting_reasons(big),
        "subjects (files per subject and state, one study)": lambda: catalog.subjects(big),
        "files_page FAILED of one study, 50": lambda: catalog.files_page(FileFilter(big, ("FAILED",)), 0, 50),
        "files_page all files, offset 90%, 50": lambda: catalog.files_page(FileFilter(), int(files * 0.9), 50),
        "runs_page of one file (x50 on the study page)": lambda: catalog.runs_page(RunFilter(file_id=1), 0, 1),
        "study_overviews (the study list)": service.study_overviews,
        "study_detail (one study)": lambda: service.study_detail(big),
    }
    timings = {}
    for name, read in reads.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            read()
            times.append(time.perf_counter() - started)
        timings[name] = round(statistics.median(times) * 1000, 1)
    service.revoke_token("bench-timing")
    return timings


def install_champion(service: Platform, home: Path, pipeline: str, newest: int) -> dict[str, Any]:
    """A cost model of `pipeline` fitted on its newest runs, recorded as the champion (as a
    promotion records it; the platform's own training on the whole history is not timed here)."""
    from biomarkerflow.cost import registry
    from biomarkerflow.cost.model import CostModel

    started = time.perf_counter()
    history = service.catalog.observations(pipeline)
    read = time.perf_counter() - started
    # One OpenMP thread: on a busy machine scikit-learn's boosted trees with 2 spinning threads
    # took 156 s instead of 2 s for 300 runs (see the README). The limit must come after the
    # OpenMP runtime is loaded.
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(1, user_api="openmp"):
        model = CostModel.fit(pipeline, history[-newest:])
    fitted = time.perf_counter() - started
    registry.register_model(
        service.catalog, home, model, promote=True, metrics={}, note=f"bench_api: fitted on the newest {newest} runs"
    )
    return {
        "pipeline": pipeline,
        "history_runs": len(history),
        "observations_seconds": round(read, 2),
        "fit_runs": min(newest, len(history)),
        "fit_seconds": round(fitted, 1),
    }


def predict_scaling(service: Platform, pipeline: str, history_runs: int) -> dict[str, float]:
    """Milliseconds of one champion prediction (in this process) as its calibration grows:
    the champion's arrays of actual and out-of-fold usage repeated to n training runs, up to
    the 80% of this history that the platform's own training would learn from. Each
    prediction prices every training run twice under the table asked for (the cost interval)."""
    import copy

    import numpy as np

    from biomarkerflow.cost import registry
    from biomarkerflow.cost.inputs import RunInputs

    found = registry.champion(service.catalog, pipeline)
    assert found is not None
    model, table = found[1], BUILT_IN_TABLES[PRICE_TABLE]
    timings = {}
    for runs in sorted({model.train_runs, 10_000, int(history_runs * 0.8)}):
        grown = copy.deepcopy(model)
        for usage in grown.usage_models:
            repeat = math.ceil(runs / len(usage.actual))
            usage.actual = np.tile(usage.actual, (repeat, 1))[:runs]
            usage.out_of_fold = np.tile(usage.out_of_fold, (repeat, 1))[:runs]
        times = []
        for _ in range(3):
            started = time.perf_counter()
            grown.predict([RunInputs(input_bytes=2 * 10**9)], table)
            times.append(time.perf_counter() - started)
        timings[str(runs)] = round(statistics.median(times) * 1000, 1)
    return timings


def sequential_get(base: str, path: str, headers: dict[str, str], count: int) -> dict[str, Any]:
    times, statuses = [], set()
    with httpx.Client(base_url=base, timeout=600) as client:
        for _ in range(count):
            sent = time.perf_counter()
            statuses.add(client.get(path, headers=headers).status_code)
            times.append(time.perf_counter() - sent)
    return {"path": path, "statuses": sorted(statuses), "seconds": [round(t, 2) for t in times]}


# ---- one backend ------------------------------------------------------------------------------


def bench_backend(backend: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend}
    folder = scratch / backend
    studies = plan_studies(args.files)
    big = studies[0].name
    with catalog_url(backend, folder / "home") as url:
        configs = make_workspace(folder, studies)
        home = folder / "home"
        service = Platform(home=home, catalog_url=url)
        started = time.perf_counter()
        scanned = service.scan(str(configs))
        assert all(s.config_change != "invalid" for s in scanned.info.studies), scanned.info.studies
        result["scan_seconds"] = round(time.perf_counter() - started, 2)
        print(f"  {backend}: loading {args.files} files", flush=True)
        result["load"] = load_catalog(url, service, studies, args.files)
        print(f"  loaded in {result['load']['seconds']} s", flush=True)
        record = service.catalog.get_study(big)
        assert record is not None
        pipeline = study_pipeline_id(StudyConfig.model_validate(record.config))
        result["query_ms"] = query_timings(service, big, args.files)
        print(f"  catalog reads (ms): {result['query_ms']}", flush=True)
        token = service.create_token("bench-admin", "admin").token
        headers = {"Authorization": f"Bearer {token}"}

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        global_options = ["--home", str(home), "--catalog", url]
        server_log, watch_log = folder / "serve.log", folder / "watch.log"
        server = start([BIOMARKERFLOW, *global_options, "serve", "--port", str(port)], server_log)
        watcher: subprocess.Popen[bytes] | None = None
        feeder: Feeder | None = None
        try:
            result["serve_start_seconds"] = round(wait_healthy(base, server, server_log), 2)
            estimate = f"/api/v1/estimate?pipeline={pipeline}&input_size=2GB"
            # Without a model the estimate says why, after counting the pipeline's history.
            result["estimate_without_model"] = sequential_get(base, estimate, headers, 2)
            result["model"] = install_champion(service, home, pipeline, args.model_runs)
            result["model"]["predict_ms_by_training_runs"] = predict_scaling(
                service, pipeline, result["model"]["history_runs"]
            )
            print(f"  without a model: {result['estimate_without_model']}; model: {result['model']}", flush=True)
            if args.watch:
                watcher = start(
                    [
                        BIOMARKERFLOW,
                        *global_options,
                        "watch",
                        "--configs",
                        str(configs),
                        "--interval",
                        str(args.watch_interval),
                    ],
                    watch_log,
                )
                feeder = Feeder(folder / "data" / SMALL_STUDY, args.feed_every)
                feeder.start()
            session, signed = sign_in(base, token)
            web_headers = {"Cookie": f"bmf_session={session}"} if session else {}
            pages = {p: sequential_get(base, p, web_headers, 1) for p in ("/", f"/studies/{big}")} if session else {}
            dashboard = bool(session) and all(p["statuses"] == [200] for p in pages.values())
            result["dashboard"] = {"signed_in": signed, "answers": dashboard, "first_requests": pages}
            # A study's whole estimate reads every unprocessed file's header: timed, one request.
            result["study_estimate"] = sequential_get(base, f"/api/v1/studies/{big}/estimate", headers, 1)
            endpoints = [
                Endpoint("healthz", "/healthz", "baseline"),
                Endpoint("api studies", "/api/v1/studies", "json list"),
                Endpoint("api study", f"/api/v1/studies/{big}", "page"),
                Endpoint("api failed files", f"/api/v1/files?study={big}&state=FAILED&limit=50", "json list"),
                Endpoint("api files offset 90%", f"/api/v1/files?offset={int(args.files * 0.9)}&limit=50", "json list"),
                # The same depth by file id (what a client following next_after asks for).
                Endpoint("api files after 90%", f"/api/v1/files?after={int(args.files * 0.9)}&limit=50", "json list"),
                Endpoint("api estimate", estimate, "page"),
            ]
            if dashboard:
                endpoints += [
                    Endpoint("page studies", "/", "page", web=True),
                    Endpoint("page study", f"/studies/{big}", "page", web=True),
                ]
            if args.watch:
                time.sleep(args.settle)  # the watch's first round: validation, workers, gating
            result["quiet"] = wait_for_quiet(args.max_load, args.load_wait)
            result["load_average_before"] = load_average()
            started = time.perf_counter()
            result["endpoints"] = asyncio.run(measure(base, endpoints, headers, web_headers, args, server, watcher))
            result["measure_seconds"] = round(time.perf_counter() - started)
            result["load_average_after"] = load_average()
        finally:
            if feeder is not None:
                feeder.done.set()
            if watcher is not None:
                stop(watcher)
            stop(server)
        if feeder is not None:
            states: dict[str, int] = {}
            for file in service.catalog.files(SMALL_STUDY):
                states[file.state] = states.get(file.state, 0) + 1
            result["watch"] = {"files_fed": feeder.count, "small_study_states": states}
        # The large studies as the run left them (the watch gated their waiting files every round).
        result["states_after"] = service.catalog.state_counts()
        service.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--files", type=int, default=100_000, help="files in the large studies (and as many runs)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300, help="at most this many requests per endpoint and round")
    parser.add_argument("--seconds", type=float, default=6.0, help="at most this long per endpoint and round")
    parser.add_argument("--rounds", type=int, default=1, help="closed-loop rounds (no think time)")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time of the last round (0: none)")
    parser.add_argument("--model-runs", type=int, default=1000, help="the champion is fitted on this many runs")
    parser.add_argument("--watch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--watch-interval", type=float, default=30.0, help="the watch's seconds between rounds")
    parser.add_argument("--feed-every", type=float, default=3.0, help="seconds between new files for the watch")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds for the watch's first round")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--load-wait", type=float, default=45.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "api.json")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "load_average_start": load_average(),
    }
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
        for backend in backends:
            results[backend] = bench_backend(backend, args, Path(scratch))
    results["seconds"] = round(time.perf_counter() - started)
    results["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for backend in backends:
        print(f"\n{backend}")
        for name, e in results[backend]["endpoints"].items():
            for mode in ("closed", "think"):
                if mode in e:
                    m = e[mode]
                    print(
                        f"  {name:22} {mode:6} n={m['n']:4} median {m['median_ms']} ms  p95 {m['p95_ms']} ms  "
                        f"{m['rps']} req/s  errors {m['errors']}  alone {e['alone_median_ms']} ms  "
                        f"goal {dict([(True, 'met'), (False, 'MISSED')]).get(m['goal_met'], '-')}"
                    )
    print(f"wrote {args.out} after {results['seconds']} s")


if __name__ == "__main__":
    main()
