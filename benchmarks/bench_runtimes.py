"""Isolated runtimes: cold build, warm reuse, worker start-up and per-job overhead on short files.

    python benchmarks/bench_runtimes.py [--rounds 10] [--cold-reps 2] [--out benchmarks/results/runtimes.json]

Measured, in this order (about 2 minutes on a quiet 2-core VM, 3-4 with other load):
  cold build       RuntimeCache(fresh root).ensure(scikit-digital-health==0.16.15) with UV_CACHE_DIR set
                   to a fresh, empty folder, so uv downloads everything (bytes received are counted)
  warm-cache build the same on a fresh root with uv's normal (warm) cache
  warm reuse       RuntimeCache.find / .ensure and Runtimes.for_pin on the existing runtime (every run pays it)
  bytecode         compileall of that runtime's site-packages (what compiling .pyc at build time would cost)
  worker start-up  process start -> hello (SKDH imported), current environment vs an isolated 0.17.18
                   runtime; the isolated one also without .pyc files (PYTHONDONTWRITEBYTECODE=1) and on
                   its first start (which writes them)
  per-job          SKDH's three real short device samples through GaitLumbar, with warm workers:
                     a  in-process: skdh.Pipeline(reader, GaitLumbar).run(file=...) in this process
                     b  LocalExecutor(1).submit(job, current_environment())
                     c  LocalExecutor(1).submit(job, isolated 0.17.18 runtime built by uv)
                   contenders rotate their order every round; overheads are medians of paired differences

Other load: before each timed phase the script waits (at most --wait-quiet s) until other processes use
< 0.3 cores, and it records the cores they used during every phase, start-up and round, so a reader can
tell whether a concurrent test suite disturbed the figures. Writes JSON; never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psutil
from uv import find_uv_bin

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.demo.run import find_samples
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.skdh import WORKFLOW_TYPE as SKDH
from biomarkerflow.results import writer
from biomarkerflow.runtimes.builder import RuntimeCache, RuntimeSpec
from biomarkerflow.runtimes.client import RuntimeProcess
from biomarkerflow.runtimes.entrypoint import JobSpec
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, current_environment
from biomarkerflow.storage import store

OLD_PIN = "scikit-digital-health==0.16.15"  # differs from the installed version: always isolated
NEW_PIN = "scikit-digital-health==0.17.18"  # the installed version: isolated only with isolate_always
GAIT_FILES = ("ax3_sample.cwa", "ax6_sample.cwa", "gnactv_sample.bin")
HEIGHT_M = 1.75
WATCHED = ("scikit-digital-health", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "pywavelets")
CONTENDERS = ("a_in_process", "b_current_runtime", "c_isolated_runtime")


# ---------------------------------------------------------------------- measuring helpers


class LoadProbe:
    """CPU seconds used on the machine by processes other than this one and its children.

    Busy CPU of the whole machine (psutil.cpu_times) minus this process, its reaped children
    (os.times) and its live children (workers, uv): what a concurrent test suite costs us.
    """

    @staticmethod
    def _machine_busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))

    @staticmethod
    def _own() -> float:
        times = os.times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in psutil.Process().children(recursive=True):
            try:
                cpu = child.cpu_times()
            except psutil.Error:
                continue
            total += cpu.user + cpu.system
        return float(total)

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self.waits: dict[str, dict[str, float | bool]] = {}

    def other_cores(self, window: float = 2.0) -> float:
        """Cores used by other processes over the next `window` seconds."""
        busy0, own0 = self._machine_busy(), self._own()
        time.sleep(window)
        return max(0.0, (self._machine_busy() - busy0) - (self._own() - own0)) / window

    @contextmanager
    def sample(self, into: list[float]) -> Iterator[None]:
        """Append the cores other processes used during the block to `into`."""
        wall0, busy0, own0 = time.perf_counter(), self._machine_busy(), self._own()
        try:
            yield
        finally:
            wall = time.perf_counter() - wall0
            other = max(0.0, (self._machine_busy() - busy0) - (self._own() - own0))
            into.append(round(other / wall, 2) if wall > 0 else 0.0)

    def wait_quiet(self, name: str, limit: float, threshold: float = 0.3) -> None:
        """Wait (at most `limit` s) until other processes use less than `threshold` cores."""
        start = time.perf_counter()
        cores = self.other_cores()
        while cores >= threshold and time.perf_counter() - start < limit:
            cores = self.other_cores()
        waited = time.perf_counter() - start
        self.waits[name] = {
            "waited_seconds": round(waited, 1),
            "other_cores": round(cores, 2),
            "quiet": cores < threshold,
        }
        print(f"[{name}] waited {waited:.0f} s for quiet: other processes at {cores:.2f} cores", file=sys.stderr)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall0, busy0, own0 = time.perf_counter(), self._machine_busy(), self._own()
        load0 = os.getloadavg()[0]
        try:
            yield
        finally:
            wall = time.perf_counter() - wall0
            busy = self._machine_busy() - busy0
            own = self._own() - own0
            other = max(0.0, busy - own)
            self.phases[name] = {
                "wall_seconds": round(wall, 2),
                "own_cpu_seconds": round(own, 2),
                "other_cpu_seconds": round(other, 2),
                "other_cores_average": round(other / wall, 2) if wall > 0 else 0.0,
                "loadavg_1min_start": round(load0, 2),
                "loadavg_1min_end": round(os.getloadavg()[0], 2),
            }
            print(f"[{name}] {wall:.1f} s; other processes used {other / wall:.2f} cores on average", file=sys.stderr)


def rx_bytes() -> int:
    """Bytes received on the machine's network interfaces (loopback excluded)."""
    counters = psutil.net_io_counters(pernic=True)
    return sum(c.bytes_recv for name, c in counters.items() if name != "lo")


