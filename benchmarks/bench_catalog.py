"""Catalog benchmarks: scan throughput of 100k objects, and claim throughput with 4 claimers.

    .venv/bin/python benchmarks/bench_catalog.py [--objects 100000] [--files 5000] [--stores local,s3]

1. Scan: 100k small files in a local folder, and 100k objects in a bucket of a real S3
   HTTP endpoint on loopback (moto's server, its own process); list them
   (store.list_files) and register them (discovery.register_study_files) into a fresh
   SQLite and a fresh PostgreSQL catalog: first scan (all new) and rescan (all
   unchanged). Objects per second, and the S3 requests a rescan makes.
2. Claim: N READY files; 4 separate processes, each with its own catalog connection,
   claim batches of `--batch` until none is left (claim -> start_run -> finish_run, the
   processing loop's catalog work per job, minus the job). Jobs per second, and that
   every file was taken exactly once. PostgreSQL (SKIP LOCKED) and SQLite.

Writes benchmarks/results/catalog.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.databases (the throwaway PostgreSQL database helper)

from tests.databases import catalog_url  # noqa: E402
from tests.s3server import aws_environment, moto_server, recorded_requests  # noqa: E402

from biomarkerflow.catalog.manager import Catalog, RunMetrics  # noqa: E402
from biomarkerflow.stages import discovery  # noqa: E402
from biomarkerflow.storage import store  # noqa: E402

STUDY_CONFIG = {"data": {"location": "", "include": ["**/*.bin"], "subject": "(?P<subject>[A-Za-z0-9]+)_"}}


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
    }


def make_objects(folder: Path, count: int) -> None:
    for i in range(count):
        sub = folder / f"batch{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"S{i:06d}_wrist.bin").write_bytes(b"x")


def make_s3_objects(bucket: str, count: int) -> None:
    """`count` one-byte objects under s3://bucket/data/, written through our own client."""
    import boto3
    import s3fs

    boto3.client("s3").create_bucket(Bucket=bucket)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    chunk = 5000
    for start in range(0, count, chunk):
        fs.pipe(
            {
                f"{bucket}/data/batch{i // 1000:03d}/S{i:06d}_wrist.bin": b"x"
                for i in range(start, min(start + chunk, count))
            }
        )
        print(f"  {min(start + chunk, count)} objects in the bucket", flush=True)


def add_study(catalog: Catalog, study: str, data: Path | str) -> dict[str, Any]:
    config = json.loads(json.dumps(STUDY_CONFIG))
    config["data"]["location"] = str(data)
    catalog.upsert_study(
        study,
        config_source=f"/c/{study}.yaml",
        config_sha256="a" * 64,
        config=config,
        output_location=f"{str(data).rsplit('/', 1)[0]}/out",
        data_location=str(data),
        priority=0,
    )
    return config


def bench_scan(
    backend: str, data: Path | str, count: int, scratch: Path, endpoint: str | None = None
) -> dict[str, Any]:
    requests: list[tuple[str, str]] = []
    with catalog_url(backend, scratch / f"scan-{backend}") as url:
        catalog = Catalog(url)
        config = add_study(catalog, "scan", data)
        started = time.perf_counter()
        listed = store.list_files(str(data), ["**/*.bin"])
        list_seconds = time.perf_counter() - started
        assert len(listed) == count
        started = time.perf_counter()
        info, matched = discovery.register_study_files(catalog, "scan", config)
        first = time.perf_counter() - started
        assert info.new == count
        with recorded_requests(endpoint) if endpoint else contextlib.nullcontext(requests) as requests:
            started, cpu_started = time.perf_counter(), time.process_time()
            info, matched = discovery.register_study_files(catalog, "scan", config)
            rescan = time.perf_counter() - started
            rescan_cpu = time.process_time() - cpu_started
        assert info.unchanged == count and info.new == 0
        catalog.close()
    s3_requests = {"rescan_requests": len(requests), "rescan_request_methods": sorted({m for m, _ in requests})}
    return {
        **(s3_requests if endpoint else {}),
        "objects": count,
        "list_seconds": round(list_seconds, 2),
        "list_objects_per_second": round(count / list_seconds),
        "first_scan_seconds": round(first, 2),
        "first_scan_objects_per_second": round(count / first),
        "rescan_seconds": round(rescan, 2),
        "rescan_objects_per_second": round(count / rescan),
        # This process's own CPU in the rescan (listing, parsing, comparing); on S3 the
        # rest of the wall time is waiting for the endpoint.
        "rescan_client_cpu_seconds": round(rescan_cpu, 2),
    }


