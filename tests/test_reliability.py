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
    fs.pipe({f"{bucket}/data/S{i:02d}_lab.bin": recording for i in range(FILES)})
    fs.pipe(
        {
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
    )
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
        published = fs.glob(f"{bucket}/results/runs/*/*/*/_SUCCESS")
        assert len(published) == FILES
        catalog.close()
    print(f"\n{FILES} files, runs per service: {[sum(r.worker == w for r in runs) for w in sorted(workers)]}")


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

    from biomarkerflow.workflows.processing import process
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


def test_processing_survives_an_s3_outage(s3_endpoint: str, s3_bucket: str, samples: Path, tmp_path: Path) -> None:
    """The S3 endpoint goes down for some seconds while `process` runs (every connection reset,
    new ones refused): the clients' retries and the job retries with backoff carry the run
    through; every file ends SUCCEEDED with exactly one complete, published result set."""
    from urllib.parse import urlsplit

    from biomarkerflow.config.validate import run_workflow_checks, validate_source
    from biomarkerflow.workflows.discovery import scan
    from tests.faultproxy import FaultProxy

    files = 10
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = s3_bucket.removeprefix("s3://")
    recording = (samples / "ax3_sample.cwa").read_bytes()  # GaitLumbar: about a second per file
    fs.pipe({f"{bucket}/data/S{i:02d}_lab.cwa": recording for i in range(files)})
    heights = "subject,height_m\n" + "".join(f"S{i:02d},1.7\n" for i in range(files))
    fs.pipe({f"{bucket}/meta/subjects.csv": heights.encode()})
    configs = tmp_path / "studies"
    configs.mkdir()
    (configs / "lab.yaml").write_text(
        textwrap.dedent(
            f"""\
            study: lab
            data:
              location: {s3_bucket}/data
              include: ["*.cwa"]
              subject: '(?P<subject>[A-Za-z0-9]+)_'
            metadata:
              - location: {s3_bucket}/meta/subjects.csv
            requirements:
              metadata: [height_m]
            pipeline:
              package: scikit-digital-health==0.17.18
              steps:
                - GaitLumbar: {{}}
            output:
              location: {s3_bucket}/results
            max_attempts: 6
            retry_delay_seconds: 1
            """
        )
    )
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    assert scan(catalog, str(configs), lambda url, text: validate_source(url, text, run_workflow_checks)).ok

    moto = urlsplit(s3_endpoint)
    proxy = FaultProxy(moto.hostname or "127.0.0.1", moto.port or 80)
    env = {
        **os.environ,
        "BIOMARKERFLOW_HOME": str(home),
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ENDPOINT_URL_S3": proxy.url,
    }
    try:
        service = subprocess.Popen(
            [sys.executable, "-m", "biomarkerflow.cli", "process", "--workers", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not any(f.state == "SUCCEEDED" for f in catalog.files("lab")):  # jobs are under way
                assert service.poll() is None, service.communicate()[0]
                assert time.monotonic() < deadline, "no file finished"
                time.sleep(0.1)
            with proxy.outage() as counts:
                time.sleep(6)
            output = service.communicate(timeout=300)[0]
        finally:
            if service.poll() is None:
                service.kill()
    finally:
        proxy.close()
    assert counts.cut + counts.refused > 0, counts  # the outage really met the platform's traffic
    assert service.returncode == 0, output
    states = [f.state for f in catalog.files("lab")]
    assert states == ["SUCCEEDED"] * files, output
    runs = catalog.runs("lab")
    succeeded = [r for r in runs if r.outcome == "succeeded"]
    assert sorted(r.file_id for r in succeeded) == sorted(f.id for f in catalog.files("lab"))  # one each
    failed = [r for r in runs if r.outcome != "succeeded"]
    assert all(r.error for r in failed), failed  # every failed attempt says why
    published = {key.rsplit("/", 1)[0] for key in fs.glob(f"{bucket}/results/runs/*/*/*/_SUCCESS")}
    assert published == {r.result_location.removeprefix("s3://") for r in succeeded}
    for folder in published:  # each trusted folder holds the whole result set
        assert {p.rsplit("/", 1)[1] for p in fs.ls(folder, detail=False)} >= {"gait.parquet", "provenance.json"}
    from biomarkerflow.results.query import run_query

    table = run_query(
        f"{s3_bucket}/results", "SELECT COUNT(DISTINCT subject) AS subjects, COUNT(DISTINCT run_id) AS runs FROM gait"
    )
    assert table.to_dict(orient="records") == [{"subjects": files, "runs": files}]
    print(f"\nS3 outage: {counts}; failed attempts retried: {[r.error for r in failed]}")
    assert "Traceback" not in output, output  # an outage is reported in words, not stack traces
    catalog.close()