def tree_bytes(path: Path) -> int:
    """Bytes of regular files under `path`, not following symlinks."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += stat.st_size
    return total


def summary(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    ordered = sorted(v * scale for v in values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], digits),
    }


@contextmanager
def environment_variable(name: str, value: str | None) -> Iterator[None]:
    """Set (or with None: remove) an environment variable for the block; child processes inherit it."""
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uv_version = subprocess.run([find_uv_bin(), "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "architecture": platform.machine(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "uv": uv_version.strip(),
        "scikit-digital-health_installed": current_environment().version_of("scikit-digital-health"),
    }


def versions(packages: dict[str, str]) -> dict[str, str | None]:
    lowered = {name.lower().replace("_", "-"): version for name, version in packages.items()}
    return {name: lowered.get(name) for name in WATCHED}


# ---------------------------------------------------------------------- builds and reuse


def timed_build(spec: RuntimeSpec, root: Path, uv_cache: Path | None) -> dict[str, Any]:
    """Build `spec` on a fresh `root` (first use: ensure); uv's cache in `uv_cache` if given."""
    received = rx_bytes()
    cache_setting: AbstractContextManager[None] = (
        environment_variable("UV_CACHE_DIR", str(uv_cache)) if uv_cache is not None else nullcontext()
    )
    with cache_setting:
        start = time.perf_counter()
        built = RuntimeCache(root).ensure(spec)
        seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "network_received_mb": round((rx_bytes() - received) / 1e6, 1),
        "runtime_mb": round(tree_bytes(built.path) / 1e6, 1),
        "packages": len(built.packages),
        "versions": versions(built.packages),
    }
    if uv_cache is not None:
        result["uv_cache_after_mb"] = round(tree_bytes(uv_cache) / 1e6, 1)
    print(f"  build {spec.describe()}: {seconds:.1f} s, received {result['network_received_mb']} MB", file=sys.stderr)
    return result


