"""The S3 endpoint goes away while files are processed (a fault proxy in front of moto's
server resets every connection): nothing is lost, nothing is done twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import s3fs

from biomarkerflow.catalog.manager import Catalog


def test_processing_survives_an_s3_outage(s3_endpoint: str, s3_bucket: str, samples: Path, tmp_path: Path) -> None:
    """The S3 endpoint goes down for some seconds while `process` runs (every connection reset,
    new ones refused): the clients' retries and the job retries with backoff carry the run
    through; every file ends SUCCEEDED with exactly one complete, published result set."""
    from urllib.parse import urlsplit

    from biomarkerflow.config.validate import run_workflow_checks, validate_source
    from biomarkerflow.stages.discovery import scan
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
