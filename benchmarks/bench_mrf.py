"""Price-transparency files to Parquet: this platform against the usual tools, in one run.

    .venv/bin/python benchmarks/bench_mrf.py [--mb 300] [--mb 3000] [--out benchmarks/results/mrf.json]

Files: generated in-network rates files (`price_transparency.generate`, provider references
after `in_network`), each size raw and gzip. Contenders, each in a fresh process so peak
memory (ru_maxrss) is its own, each writing the prices (one row per negotiated price) as
Parquet in row groups:
  platform   biomarkerflow's extract (structural scan, msgspec elements, every table)
  ijson      ijson's C backend (yajl2_c) iterating `in_network.item`, as the AWS Glue blog
             and dolthub's mrfutils do, rows built in Python
  duckdb     DuckDB read_json on the whole file (the largest object it allows: 4 GB), unnest
             in SQL, one thread
MB/s is of uncompressed JSON per core (wall time; every contender uses one core). Never
asserted in tests.
"""

from __future__ import annotations

import argparse
import json
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
from biomarkerflow.plugins.price_transparency.extract import extract
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

CONTENDERS = {"platform": PLATFORM, "ijson": IJSON, "duckdb": DUCKDB}


def measure(code: str, path: Path, scratch: Path, timeout: float) -> dict[str, object]:
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(out)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    finally:
        for leftover in out.iterdir():
            leftover.unlink()
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "Error" in line] or done.stderr.splitlines()
        return {"error": (lines or ["exit " + str(done.returncode)])[-1].strip()[:300]}
    seconds, peak = done.stdout.split()[-2:]
    return {"seconds": round(float(seconds), 2), "peak_rss_mib": round(int(peak) / 2**20)}


def main() -> None:
    from biomarkerflow.plugins.price_transparency.generate import Shape, write

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, action="append", help="uncompressed size of a file (repeatable)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a contender may take per file")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mrf.json")
    args = parser.parse_args()
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
                for name, code in CONTENDERS.items():
                    figures = measure(code, path, scratch, args.timeout)
                    if "seconds" in figures:
                        figures["mb_per_s"] = round(uncompressed / 1e6 / float(figures["seconds"]), 1)  # type: ignore[arg-type]
                    entry["contenders"][name] = figures  # type: ignore[index]
                    print(f"{path.name} ({raw_mb or 'gz'}): {name} {figures}", file=sys.stderr, flush=True)
                results["files"].append(entry)  # type: ignore[attr-defined]
            for suffix in (".json", ".json.gz"):
                (scratch / f"rates-{mb}mb{suffix}").unlink()
    results["date"] = time.strftime("%Y-%m-%d %H:%M")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
