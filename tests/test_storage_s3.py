"""S3 storage against a real S3 HTTP endpoint: moto's server in its own process on loopback.

Nothing here patches a client: every call goes over HTTP to the server (see tests/s3server.py).
"""

from __future__ import annotations

import hashlib
import io
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tests.conftest as _conftest
from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config.loader import load_study_config
from biomarkerflow.errors import StorageError
from biomarkerflow.results import consolidate, query
from biomarkerflow.results.writer import write_run
from biomarkerflow.stages import discovery
from biomarkerflow.storage import store
from tests.s3server import free_port, recorded_requests

if not hasattr(_conftest, "s3_endpoint"):  # until conftest imports them for the whole suite
    from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401


def put(url: str, data: bytes) -> None:
    """Write an object through a client of our own (boto3), not through the code under test."""
    import boto3

    bucket, key = url.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def keys(bucket_url: str) -> list[str]:
    import boto3

    bucket = bucket_url.removeprefix("s3://")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def no_validation_checks(url: str, text: bytes) -> Any:
    """Schema validation only: these tests are about storage, not SKDH's step checks."""
    from biomarkerflow.config.validate import validate_source

    return validate_source(url, text, lambda workflow, sections: [])


# ---- the storage layer ---------------------------------------------------------------------


def test_list_files_with_etags_and_patterns(s3_bucket: str) -> None:
    for name in ("a_1.bin", "b_1.cwa", "notes.txt", "sub/c_1.bin", "sub/deeper/d_1.bin"):
        put(f"{s3_bucket}/data/{name}", name.encode() * 3)
    put(f"{s3_bucket}/other/e_1.bin", b"elsewhere")
    location = f"{s3_bucket}/data"
    entries = store.list_files(location, ["**/*.bin", "**/*.cwa"], exclude=["sub/deeper/*"])
    assert [e.relative_path for e in entries] == ["a_1.bin", "b_1.cwa", "sub/c_1.bin"]
    first = entries[0]
    assert first.url == f"{s3_bucket}/data/a_1.bin"
    assert first.size == len(b"a_1.bin" * 3)
    assert first.etag == hashlib.md5(b"a_1.bin" * 3).hexdigest()  # S3's etag, quotes stripped
    assert first.fingerprint == first.etag
    assert first.mtime is not None and abs(first.mtime - time.time()) < 3600
    # A trailing slash and the configs patterns work as for local folders.
    assert [e.name for e in store.list_files(location + "/", ["*.txt"])] == ["notes.txt"]


def test_rescan_sees_new_and_changed_objects(s3_bucket: str) -> None:
    location = f"{s3_bucket}/data"
    put(f"{location}/a_1.bin", b"aaaaa")
    before = store.list_files(location, ["*.bin"])
    assert store.exists(f"{location}/a_1.bin") and not store.exists(f"{location}/b_1.bin")
    put(f"{location}/a_1.bin", b"bbbbb")  # same size, likely the same second: only the etag tells
    put(f"{location}/b_1.bin", b"new")
    after = {e.relative_path: e for e in store.list_files(location, ["*.bin"])}
    assert set(after) == {"a_1.bin", "b_1.bin"}
    assert after["a_1.bin"].size == before[0].size
    assert after["a_1.bin"].fingerprint != before[0].fingerprint
    assert store.exists(f"{location}/b_1.bin")


def test_missing_locations_are_storage_errors_naming_the_url(s3_bucket: str) -> None:
    with pytest.raises(StorageError, match=f"{s3_bucket}/nothing-here.*does not exist"):
        store.list_files(f"{s3_bucket}/nothing-here", ["*"])
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-x' does not exist"):
        store.list_files("s3://no-such-bucket-x/data", ["*"])
    with pytest.raises(StorageError, match=f"file not found: {s3_bucket}/missing.csv"):
        store.read_bytes(f"{s3_bucket}/missing.csv")
    assert not store.exists("s3://no-such-bucket-x/data/file.bin")


