"""Price-transparency files to Parquet: this platform against the usual tools, in one run.

    .venv/bin/python benchmarks/bench_mrf.py [--mb 300] [--mb 3000] [--out benchmarks/results/mrf.json]

Files: generated in-network rates files (`price_transparency.generate`, provider references
after `in_network`), each size raw and gzip. Contenders, each in a fresh process so peak
memory (ru_maxrss) is its own, each writing the prices (one row per negotiated price) as
Parquet in row groups:
  platform   biomarkerflow's extract (every table; the C scan and in-network loop)
  platform_python  the same with BIOMARKERFLOW_MRF_NATIVE=0: the exact Python path alone
  ijson      ijson's C backend (yajl2_c) iterating `in_network.item`, as the AWS Glue blog
             and dolthub's mrfutils do, rows built in Python
  duckdb     DuckDB read_json on the whole file (the largest object it allows: 4 GB), unnest
             in SQL, one thread
MB/s is of uncompressed JSON per core (wall time; every contender uses one core).

Also measured: `layout`, the share of the prices table (bytes of row groups whose billing
code min/max statistics admit the code) a query for one billing code must read, for the
platform's sorted runs and for document order; and `parallel`, `biomarkerflow run` over
several files with 1 and 2 Dask workers. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_catalog import machine  # noqa: E402

PLATFORM = r"""
import resource, sys, time
from pathlib import Path
start = time.perf_counter()
from biomarkerflow.plugins.price_transparency import tables
from biomarkerflow.plugins.price_transparency.extract import extract
if len(sys.argv) > 3 and sys.argv[3] == "document-order":
    tables.CLUSTERED_BY.clear()
result = extract(Path(sys.argv[1]), Path(sys.argv[2]), fetch=lambda url: b"")
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

IJSON = r"""
import gzip, resource, sys, time
start = time.perf_counter()
import ijson, pyarrow as pa, pyarrow.parquet as pq
path, out = sys.argv[1], sys.argv[2]
opened = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
columns = {"item": [], "rate": [], "price": [], "billing_code": [], "negotiated_rate": [], "negotiated_type": []}
schema = pa.schema([("item", pa.int64()), ("rate", pa.int64()), ("price", pa.int64()), ("billing_code", pa.string()),
                    ("negotiated_rate", pa.string()), ("negotiated_type", pa.string())])
writer = pq.ParquetWriter(out + "/prices.parquet", schema)
def flush():
    writer.write_table(pa.table(columns, schema=schema))
    for values in columns.values():
        values.clear()
with opened as stream:
    for index, item in enumerate(ijson.items(stream, "in_network.item")):
        for r, rate in enumerate(item["negotiated_rates"]):
            for p, price in enumerate(rate["negotiated_prices"]):
                columns["item"].append(index); columns["rate"].append(r); columns["price"].append(p)
                columns["billing_code"].append(str(item["billing_code"]))
                columns["negotiated_rate"].append(str(price["negotiated_rate"]))
                columns["negotiated_type"].append(price["negotiated_type"])
        if len(columns["item"]) >= 32768:
            flush()
flush()
writer.close()
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

DUCKDB = r"""
import resource, sys, time
start = time.perf_counter()
import duckdb
path, out = sys.argv[1], sys.argv[2]
connection = duckdb.connect(config={"threads": 1, "temp_directory": out})
connection.execute(f'''
COPY (
  WITH items AS (SELECT unnest(in_network) AS i FROM read_json('{path}', maximum_object_size=4294967295)),
  rates AS (SELECT i.billing_code AS billing_code, unnest(i.negotiated_rates) AS r FROM items)
  SELECT billing_code, p.negotiated_type, p.negotiated_rate
  FROM (SELECT billing_code, unnest(r.negotiated_prices) AS p FROM rates)
) TO '{out}/prices.parquet' (FORMAT parquet, ROW_GROUP_SIZE 32768)''')
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

# The platform without its C library: the exact Python path alone (the before of the C path).
PLATFORM_PYTHON = 'import os; os.environ["BIOMARKERFLOW_MRF_NATIVE"] = "0"\n' + PLATFORM
CONTENDERS = {"platform": PLATFORM, "platform_python": PLATFORM_PYTHON, "ijson": IJSON, "duckdb": DUCKDB}


def measure(code: str, path: Path, scratch: Path, timeout: float, *extra: str, keep: bool = False) -> dict[str, object]:
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(out), *extra], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    finally:
        if not keep:
            for leftover in out.iterdir():
                leftover.unlink()
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "Error" in line] or done.stderr.splitlines()
        return {"error": (lines or ["exit " + str(done.returncode)])[-1].strip()[:300]}
    seconds, peak = done.stdout.split()[-2:]
    return {"seconds": round(float(seconds), 2), "peak_rss_mib": round(int(peak) / 2**20)}


