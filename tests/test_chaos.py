"""A bounded chaos soak: 200 short files, two `watch` services sharing a PostgreSQL catalog
and an S3 store (moto behind a proxy that can take it down), and, all through the run,
kill -9 of runtime processes, kill -9 of one whole service (a new one takes its place),
the catalog's database connections dropped, and S3 outages of a few seconds.

At the end every file has exactly one current result set, the catalog's attempts match
its runs, the study's tables hold each file once, and after `gc` no run folder is left
that is not a current result.

The jobs (csv-stats) hold until a file exists, so the scripted faults surely meet jobs in
flight; then they run through while random faults continue (a seeded random choice of
which process to kill)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import s3fs

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.results import query
from biomarkerflow.service import Platform
from tests.databases import SERVER, postgres_database
from tests.faultproxy import FaultProxy

FILES = 200
STUDY = "chaos"


def _study(root: Path, bucket: str, release: Path) -> Path:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe({f"{bucket}/data/S{i:03d}_a.csv": f"x\n{i}\n{i + 1}\n".encode() for i in range(FILES)})
    configs = root / "studies"
    configs.mkdir()
    (configs / f"{STUDY}.yaml").write_text(
        f"study: {STUDY}\nworkflow: csv-stats\ndata: {{location: 's3://{bucket}/data'}}\n"
        f"stats: {{columns: [x], hold_until: {str(release)!r}}}\n"
        f"output: {{location: 's3://{bucket}/results'}}\nmax_attempts: 50\nretry_delay_seconds: 0.5\n"
    )
    return configs


def _until(condition: Callable[[], bool], what: str, seconds: float = 240.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def _states(catalog: Catalog) -> list[str]:
    return [f.state for f in catalog.files(STUDY)] if catalog.get_study(STUDY) else []


def _jobs(service: subprocess.Popen[str]) -> list[psutil.Process]:
    """The runtime processes of a service (its worker children)."""
    try:
        return psutil.Process(service.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _drop_connections(database: str) -> int:
    with psycopg.connect(SERVER, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


class Chaos:
    """The faults, counted, so the test can prove each really happened."""

    def __init__(self, services: list[subprocess.Popen[str]], database: str, proxy: FaultProxy) -> None:
        self.services, self.database, self.proxy = services, database, proxy
        self.killed_jobs = self.dropped_connections = self.outage_resets = 0
        self.random = random.Random(20261201)

    def kill_a_job(self) -> bool:
        jobs = [job for service in self.services for job in _jobs(service)]
        if not jobs:
            return False
        self.random.choice(jobs).send_signal(signal.SIGKILL)
        self.killed_jobs += 1
        return True

    def drop_connections(self) -> None:
        self.dropped_connections += _drop_connections(self.database)

    def outage(self, seconds: float) -> None:
        with self.proxy.outage() as counts:
            time.sleep(seconds)
        self.outage_resets += counts.cut + counts.refused

    def keep_going(self, done: threading.Event) -> None:
        """Random faults until `done`, one chance a second: a job killed (30%), the database's
        connections dropped (30%), or S3 down for 2 s (5%)."""
        while not done.wait(1.0):
            fault = self.random.random()
            if fault < 0.3:
                self.kill_a_job()
            elif fault < 0.6:
                self.drop_connections()
            elif fault < 0.65:
                self.outage(2.0)


def test_every_file_ends_with_one_result_set_through_kills_and_outages(
    tmp_path: Path,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    release = tmp_path / "release"
    configs = _study(tmp_path, bucket, release)
    moto_url = urlsplit(s3_endpoint)
    proxy = FaultProxy(moto_url.hostname or "127.0.0.1", moto_url.port or 80)
    with postgres_database() as url:
        database = url.rsplit("/", 1)[1]
        env = {
            **os.environ,
            "BIOMARKERFLOW_CATALOG": url,
            "BIOMARKERFLOW_HOME": str(tmp_path / "home"),
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ENDPOINT_URL_S3": proxy.url,
        }
        command = [sys.executable, "-m", "biomarkerflow.cli", "watch", "--configs", str(configs)]
        command += ["--workers", "2", "--interval", "1"]

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

        services = [start(), start()]
        chaos = Chaos(services, database, proxy)
        catalog = Catalog(url)
        done = threading.Event()
        background = threading.Thread(target=chaos.keep_going, args=(done,))
        try:
            _until(lambda: _states(catalog).count("RUNNING") >= 4, "both services run held jobs")
            # The scripted faults, each surely meeting jobs in flight (they hold until released).
            assert chaos.kill_a_job()
            services[0].send_signal(signal.SIGKILL)  # a whole service, its jobs with it
            services[0].wait(timeout=30)
            services.append(start())  # a new one takes its place
            chaos.drop_connections()
            chaos.outage(3.0)
            release.touch()
            background.start()
            _until(lambda: _states(catalog) == ["SUCCEEDED"] * FILES, "every file succeeded", seconds=420)
        finally:
            done.set()
            if background.is_alive():
                background.join(timeout=60)
            for service in services:
                if service.poll() is None:
                    service.send_signal(signal.SIGTERM)
            for service in services:
                try:
                    service.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    service.kill()
            proxy.close()
        assert chaos.killed_jobs >= 1 and chaos.dropped_connections >= 1 and chaos.outage_resets >= 1, vars(chaos)
        _check_results(catalog, url, tmp_path, bucket)
        catalog.close()


def _check_results(catalog: Catalog, url: str, tmp_path: Path, bucket: str) -> None:
    files = catalog.files(STUDY)
    runs = catalog.runs(STUDY)
    by_file: dict[int, list] = {}  # type: ignore[type-arg]
    for run in runs:
        by_file.setdefault(run.file_id, []).append(run)
    for file in files:
        mine = by_file[file.id]
        succeeded = [r for r in mine if r.outcome == "succeeded"]
        assert [r.id for r in succeeded] == [file.current_run_id], (file.relative_path, [r.outcome for r in mine])
        # Every attempt the catalog counts is a run; a run given back (interrupted) is not an attempt.
        assert file.attempts == sum(r.outcome != "interrupted" for r in mine), (file.relative_path, mine)
    current = {file.current_run_id for file in files}
    output = f"s3://{bucket}/results"
    rows = query.run_query(
        output, "SELECT count(*) AS n, count(DISTINCT file) AS files, list(DISTINCT run_id) AS ids FROM csv_rows"
    )
    assert (int(rows["n"][0]), int(rows["files"][0])) == (FILES, FILES)
    assert set(rows["ids"][0]) == current
    # gc, looking from two hours on (what is young now is old then): no folder but current results.
    platform = Platform(home=tmp_path / "home", catalog_url=url)
    platform.gc(now=time.time() + 2 * 3600)
    platform.close()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    outcomes = {r.id: r.outcome for r in catalog.runs(STUDY)}
    folders = {key.rsplit("/", 1)[0] for key in fs.find(f"{bucket}/results/runs")}
    locations = {r.result_location.removeprefix("s3://") for r in catalog.runs(STUDY) if r.id in current}
    assert folders == locations, [(f, outcomes.get(f.rsplit("/", 1)[1])) for f in sorted(folders ^ locations)]