def test_read_bytes_and_local_copy(s3_bucket: str) -> None:
    url = f"{s3_bucket}/data/P1_rec.cwa"
    put(url, b"\x00\x01recording")
    assert store.read_bytes(url) == b"\x00\x01recording"
    with store.local_copy(url) as path:
        assert path.name == "P1_rec.cwa" and path.read_bytes() == b"\x00\x01recording"
    assert not path.exists() and not path.parent.exists()  # the download is cleaned up
    with pytest.raises(StorageError, match="cannot download"), store.local_copy(f"{s3_bucket}/data/none.cwa"):
        pass


def test_publish_folder_uploads_success_marker_last(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    (folder / "nested").mkdir(parents=True)
    for name in ("sleep.parquet", "wear.parquet", "provenance.json", "zz_last_name.csv", "nested/x.json"):
        (folder / name).write_text(name)
    destination = f"{s3_bucket}/out/runs/S1/rec/run-1"
    with recorded_requests(s3_endpoint) as requests:
        store.publish_folder(folder, destination)
    puts = [path for method, path in requests if method == "PUT"]
    prefix = f"/{s3_bucket.removeprefix('s3://')}/out/runs/S1/rec/run-1/"
    assert [p.removeprefix(prefix) for p in puts] == [
        "nested/x.json",
        "provenance.json",
        "sleep.parquet",
        "wear.parquet",
        "zz_last_name.csv",
        "_SUCCESS",
    ]
    assert store.read_bytes(f"{destination}/nested/x.json") == b"nested/x.json"


def test_replace_folder_puts_markers_last_and_removes_stale(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    destination = f"{s3_bucket}/out/tables"
    put(f"{destination}/old.parquet", b"stale")
    put(f"{destination}/sleep.parquet", b"previous")
    source = tmp_path / "tables"
    source.mkdir()
    for name in ("_runs.json", "sleep.parquet", "wear.parquet"):
        (source / name).write_text(name)
    with recorded_requests(s3_endpoint) as requests:
        store.replace_folder(source, destination)
    puts = [path.rsplit("/", 1)[1] for method, path in requests if method == "PUT"]
    assert puts == ["sleep.parquet", "wear.parquet", "_runs.json"]
    assert [e.name for e in store.list_files(destination, ["*"])] == ["_runs.json", "sleep.parquet", "wear.parquet"]
    assert store.read_bytes(f"{destination}/sleep.parquet") == b"sleep.parquet"


def test_writing_to_a_missing_bucket_is_a_storage_error(s3_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_text("x")
    with pytest.raises(StorageError, match="cannot write s3://no-such-bucket-y/tables: bucket"):
        store.replace_folder(tmp_path, "s3://no-such-bucket-y/tables")
    assert "no-such-bucket-y" not in _bucket_names()  # never created behind the user's back


def _bucket_names() -> list[str]:
    import boto3

    return [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]


def test_unreachable_endpoint_is_a_clear_storage_error(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries would only make the test slow
    with pytest.raises(StorageError) as caught:
        store.list_files(f"{s3_bucket}/data", ["*"])
    assert caught.value.message.startswith(f"cannot list {s3_bucket}/data: cannot connect to the storage endpoint")
    assert closed in caught.value.message
    assert caught.value.hint and "AWS_ENDPOINT_URL" in caught.value.hint
    with pytest.raises(StorageError, match=f"cannot read {s3_bucket}/x.yaml: cannot connect"):
        store.read_bytes(f"{s3_bucket}/x.yaml")


# ---- results on S3 -------------------------------------------------------------------------


def test_run_folder_without_success_marker_is_not_consolidated(s3_bucket: str) -> None:
    frame = pd.DataFrame({"value": [1.0, 2.0]})
    done = f"{s3_bucket}/out/runs/S1/rec/run-1"
    write_run(done, {"sleep": frame}, {"run_id": "run-1"}, key_columns={"run_id": "run-1"}, formats=["parquet"])
    assert [e.name for e in consolidate.published_tables(done)] == ["sleep.parquet"]
    half = f"{s3_bucket}/out/runs/S1/rec/run-2"
    buffer = io.BytesIO()
    pq.write_table(pa.table({"value": [3.0]}), buffer)
    put(f"{half}/sleep.parquet", buffer.getvalue())  # an upload interrupted before its marker
    assert consolidate.published_tables(half) == []


def test_query_reads_consolidated_tables_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    output = f"{s3_bucket}/results/study-a"
    source = tmp_path / "tables"
    source.mkdir()
    pq.write_table(pa.table({"subject": ["P1", "P1", "P2"], "minutes": [10.0, 20.0, 5.0]}), source / "sleep.parquet")
    (source / "_runs.json").write_text("[]")
    store.replace_folder(source, consolidate.tables_location(output))
    result = query.run_query(output, "SELECT subject, SUM(minutes) AS m FROM sleep GROUP BY 1 ORDER BY 1")
    assert result.to_dict(orient="list") == {"subject": ["P1", "P2"], "m": [30.0, 5.0]}
    assert query.connect(f"{s3_bucket}/results/none")[1] == []


# ---- discovery with S3 locations -----------------------------------------------------------


def _study_yaml(study: str, data: str, output: str, metadata: str | None = None, steps: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        study: {study}
        data:
          location: {data}
          include: ["*.bin", "*.cwa"]
          subject: '(?P<subject>[A-Za-z0-9]+)_'
        """
    )
    if metadata:
        text += f"metadata:\n  - location: {metadata}\n"
    text += "pipeline:\n  package: scikit-digital-health==0.17.18\n  steps:\n"
    text += steps or "    - GaitLumbar: {}\n"
    return text + f"output:\n  location: {output}\n"


def test_scan_local_config_with_data_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    data = f"{s3_bucket}/raw"
    for i in range(3):
        put(f"{data}/P{i}_rec.cwa", f"recording {i}".encode())
    put(f"{data}/readme.txt", b"not a recording")
    configs = tmp_path / "studies"
    configs.mkdir()
    (configs / "s3-study.yaml").write_text(_study_yaml("s3-study", data, f"{s3_bucket}/results"))
    catalog = Catalog.for_home(tmp_path / "home")

    info = discovery.scan(catalog, str(configs), no_validation_checks)
    assert info.ok, info.studies
    assert (info.studies[0].files.new, info.studies[0].matched_files) == (3, 3)
    files = catalog.files("s3-study")
    assert [f.url for f in files] == [f"{data}/P{i}_rec.cwa" for i in range(3)]
    assert files[0].subject == "P0"
    assert files[0].fingerprint == hashlib.md5(b"recording 0").hexdigest()
    assert catalog.get_study("s3-study").output_location == f"{s3_bucket}/results"  # type: ignore[union-attr]

    again = discovery.scan(catalog, str(configs), no_validation_checks)
    assert again.studies[0].config_change == "unchanged"
    assert (again.studies[0].files.new, again.studies[0].files.changed, again.studies[0].files.unchanged) == (0, 0, 3)

    put(f"{data}/P1_rec.cwa", b"recording 1, re-uploaded")
    put(f"{data}/P9_rec.cwa", b"recording 9")
    third = discovery.scan(catalog, str(configs), no_validation_checks).studies[0].files
    assert (third.new, third.changed, third.unchanged) == (1, 1, 2)


def test_configs_location_on_s3_resolves_relative_locations_there(s3_bucket: str, tmp_path: Path) -> None:
    put(f"{s3_bucket}/project/data/P1_rec.cwa", b"recording")
    put(f"{s3_bucket}/project/data/subjects.csv", b"subject,height_m\nP1,1.7\n")
    text = _study_yaml("remote-config", "../data", "../results", metadata="../data/subjects.csv")
    put(f"{s3_bucket}/project/studies/remote-config.yaml", text.encode())
    put(f"{s3_bucket}/project/studies/notes.md", b"not a config")
    catalog = Catalog.for_home(tmp_path / "home")

    info = discovery.scan(catalog, f"{s3_bucket}/project/studies", no_validation_checks)
    assert info.ok, info.studies
    assert [s.source for s in info.studies] == [f"{s3_bucket}/project/studies/remote-config.yaml"]
    study = catalog.get_study("remote-config")
    assert study is not None
    assert study.data_location == f"{s3_bucket}/project/data"
    assert study.output_location == f"{s3_bucket}/project/results"
    assert study.config["metadata"][0]["location"] == f"{s3_bucket}/project/data/subjects.csv"
    assert [f.url for f in catalog.files("remote-config")] == [f"{s3_bucket}/project/data/P1_rec.cwa"]
    # One config file named by its URL, and the loader reading a URL itself.
    single = discovery.scan(catalog, f"{s3_bucket}/project/studies/remote-config.yaml", no_validation_checks)
    assert [s.config_change for s in single.studies] == ["unchanged"]
    assert load_study_config(f"{s3_bucket}/project/studies/remote-config.yaml").config.study == "remote-config"


def test_scan_with_unreachable_endpoint_reports_the_study_and_keeps_the_catalog(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = f"{s3_bucket}/raw"
    put(f"{data}/P1_rec.cwa", b"recording")
    configs = tmp_path / "studies"
    configs.mkdir()
    (configs / "flaky.yaml").write_text(_study_yaml("flaky", data, f"{s3_bucket}/results"))
    (configs / "new.yaml").write_text(_study_yaml("new", f"{s3_bucket}/other", f"{s3_bucket}/results-new"))
    catalog = Catalog.for_home(tmp_path / "home")
    put(f"{s3_bucket}/other/P2_rec.cwa", b"recording")
    assert discovery.scan(catalog, str(configs), no_validation_checks).ok
    (configs / "new.yaml").write_text(_study_yaml("new", f"{s3_bucket}/other", f"{s3_bucket}/moved"))
    before = [(f.url, f.state, f.fingerprint) for f in catalog.files()]

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    info = discovery.scan(catalog, str(configs), no_validation_checks)
    assert not info.ok
    by_source = {Path(s.source).name: s for s in info.studies}
    assert by_source["flaky.yaml"].config_change == "error"  # unchanged config, listing failed
    assert by_source["new.yaml"].config_change == "error"  # changed config, data location unreachable
    for study in info.studies:
        assert study.error and "cannot connect to the storage endpoint" in study.error and closed in study.error
    assert [(f.url, f.state, f.fingerprint) for f in catalog.files()] == before
    assert catalog.get_study("new").output_location == f"{s3_bucket}/results-new"  # type: ignore[union-attr]

    monkeypatch.undo()
    recovered = discovery.scan(catalog, str(configs), no_validation_checks)
    assert recovered.ok
    assert catalog.get_study("new").output_location == f"{s3_bucket}/moved"  # type: ignore[union-attr]


def test_rescan_of_unchanged_objects_only_lists(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    """1,200 objects: a rescan is listing only (2 LIST requests, no GET or HEAD of any data)."""
    import s3fs

    count = 1200  # two pages of ListObjectsV2 (1000 keys each)
    data = f"{s3_bucket}/raw"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # our own client, to fill the bucket fast
    fs.pipe({f"{data}/P{i:05d}_rec.cwa".removeprefix("s3://"): f"recording {i}".encode() for i in range(count)})
    configs = tmp_path / "studies"
    configs.mkdir()
    (configs / "big.yaml").write_text(_study_yaml("big", data, f"{s3_bucket}/results"))
    catalog = Catalog.for_home(tmp_path / "home")
    started = time.perf_counter()
    first = discovery.scan(catalog, str(configs), no_validation_checks)
    first_seconds = time.perf_counter() - started
    assert first.studies[0].files.new == count

    with recorded_requests(s3_endpoint) as requests:
        started = time.perf_counter()
        again = discovery.scan(catalog, str(configs), no_validation_checks)
        rescan_seconds = time.perf_counter() - started
    assert (again.studies[0].config_change, again.studies[0].files.unchanged) == ("unchanged", count)
    data_requests = [(m, p) for m, p in requests if "/raw/" in p or p.endswith("/raw")]
    assert data_requests == [], data_requests  # nothing read per object
    lists = [p for m, p in requests if m == "GET" and not p.strip("/").count("/")]
    assert len(lists) == 2, requests  # ListObjectsV2 pages of 1000 keys
    assert catalog.files("big")[0].state == FileState.DISCOVERED.value
    print(
        f"\nS3 scan of {count} objects: first {first_seconds:.2f} s, rescan {rescan_seconds:.2f} s "
        f"({len(requests)} requests: {sorted({m for m, _ in requests})})"
    )


# ---- end to end: data, metadata and results on S3 --------------------------------------------


def test_process_a_study_whose_data_metadata_and_results_are_on_s3(
    s3_bucket: str, tmp_path: Path, samples: Path
) -> None:
    from biomarkerflow.engine.executor import LocalExecutor
    from biomarkerflow.stages.processing import process

    data, output = f"{s3_bucket}/raw", f"{s3_bucket}/results/gait"
    put(f"{data}/ax6_a.cwa", (samples / "ax6_sample.cwa").read_bytes())
    put(f"{s3_bucket}/meta/subjects.csv", b"subject,height_m\nax6,1.7\n")
    configs = tmp_path / "studies"
    configs.mkdir()
    text = _study_yaml("gait", data, output, metadata=f"{s3_bucket}/meta/subjects.csv")
    (configs / "gait.yaml").write_text(text + "requirements:\n  metadata: [height_m]\n")
    catalog = Catalog.for_home(tmp_path / "home")
    assert discovery.scan(catalog, str(configs), no_validation_checks).ok

    # Workers inherit the environment when they start: a fresh pool, started after
    # s3_endpoint pointed AWS_* at the test server, reaches it from its own process.
    executor = LocalExecutor(1)
    try:
        info = process(catalog, executor)
    finally:
        executor.close()
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"], [o.error for _, o, _ in info.outcomes]

    (run,) = catalog.runs("gait")
    assert run.result_location == f"{output}/runs/ax6/ax6_a/{run.id}"
    bucket = s3_bucket.removeprefix("s3://") + "/"
    run_key = run.result_location.removeprefix(f"s3://{bucket}")
    assert [k for k in keys(s3_bucket) if k.startswith(run_key)] == [
        f"{run_key}/_SUCCESS",
        f"{run_key}/activity.png",
        f"{run_key}/events.parquet",
        f"{run_key}/gait.parquet",
        f"{run_key}/provenance.json",
        f"{run_key}/quality.parquet",
    ]
    provenance = store.read_bytes(f"{run.result_location}/provenance.json").decode()
    assert f'"url": "{data}/ax6_a.cwa"' in provenance
    assert hashlib.md5((samples / "ax6_sample.cwa").read_bytes()).hexdigest() in provenance  # the etag fingerprint

    assert info.consolidated["gait"]["gait"] > 0
    counted = query.run_query(output, "SELECT COUNT(*) AS n, MIN(subject) AS s FROM gait")
    assert counted.to_dict(orient="records") == [{"n": info.consolidated["gait"]["gait"], "s": "ax6"}]

    # The same run folder without its marker (as if its upload had been cut short) is not trusted.
    import boto3

    boto3.client("s3").delete_object(Bucket=bucket.rstrip("/"), Key=f"{run_key}/_SUCCESS")
    study = catalog.get_study("gait")
    assert study is not None
    # Only the inclusion table (made from the catalog, not from run folders) is left.
    assert consolidate.consolidate_study(catalog, study) == {"inclusion": 1}
    assert query.connect(output)[1] == ["inclusion"]