def read_share(prices: Path) -> dict[str, float]:
    """For a query on one billing code: the mean and largest share of the table's bytes in
    row groups whose billing_code statistics admit it (what DuckDB reads), over all codes."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(prices).metadata
    column = metadata.schema.to_arrow_schema().get_field_index("billing_code")
    groups = []
    codes: set[str] = set()
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        statistics = group.column(column).statistics
        groups.append((statistics.min, statistics.max, group.total_byte_size))
    for batch in pq.ParquetFile(prices).iter_batches(columns=["billing_code"]):
        codes.update(c for c in batch.column(0).to_pylist() if c is not None)
    total = sum(size for _, _, size in groups)
    shares = [sum(size for low, high, size in groups if low <= code <= high) / total for code in codes]
    return {
        "row_groups": metadata.num_row_groups,
        "codes": len(codes),
        "mean_share_read": round(sum(shares) / len(shares), 3),
        "max_share_read": round(max(shares), 3),
    }


def layout(path: Path, scratch: Path, timeout: float) -> dict[str, object]:
    """The platform's sorted runs against document order: extract time and read share."""
    figures: dict[str, object] = {}
    for name, extra in (("sorted_runs", ()), ("document_order", ("document-order",))):
        timing = measure(PLATFORM, path, scratch, timeout, *extra, keep=True)
        figures[name] = {**timing, **read_share(scratch / "out" / "prices.parquet")}
        for leftover in (scratch / "out").iterdir():
            leftover.unlink()
    return figures


STUDY = """\
study: bench-rates
workflow: price-transparency
data:
  location: ../data
"""


def parallel(source: Path, copies: int, scratch: Path) -> dict[str, object]:
    """`biomarkerflow run` over `copies` files (one job each) with 1 and 2 Dask workers."""
    root = scratch / "parallel"
    (root / "data").mkdir(parents=True)
    (root / "studies").mkdir()
    (root / "studies" / "bench-rates.yaml").write_text(STUDY)
    for copy in range(copies):
        os.link(source, root / "data" / f"plan-{copy}_{source.name}")
    figures: dict[str, object] = {"files": copies, "file": source.name}
    for workers in (1, 2):
        home = root / f"home-{workers}"
        shutil.rmtree(root / "results", ignore_errors=True)
        env = {**os.environ, "BIOMARKERFLOW_HOME": str(home)}
        command = [sys.executable, "-m", "biomarkerflow.cli", "run", "--configs", str(root / "studies")]
        start = time.perf_counter()
        done = subprocess.run([*command, "--workers", str(workers)], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            figures[f"workers_{workers}"] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        figures[f"workers_{workers}"] = {"seconds": round(seconds, 2)}
        print(f"parallel, {workers} worker(s): {seconds:.1f} s", file=sys.stderr, flush=True)
    one, two = figures.get("workers_1"), figures.get("workers_2")
    if isinstance(one, dict) and isinstance(two, dict) and "seconds" in one and "seconds" in two:
        figures["speedup_2_workers"] = round(float(one["seconds"]) / float(two["seconds"]), 2)
    shutil.rmtree(root)
    return figures


def main() -> None:
    from biomarkerflow.plugins.price_transparency.generate import Shape, write

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, action="append", help="uncompressed size of a file (repeatable)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a contender may take per file")
    parser.add_argument("--parallel", type=int, default=4, help="files for the Dask scaling run (0: skip)")
    parser.add_argument("--only", choices=sorted(CONTENDERS), action="append", help="contenders to run")
    parser.add_argument("--no-layout", action="store_true", help="skip the layout measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mrf.json")
    args = parser.parse_args()
    contenders = {name: CONTENDERS[name] for name in args.only or CONTENDERS}
    sizes = args.mb or [300]
    results: dict[str, object] = {"machine": machine(), "files": []}
    with tempfile.TemporaryDirectory(prefix="bench-mrf-") as tmp:
        scratch = Path(tmp)
        for mb in sizes:
            # 3,000 items x 40 rates x 2 prices is 57 MB: items scale the size.
            shape = Shape(items=max(1, round(3000 * mb / 57.4)), rates_per_item=40, references_last=True, groups=2000)
            for suffix in (".json", ".json.gz"):
                path = scratch / f"rates-{mb}mb{suffix}"
                expected = write(path, shape)
                raw_mb = mb if suffix == ".json" else None
                entry: dict[str, object] = {
                    "file": path.name,
                    "bytes": path.stat().st_size,
                    "prices": expected.prices,
                    "contenders": {},
                }
                uncompressed = (scratch / f"rates-{mb}mb.json").stat().st_size
                for name, code in contenders.items():
                    figures = measure(code, path, scratch, args.timeout)
                    if "seconds" in figures:
                        figures["mb_per_s"] = round(uncompressed / 1e6 / float(figures["seconds"]), 1)  # type: ignore[arg-type]
                    entry["contenders"][name] = figures  # type: ignore[index]
                    print(f"{path.name} ({raw_mb or 'gz'}): {name} {figures}", file=sys.stderr, flush=True)
                results["files"].append(entry)  # type: ignore[attr-defined]
            if mb == sizes[0] and not args.no_layout:
                results["layout"] = layout(scratch / f"rates-{mb}mb.json", scratch, args.timeout)
                print(f"layout: {results['layout']}", file=sys.stderr, flush=True)
            if mb == sizes[0] and args.parallel:
                results["parallel"] = parallel(scratch / f"rates-{mb}mb.json.gz", args.parallel, scratch)
            for suffix in (".json", ".json.gz"):
                (scratch / f"rates-{mb}mb{suffix}").unlink()
    results["date"] = time.strftime("%Y-%m-%d %H:%M")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