def reuse_times(root: Path, spec: RuntimeSpec, pin: str, reps: int) -> dict[str, Any]:
    """Milliseconds for ensure / for_pin / find on a runtime that exists (nothing is built)."""
    cache = RuntimeCache(root)
    runtimes = Runtimes(root)  # OLD_PIN is not installed: for_pin goes to the cache, as in a real run
    calls: dict[str, Callable[[], object]] = {
        "RuntimeCache.find": lambda: cache.find(spec),
        "RuntimeCache.ensure": lambda: cache.ensure(spec),
        "Runtimes.for_pin": lambda: runtimes.for_pin(pin),
    }
    for call in calls.values():
        call()  # first call: imports, folder creation
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: summary(values, scale=1000.0, digits=3) for name, values in samples.items()}


def start_worker(runtime: RuntimeRef, threads: int) -> float:
    """Seconds from starting a worker process to its hello (SKDH imported); the worker is closed."""
    start = time.perf_counter()
    worker = RuntimeProcess(runtime, threads)
    try:
        worker.wait_ready()
        return time.perf_counter() - start
    finally:
        worker.close()


def site_packages(python: str) -> Path:
    return next((Path(python).parents[1] / "lib").glob("python*/site-packages"))


def bytecode_files(python: str) -> int:
    """.pyc files under a runtime's site-packages (uv installs none; Python writes them on import)."""
    return sum(1 for _ in site_packages(python).rglob("*.pyc"))


def compile_bytecode(python: str) -> float:
    """Seconds to compile a runtime's site-packages to .pyc on all cores (what a build could add)."""
    start = time.perf_counter()
    command = [python, "-m", "compileall", "-q", "-j", "0", str(site_packages(python))]
    subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- per-job comparison


def make_jobs(root: Path) -> tuple[StudyConfig, list[store.FileEntry]]:
    samples = find_samples()
    if samples is None:
        raise SystemExit("SKDH sample files not found (../shared/data/skdh)")
    lab = root / "lab"
    lab.mkdir(parents=True)
    for name in GAIT_FILES:
        shutil.copyfile(samples / name, lab / name)
    config = StudyConfig.model_validate(
        {
            "study": "bench-runtimes",
            "data": {"location": str(lab), "include": ["*.cwa", "*.bin"], "subject": "(?P<subject>[A-Za-z0-9]+)_"},
            "pipeline": {"package": NEW_PIN, "steps": [{"GaitLumbar": {}}]},
            "output": {"location": str(root / "results")},
        }
    )
    entries = store.list_files(str(lab), ["*.cwa", "*.bin"])
    return config, entries


def job_for(config: StudyConfig, entry: store.FileEntry, index: int, runtime: RuntimeRef, output: str) -> JobSpec:
    """A JobSpec as `processing._job_for` makes it (no catalog: ids and config hash are stand-ins)."""
    run_id = f"bench-{index:05d}"
    subject = entry.relative_path.split("_")[0]
    return JobSpec(
        run_id=run_id,
        study_id=config.study,
        file_id=index,
        input_url=entry.url,
        relative_path=entry.relative_path,
        subject=subject,
        input_fingerprint=entry.fingerprint,
        input_size=entry.size,
        workflow_type=registry.reference(SKDH.name),
        plan=SKDH.plan_job(config),
        inputs=SKDH.subject_inputs(config, {"height_m": HEIGHT_M}),
        result_location=writer.run_folder(output, subject, entry.relative_path, run_id),
        formats=config.output.formats,
        provenance={
            "config": {"source": "bench_runtimes.py", "sha256": "0" * 64},
            "package_pin": config.pipeline.package,
            "constraints": config.pipeline.constraints,
            "runtime": runtime.provenance(),
        },
    )


def in_process(path: str) -> float:
    """The algorithm alone: SKDH's own Pipeline (reader + GaitLumbar) in this process."""
    import skdh

    reader = skdh.io.ReadCwa() if path.endswith(".cwa") else skdh.io.ReadBin()
    pipeline = skdh.Pipeline()
    pipeline.add(reader)
    pipeline.add(skdh.gait.GaitLumbar())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.run(file=path, height=HEIGHT_M)
    return time.perf_counter() - start