def claimer(url: str, name: str, batch: int, out: Any) -> None:
    catalog = Catalog(url)
    taken: list[int] = []
    while files := catalog.claim(name, batch, 600):
        for file in files:
            run_id = f"{name}-{file.id}-{uuid.uuid4().hex[:6]}"
            catalog.start_run(
                file.id, run_id=run_id, worker=name, host="bench", config_sha256="a" * 64, package_version="x"
            )
            catalog.finish_run(run_id, RunMetrics(outcome="succeeded"), max_attempts=3, retry_at=None)
            taken.append(file.id)
    out.put(taken)


def bench_claims(backend: str, files: int, claimers: int, batch: int, scratch: Path) -> dict[str, Any]:
    with catalog_url(backend, scratch / f"claim-{backend}") as url:
        catalog = Catalog(url)
        add_study(catalog, "claims", scratch)
        catalog.register_files(
            "claims", [(f"/d/{i}.bin", f"{i}.bin", f"S{i}", 1000 + i, 1.0, "f") for i in range(files)]
        )
        for file in catalog.files("claims"):
            catalog.set_gate(file.id, file.state, True, None)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        processes = [
            context.Process(target=claimer, args=(url, f"w{i}", batch, results)) for i in range(claimers)
        ]
        started = time.perf_counter()
        for process in processes:
            process.start()
        taken = [results.get() for _ in processes]
        seconds = time.perf_counter() - started
        for process in processes:
            process.join()
        every = [i for got in taken for i in got]
        catalog.close()
    return {
        "files": files,
        "claimers": claimers,
        "batch": batch,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(files / seconds),
        "per_claimer": [len(got) for got in taken],
        "exactly_once": len(every) == files and len(set(every)) == files,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--stores", default="local,s3", help="where the scanned objects live: local, s3 or both")
    parser.add_argument("--skip-claims", action="store_true")
    args = parser.parse_args()
    out = ROOT / "benchmarks" / "results" / "catalog.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        stores = args.stores.split(",")
        if "local" in stores:
            data = scratch / "data"
            started = time.perf_counter()
            make_objects(data, args.objects)
            print(f"made {args.objects} objects in {time.perf_counter() - started:.1f} s", flush=True)
            results["scan"] = {}
            for backend in ("sqlite", "postgresql"):
                results["scan"][backend] = bench_scan(backend, data, args.objects, scratch)
                print("scan", backend, results["scan"][backend], flush=True)
        if "s3" in stores:
            with moto_server(scratch) as endpoint, aws_environment(endpoint):
                started = time.perf_counter()
                make_s3_objects("bench", args.objects)
                print(f"put {args.objects} objects in {time.perf_counter() - started:.1f} s", flush=True)
                results["scan_s3"] = {}
                for backend in ("sqlite", "postgresql"):
                    scanned = bench_scan(backend, "s3://bench/data", args.objects, scratch, endpoint)
                    results["scan_s3"][backend] = scanned
                    print("scan s3", backend, results["scan_s3"][backend], flush=True)
        results.setdefault("claims", {})
        for backend in ("postgresql", "sqlite") if not args.skip_claims else ():
            results["claims"][backend] = bench_claims(backend, args.files, args.claimers, args.batch, scratch)
            print("claims", backend, results["claims"][backend], flush=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
