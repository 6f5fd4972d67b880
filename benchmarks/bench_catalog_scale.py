"""Everyday commands on a large catalog: gating, a round with nothing new, `status` (issue 19, point 9).

    .venv/bin/python benchmarks/bench_catalog_scale.py [--files 100000] [--subjects 10000]
        [--backends sqlite,postgresql] [--variants after=src,before=/tmp/bmf-before/src]

One study of `--files` tiny files over `--subjects` subjects (10 files each), wanting
`height_m` from a metadata CSV that has one subject's row, without the height: every file
waits, so no job ever runs (no SKDH). For each variant (a source tree, e.g. the committed
code exported with `git archive HEAD src | tar -x -C /tmp/bmf-before`) and each catalog
backend, on a fresh catalog, each step in its own process (wall time and peak RSS from
the kernel's figure for that process, start-up included):

1. `scan`: the first scan (the CLI);
2. `first gating`: `refresh_gates` of the study (every file DISCOVERED -> WAITING);
3. `gating, nothing new`: the same again;
4. `process, nothing new`: the CLI's `process` (gating, claims, consolidation check);
5. `status`, `status --json`, `process --dry-run` (the CLI, output to a pipe: lines counted);
6. `gating, one subject's metadata`: the CSV gains a row with a height for one subject;
7. `gating, one new file`: a new file for one subject, scanned, then gated.

Writes benchmarks/results/catalog_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
STUDY = "scale"
# A GENEActiv file's first bytes: enough for the config checks, and no job ever reads one.
HEAD = b"Device Identity\n"


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory, 1), "python": platform.python_version()}


def make_files(folder: Path, files: int, subjects: int) -> None:
    per_subject = max(1, files // subjects)
    for i in range(files):
        subject, n = divmod(i, per_subject)
        sub = folder / f"batch{subject // 1000:03d}"
        if i % (per_subject * 1000) == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"S{subject:05d}_{n:02d}.bin").write_bytes(HEAD)


def write_workspace(root: Path, data: Path) -> Path:
    """configs/scale.yaml and its metadata CSV (one subject, no height) under `root`."""
    (root / "configs").mkdir(parents=True)
    (root / "subjects.csv").write_text("subject,height_m,site\nS00000,,north\n")
    config = f"""\
        study: {STUDY}
        data:
          location: {data}
          include: ["**/*.bin"]
          subject: '(?P<subject>[A-Za-z0-9]+)_'
        metadata:
          - location: {root / "subjects.csv"}
        requirements:
          metadata: [height_m]
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GaitLumbar: {{}}
        output:
          location: {root / "results"}
        """
    (root / "configs" / f"{STUDY}.yaml").write_text(textwrap.dedent(config))
    return root / "configs"


def measured(args: list[str], src: Path) -> dict[str, Any]:
    """Run a command in its own process: wall seconds, peak RSS (MiB), stdout lines, and its JSON if any.

    Called in a fresh process (`run_measured`), so the kernel's figure for its children is this command's.
    """
    import resource

    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    text = done.stdout.decode(errors="replace")
    result: dict[str, Any] = {"seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1), "lines": text.count("\n")}
    if done.returncode != 0:
        result["returncode"] = done.returncode
        result["stderr"] = done.stderr.decode(errors="replace")[-2000:]
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if last.startswith("{") and "--gate" in args:
        result.update(json.loads(last))
    return result


def run_measured(args: list[str], src: Path) -> dict[str, Any]:
    """`measured`, in a fresh intermediate process so RUSAGE_CHILDREN is this command's alone."""
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import bench_catalog_scale as b; "
        "print(json.dumps(b.measured(json.loads(sys.argv[1]), b.Path(sys.argv[2]))))"
    )
    done = subprocess.run([PYTHON, "-c", code, json.dumps(args), str(src)], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def gate_once(url: str) -> None:
    """(in a child) `refresh_gates` of every study, timed inside too; prints one JSON line."""
    from biomarkerflow.catalog.manager import Catalog
    from biomarkerflow.stages import gating

    catalog = Catalog(url)
    started = time.perf_counter()
    infos = [gating.refresh_gates(catalog, study) for study in catalog.studies()]
    seconds = time.perf_counter() - started
    report = {
        "gate_seconds": round(seconds, 2),
        "ready": sum(i.ready for i in infos),
        "waiting": sum(i.waiting for i in infos),
        "checked": sum(getattr(i, "checked", -1) for i in infos),
        "problems": [p for i in infos for p in i.problems],
    }
    print(json.dumps(report))


def cli(url: str, *args: str) -> list[str]:
    return [PYTHON, "-m", "biomarkerflow.cli", "--catalog", url, *args]


def gate(url: str) -> list[str]:
    return [PYTHON, __file__, "--gate", url]


def bench_variant(src: Path, backend: str, data: Path, scratch: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.databases import catalog_url

    steps: dict[str, Any] = {}
    with catalog_url(backend, scratch / "catalog") as url:
        configs = write_workspace(scratch / "workspace", data)

        def step(name: str, args: list[str]) -> None:
            steps[name] = run_measured(args, src)
            print(f"  {name}: {steps[name]}", flush=True)

        step("scan", cli(url, "scan", "--configs", str(configs)))
        step("first gating", gate(url))
        step("gating, nothing new", gate(url))
        step("process, nothing new", cli(url, "process", "--workers", "1"))
        step("process, nothing new (again)", cli(url, "process", "--workers", "1"))
        step("status", cli(url, "status"))
        step("status --all", cli(url, "status", "--all"))
        step("status --json", cli(url, "status", "--json"))
        step("process --dry-run", cli(url, "process", "--dry-run"))
        with (scratch / "workspace" / "subjects.csv").open("a") as csv:
            csv.write("S00007,1.70,south\n")
        step("gating, one subject's metadata", gate(url))
        (data / "batch000" / "S00005_99.bin").write_bytes(HEAD)
        try:
            step("rescan, one new file", cli(url, "scan", "--configs", str(configs)))
            step("gating, one new file", gate(url))
        finally:
            (data / "batch000" / "S00005_99.bin").unlink()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--variants", default=f"after={ROOT / 'src'}", help="label=source folder, comma-separated")
    parser.add_argument("--gate", metavar="URL", help=argparse.SUPPRESS)  # internal: one gating round
    args = parser.parse_args()
    if args.gate:
        gate_once(args.gate)
        return
    out = ROOT / "benchmarks" / "results" / "catalog_scale.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results["machine"] = machine()
    results["files"], results["subjects"] = args.files, args.subjects
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        started = time.perf_counter()
        make_files(scratch / "data", args.files, args.subjects)
        print(f"made {args.files} files in {time.perf_counter() - started:.1f} s", flush=True)
        for variant in args.variants.split(","):
            label, src = variant.split("=", 1)
            for backend in args.backends.split(","):
                print(f"{label} / {backend}", flush=True)
                where = scratch / f"{label}-{backend}"
                results.setdefault(label, {})[backend] = bench_variant(Path(src), backend, scratch / "data", where)
                out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
