"""Faults and concurrency with real processes: two `watch` services sharing one PostgreSQL
catalog and one S3 store take every file exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import s3fs

from biomarkerflow.catalog.manager import Catalog
from tests.databases import postgres_database

FILES = 50


def test_two_watch_services_process_every_file_exactly_once(s3_bucket: str, samples: Path, tmp_path: Path) -> None:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    recording = (samples / "gnactv_sample.bin").read_bytes()  # a short real file: gait runs in ~0.1 s
    bucket = s3_bucket.removeprefix("s3://")
    fs.pipe({f"{bucket}/studies/README.txt": b"study configs (*.yaml) appear here"})
    study = {
        f"{bucket}/studies/lab.yaml": textwrap.dedent(
            """\
                study: lab
                data:
                  location: ../data
                  include: ["*.bin"]
                  subject: '(?P<subject>[A-Za-z0-9]+)_'
                pipeline:
                  package: scikit-digital-health==0.17.18
                  steps:
                    - GaitLumbar: {}
                output:
                  location: ../results
                """
        ).encode()
    }
    with postgres_database() as url:
        home = str(tmp_path / "home")
        env = {**os.environ, "BIOMARKERFLOW_CATALOG": url, "BIOMARKERFLOW_HOME": home, "COLUMNS": "200"}
        command = [
            sys.executable, "-m", "biomarkerflow.cli", "watch",
            "--configs", f"{s3_bucket}/studies", "--workers", "1", "--interval", "1",
        ]  # fmt: skip
        services = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        try:
            catalog = Catalog(url)
            # The study appears once both services are up, so both take part from the start.
            _until_both_live(catalog, services)
            fs.pipe({f"{bucket}/data/S{i:02d}_lab.bin": recording for i in range(FILES)})
            fs.pipe(study)
            deadline = time.monotonic() + 300
            while True:
                done = [f for f in catalog.files("lab") if f.state == "SUCCEEDED"] if catalog.get_study("lab") else []
                if len(done) == FILES:
                    break
                assert all(s.poll() is None for s in services), [s.communicate() for s in services]
                assert time.monotonic() < deadline, f"only {len(done)} of {FILES} done"
                time.sleep(0.5)
            for service in services:
                service.send_signal(signal.SIGTERM)
            outputs = [service.communicate(timeout=120)[0] for service in services]
        finally:
            for service in services:
                if service.poll() is None:
                    service.kill()
        assert [s.returncode for s in services] == [0, 0], outputs
        runs = catalog.runs("lab")
        assert len(runs) == FILES, [(r.file_id, r.worker) for r in runs]  # no file ran twice
        assert {r.worker for r in runs} <= {w for w in _registered_names(outputs)}
        assert sorted(r.file_id for r in runs) == sorted(f.id for f in catalog.files("lab"))
        assert all(r.outcome == "succeeded" for r in runs)
        workers = {r.worker for r in runs}
        assert len(workers) == 2, f"one service ran every file: {workers}"
        published = fs.glob(f"{bucket}/results/runs/*/*/*/_SUCCESS")
        assert len(published) == FILES
        catalog.close()
    print(f"\n{FILES} files, runs per service: {[sum(r.worker == w for r in runs) for w in sorted(workers)]}")


def _until_both_live(catalog: Catalog, services: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 120
    while len(catalog.live_runners(within_seconds=60)) < len(services):
        assert all(s.poll() is None for s in services), [s.communicate() for s in services]
        assert time.monotonic() < deadline, "the services did not both start"
        time.sleep(0.2)


def _registered_names(outputs: list[str]) -> set[str]:
    """The worker names the services announced ("watching URL as NAME ...")."""
    return {line.split(" as ", 1)[1].split(" ", 1)[0] for out in outputs for line in out.splitlines() if " as " in line}


def test_processing_survives_the_catalog_connections_being_killed(
    tmp_path: Path, samples: Path, executor: object
) -> None:
    """Several times a second, PostgreSQL drops every connection of the catalog's database (as a
    restarted server or a broken network would); processing reconnects and finishes."""
    import threading

    import psycopg

    from biomarkerflow.stages.processing import process
    from tests.conftest import scanned_study
    from tests.databases import SERVER

    files = {f"S{i}_a.cwa": samples / "ax3_sample.cwa" for i in range(6)}  # ~1 s each
    with postgres_database() as url:
        heights = "subject,height_m\n" + "".join(f"S{i},1.7\n" for i in range(len(files)))
        catalog, _ = scanned_study(
            tmp_path, catalog_url=url, study="gait", files=files, steps="- GaitLumbar: {}\n", metadata=heights
        )
        database = url.rsplit("/", 1)[1]
        stop = threading.Event()
        killed: list[int] = []

        def kill_connections() -> None:
            with psycopg.connect(SERVER, autocommit=True) as admin:
                while not stop.wait(0.25):
                    rows = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()",
                        (database,),
                    ).fetchall()
                    killed.append(len(rows))

        killer = threading.Thread(target=kill_connections)
        killer.start()
        try:
            info = process(catalog, executor)  # type: ignore[arg-type]
        finally:
            stop.set()
            killer.join()
        assert sum(killed) > 0, "no connection was ever dropped"
        assert sorted(state for _, _, state in info.outcomes) == ["SUCCEEDED"] * len(files)
        assert [f.state for f in catalog.files("gait")] == ["SUCCEEDED"] * len(files)
        assert len(catalog.runs("gait")) == len(files)
        catalog.close()