def per_job(root: Path, isolated: RuntimeRef, rounds: int, probe: LoadProbe, quiet_limit: float) -> dict[str, Any]:
    config, entries = make_jobs(root)
    current = current_environment()
    executors = {"b_current_runtime": LocalExecutor(1), "c_isolated_runtime": LocalExecutor(1)}
    refs = {"b_current_runtime": current, "c_isolated_runtime": isolated}
    counter = iter(range(1, 1_000_000))
    outputs = {name: str(root / "results" / name) for name in CONTENDERS}

    def run(contender: str, entry: store.FileEntry) -> tuple[float, float | None]:
        """(wall seconds seen by the caller, seconds the worker metered inside the job)."""
        if contender == "a_in_process":
            return in_process(entry.url), None
        job = job_for(config, entry, next(counter), refs[contender], outputs[contender])
        start = time.perf_counter()
        outcome = executors[contender].submit(job, refs[contender]).result()
        elapsed = time.perf_counter() - start
        if not outcome.succeeded:
            raise SystemExit(f"{contender} failed on {entry.relative_path}: {outcome.error}")
        if outcome.package_version != "0.17.18":
            raise SystemExit(f"{contender} ran SKDH {outcome.package_version}, not 0.17.18")
        return elapsed, outcome.wall_seconds

    round_load: list[float] = []
    first_job: dict[str, dict[str, float]] = {name: {} for name in CONTENDERS}
    wall: dict[str, dict[str, list[float]]] = {name: {e.relative_path: [] for e in entries} for name in CONTENDERS}
    inside: dict[str, dict[str, list[float]]] = {name: {e.relative_path: [] for e in entries} for name in CONTENDERS}
    try:
        with probe.phase("per_job_warm_up"):
            import skdh  # noqa: F401 - contender a pays its import here, like a worker at start-up

            for name, executor in executors.items():
                executor.prestart([refs[name]])
            for name, executor in executors.items():  # wait for each worker's hello before timing jobs
                executor.call(refs[name], "biomarkerflow.runtimes.process:installed_packages").result()
            # First job of each warm worker (and first in-process run): lazy imports, caches.
            for entry in entries:
                for name in CONTENDERS:
                    first_job[name][entry.relative_path] = round(run(name, entry)[0], 3)
        probe.wait_quiet("per_job_rounds", quiet_limit)
        with probe.phase("per_job_rounds"):
            for round_index in range(rounds):
                shift = round_index % len(CONTENDERS)
                order = CONTENDERS[shift:] + CONTENDERS[:shift]
                with probe.sample(round_load):
                    for entry in entries:
                        for name in order:
                            elapsed, metered = run(name, entry)
                            wall[name][entry.relative_path].append(elapsed)
                            if metered is not None:
                                inside[name][entry.relative_path].append(metered)
                print(
                    f"  round {round_index + 1}/{rounds}: other processes at {round_load[-1]:.2f} cores",
                    file=sys.stderr,
                )
    finally:
        for executor in executors.values():
            executor.close()

    files: dict[str, Any] = {}
    pooled: dict[str, list[float]] = {"b_minus_a": [], "c_minus_a": [], "c_minus_b": []}
    pooled_transport: dict[str, list[float]] = {"b_current_runtime": [], "c_isolated_runtime": []}
    for entry in entries:
        key = entry.relative_path
        a, b, c = (wall[name][key] for name in CONTENDERS)
        diffs = {
            "b_minus_a": [y - x for x, y in zip(a, b, strict=True)],
            "c_minus_a": [y - x for x, y in zip(a, c, strict=True)],
            "c_minus_b": [y - x for x, y in zip(b, c, strict=True)],
        }
        for name, values in diffs.items():
            pooled[name] += values
        transport = {}
        for name in ("b_current_runtime", "c_isolated_runtime"):
            gaps = [total - metered for total, metered in zip(wall[name][key], inside[name][key], strict=True)]
            pooled_transport[name] += gaps
            transport[name] = summary(gaps)
        files[key] = {
            "size_bytes": entry.size,
            "wall_seconds": {name: summary(wall[name][key]) for name in CONTENDERS},
            "wall_seconds_all": {name: [round(v, 4) for v in wall[name][key]] for name in CONTENDERS},
            "metered_in_worker_seconds": {
                name: summary(inside[name][key]) for name in ("b_current_runtime", "c_isolated_runtime")
            },
            "overhead_seconds_paired": {name: summary(values) for name, values in diffs.items()},
            "caller_minus_metered_seconds": transport,
            "first_job_seconds": {name: first_job[name][key] for name in CONTENDERS},
        }
    overheads = {name: summary(values) for name, values in pooled.items()}
    result: dict[str, Any] = {
        "rounds": rounds,
        "pipeline": "reader (by extension) + GaitLumbar, height 1.75 m",
        "threads_per_worker": executors["b_current_runtime"].threads_per_worker,
        "files": files,
        "overhead_seconds_all_files": overheads,
        "caller_minus_metered_seconds_all_files": {name: summary(v) for name, v in pooled_transport.items()},
        "other_cores_per_round": round_load,
        "goal_c_minus_a_below_seconds": 0.2,
    }
    result["goal_met"] = overheads["c_minus_a"]["median"] < 0.2
    return result


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold-reps", type=int, default=2, help="builds with an empty uv cache (each downloads)")
    parser.add_argument("--warm-reps", type=int, default=3, help="builds with uv's normal cache, fresh root each")
    parser.add_argument("--reuse-reps", type=int, default=300, help="repetitions of each warm-reuse call")
    parser.add_argument("--startup-reps", type=int, default=3, help="worker starts per runtime (after the first)")
    parser.add_argument("--rounds", type=int, default=10, help="per-job rounds (every file, every contender)")
    parser.add_argument(
        "--wait-quiet", type=float, default=30.0, help="before each timed phase, wait at most this long for other load"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runtimes.json")
    args = parser.parse_args()
    if args.warm_reps < 1:
        parser.error("--warm-reps must be at least 1 (warm reuse is measured on the last warm build)")

    began = time.perf_counter()
    probe = LoadProbe()
    figures: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    figures["current_environment_versions"] = versions(current_environment().packages)
    old_spec = RuntimeSpec(OLD_PIN)
    threads = LocalExecutor(1).threads_per_worker

    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        scratch = Path(tmp)

        # 1. Cold builds: empty uv cache, everything downloaded.
        cold: list[dict[str, Any]] = []
        if args.cold_reps > 0:
            probe.wait_quiet("cold_build", args.wait_quiet)
            with probe.phase("cold_build"):
                for rep in range(args.cold_reps):
                    root, uv_cache = scratch / f"cold-{rep}", scratch / f"uv-cache-{rep}"
                    uv_cache.mkdir()
                    cold.append(timed_build(old_spec, root, uv_cache))
                    shutil.rmtree(root)
                    shutil.rmtree(uv_cache)
        # 2. Builds with uv's normal cache (warm: the test suite and earlier runs filled it).
        warm: list[dict[str, Any]] = []
        probe.wait_quiet("warm_cache_build", args.wait_quiet)
        with probe.phase("warm_cache_build"):
            for rep in range(args.warm_reps):
                root = scratch / f"warm-{rep}"
                warm.append(timed_build(old_spec, root, None))
                if rep < args.warm_reps - 1:
                    shutil.rmtree(root)
        figures["build"] = {
            "spec": OLD_PIN,
            "cold_uv_cache": cold,
            "cold_seconds_median": round(statistics.median(b["seconds"] for b in cold), 2) if cold else None,
            "warm_uv_cache": warm,
            "warm_seconds_median": round(statistics.median(b["seconds"] for b in warm), 2) if warm else None,
        }

        # 3. Warm reuse of the runtime that now exists.
        with probe.phase("warm_reuse"):
            figures["warm_reuse_ms"] = reuse_times(
                scratch / f"warm-{args.warm_reps - 1}", old_spec, OLD_PIN, args.reuse_reps
            )
        # What compiling the bytecode at build time would cost (compileall on all cores, as a proxy
        # for `uv pip sync --compile-bytecode`), measured on that same runtime.
        last_warm = RuntimeCache(scratch / f"warm-{args.warm_reps - 1}").find(old_spec)
        assert last_warm is not None
        with probe.phase("bytecode_compile"):
            figures["build"]["bytecode_compile_seconds"] = round(compile_bytecode(last_warm.python), 2)
        figures["build"]["bytecode_files"] = bytecode_files(last_warm.python)
        shutil.rmtree(scratch / f"warm-{args.warm_reps - 1}")

        # 4. The isolated 0.17.18 runtime for the per-job comparison (built like any other).
        isolated_root = scratch / "isolated"
        with probe.phase("isolated_0_17_18_build"):
            start = time.perf_counter()
            isolated = Runtimes(isolated_root, isolate_always=True).for_pin(NEW_PIN)
            figures["isolated_0_17_18_build_seconds"] = round(time.perf_counter() - start, 2)
        figures["isolated_0_17_18_versions"] = versions(isolated.packages)

        # 5. Worker start-up: process start -> hello (SKDH imported). uv installs no .pyc files, so a
        # fresh runtime compiles its packages' bytecode on import: first with Python not allowed to
        # write it (PYTHONDONTWRITEBYTECODE=1, as in many containers: every start pays), then allowed
        # (the first start writes it, later ones read it).
        startups: dict[str, list[float]] = {"isolated_no_bytecode": [], "current": [], "isolated": []}
        startup_load: dict[str, list[float]] = {name: [] for name in (*startups, "isolated_first_start")}
        pyc: dict[str, int] = {"isolated_after_build": bytecode_files(isolated.python)}
        probe.wait_quiet("worker_startup", args.wait_quiet)
        with probe.phase("worker_startup"):
            with environment_variable("PYTHONDONTWRITEBYTECODE", "1"):
                for _ in range(args.startup_reps):
                    with probe.sample(startup_load["isolated_no_bytecode"]):
                        startups["isolated_no_bytecode"].append(start_worker(isolated, threads))
            with environment_variable("PYTHONDONTWRITEBYTECODE", None):
                with probe.sample(startup_load["isolated_first_start"]):
                    first_isolated = start_worker(isolated, threads)  # writes the .pyc files it imports
                pyc["isolated_after_first_start"] = bytecode_files(isolated.python)
                for _ in range(args.startup_reps):
                    for name, ref in (("current", current_environment()), ("isolated", isolated)):
                        with probe.sample(startup_load[name]):
                            startups[name].append(start_worker(ref, threads))
        pyc["current_environment"] = bytecode_files(current_environment().python)
        figures["worker_startup_seconds"] = {
            "PYTHONDONTWRITEBYTECODE_in_caller": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "isolated_first_start_writing_bytecode": round(first_isolated, 2),
            **{name: summary(values, digits=2) for name, values in startups.items()},
            "other_cores_per_start": startup_load,
            "pyc_files": pyc,
        }

        # 6. Per-job wall time with warm workers.
        figures["per_job"] = per_job(scratch / "jobs", isolated, args.rounds, probe, args.wait_quiet)

    figures["load"] = probe.phases
    figures["quiet_waits"] = probe.waits
    figures["total_seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    report = {k: v for k, v in figures.items() if k != "per_job"}
    report["per_job_overhead_seconds_all_files"] = figures["per_job"]["overhead_seconds_all_files"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
