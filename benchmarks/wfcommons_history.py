"""WfCommons workflow-execution traces -> a run-history CSV for `biomarkerflow models import-history`.

Source: WfInstances, https://github.com/wfcommons/WfInstances (license: GNU LGPL v3, its LICENSE file):
real Pegasus, Makeflow and Nextflow executions, one JSON file per execution ("instance") in WfFormat
(https://github.com/wfcommons/WfFormat). Each task execution becomes one row:

  pipeline              `{system}-{application}.{task_type}`, characters outside [A-Za-z0-9._-] -> `-`;
                        task_type: the task's category (1.5 dropped it: the program, when the name starts
                        with it), else its name without the `_ID0000001` id; Nextflow: the last dotted
                        part of the process name without a `_<n>` id (e.g. FASTQC)
  started_at            ISO 8601 UTC: the task's own start if the trace has one, else the instance's
                        executedAt (or createdAt) + 1 ms per task index (less if the next instance
                        starts sooner): a stable order within, the real order between instances
  input_/output_bytes   sum of the sizes of the task's input/output files; for a side without any
                        size, readBytes/writtenBytes (counted in the summary)
  wall_seconds          runtimeInSeconds (tasks without one or with <= 0 are skipped and counted)
  cpu_seconds           runtime x avgCPU / 100; without avgCPU, runtime x the task's cores, or runtime
  peak_rss_bytes        memoryInBytes (0 if unknown)
  machine, machine_cores, machine_memory_bytes, machine_cpu ("Intel 2600 MHz")
                        the node the task ran on (the first of several; the instance's only node when
                        the task names none) as the instance describes it; empty if unknown
  workflow_type         the runtime system in lower case: pegasus, makeflow, nextflow
  steps, package        task_type; the application (1000genome, blast; Nextflow: nf-core/rnaseq)
  device                kind of the task's largest input file: `r.fastq.gz` -> fastq.gz, `a.vcf` -> vcf,
                        `query.fastq.7` -> fastq (split-chunk numbers skipped); empty if none

Schema versions: 1.5 (specification.files[sizeInBytes], execution.tasks/machines), 1.4 (tasks with
files[link, sizeInBytes], memoryInBytes, machine) and 1.0-1.3 (`jobs`/`tasks`, files[link, size], runtime,
memory, bytesRead and machines' memory in KB; cpu count/speed). KB -> bytes uses 1000, as WfFormat's own
1.3 -> 1.4 migration did for the instances now published as 1.5; that migration kept `size` as bytes
(the schema said KB; Pegasus wrote bytes: 1000genome's columns.txt is 20078 in 1.0 and in 1.5) and
Pegasus' bytesRead too. Data quirks corrected here and listed in the summary: Makeflow file sizes are
KB in every version (else a 1-byte script, a 1445-byte bwa binary, writtenBytes 1900x the outputs),
but for sizes >= 1e9 (BLAST's `nt` database, patched in later in bytes); an instance whose task RSS
never reaches 1 MiB, or a machine with < 1 GiB, reports KB (helloworld).

At most --max-per-instance tasks (default 40) of each pipeline per instance, spread evenly over the
instance's tasks of the type; rows sorted by started_at; a summary to stdout and `<out>.summary.json`.

    .venv/bin/python benchmarks/wfcommons_history.py --traces /work/wfinstances \\
        --out /work/traces/wfcommons-history.csv [--max-per-instance 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The columns import-history requires, then the optional ones it also reads.
RUN_COLUMNS = ("pipeline", "started_at", "input_bytes", "output_bytes", "wall_seconds", "cpu_seconds", "peak_rss_bytes")
MORE_COLUMNS = ("machine", "machine_cores", "machine_memory_bytes", "machine_cpu", "workflow_type", "steps", "package")
COLUMNS = (*RUN_COLUMNS, *MORE_COLUMNS, "device")
KB = 1000  # WfFormat's migration tool turned KB into bytes with 1000; the 1.5 files carry that
KB_SIZED_FILES = {"makeflow"}  # systems whose file sizes are KB whatever the key says (see docstring)
BYTES_ALREADY = 1e9  # a "KB" size >= this would be a terabyte file: it was written in bytes
MIN_RSS, MIN_MACHINE_MEMORY = 2**20, 2**30  # below these, "bytes" can only be KB
TASK_STEP = timedelta(milliseconds=1)
COMPRESSION = {"gz", "bz2", "xz", "zst", "zip", "bgz", "lz4", "z"}
VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}
Json = dict[str, Any]
Files = list[tuple[str, float | None]]  # (name, size in bytes if known)


@dataclass(frozen=True)
class Machine:
    cores: int | None
    memory_bytes: int | None
    cpu: str


@dataclass
class Task:
    index: int
    task_type: str
    runtime: float | None
    avg_cpu: float | None
    cores: float | None
    memory: float | None
    read_bytes: float | None
    written_bytes: float | None
    machine: str
    inputs: Files
    outputs: Files
    started: datetime | None = None


@dataclass
class Instance:
    path: Path
    version: str
    system: str
    application: str
    package: str
    started: datetime | None
    machines: dict[str, Machine]
    tasks: list[Task]
    fixes: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)


def number(value: object) -> float | None:
    """A finite JSON number, else None (bools and strings are not measurements)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_time(raw: object) -> datetime | None:
    """ISO 8601 (extended or basic, as Pegasus 4.9 wrote it) or Pegasus 5.0's `05-10-23T16:23:32Z`."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.strptime(text, "%m-%d-%yT%H:%M:%SZ")  # month-day-year, UTC
        except ValueError:
            return None
    # Naive stamps (createdAt of many files) are taken as UTC, like the catalog does.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-") or "unknown"


def task_type(name: str, raw: Json, system: str) -> str:
    """The task's kind: `raw` is its execution record (1.5) or the task itself (1.0-1.4)."""
    category, program = raw.get("category"), (raw.get("command") or {}).get("program")
    if system == "nextflow":
        # Process paths like NFCORE_RNASEQ.RNASEQ.FASTQC_UMITOOLS_TRIMGALORE.FASTQC; a tag in
        # parentheses or a trailing _<n> is the execution, not the process.
        last = re.sub(r"\s*\(.*\)$", "", name).split(".")[-1]
        return clean(re.sub(r"_\d+$", "", last))
    if isinstance(category, str) and category:
        return clean(category)
    # 1.5 dropped `category`; the program is it when the name starts with it (epigenomics names
    # tasks `map_map_HEP2_..._sequence_12_ID0000040`, program `map`).
    if isinstance(program, str) and program and (name == program or name.startswith(program + "_")):
        return clean(program)
    return clean(re.sub(r"_(ID)?\d+$", "", name))


def file_kind(name: str) -> str:
    """Extension of a file name, looking through compression and split-chunk numbers."""
    base = name.split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
    parts = base.split(".")[1:]
    while parts and parts[-1].isdigit():
        parts.pop()
    if not parts or not re.fullmatch(r"[a-z0-9_]{1,12}", parts[-1]):
        return ""
    if parts[-1] in COMPRESSION and len(parts) > 1 and re.fullmatch(r"[a-z][a-z0-9_]{0,11}", parts[-2]):
        return f"{parts[-2]}.{parts[-1]}"
    return parts[-1]


def parse_machines(raw: object) -> dict[str, Machine]:
    machines: dict[str, Machine] = {}
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("nodeName"), str):
            continue
        cpu: Json = item["cpu"] if isinstance(item.get("cpu"), dict) else {}
        cores = number(cpu.get("coreCount", cpu.get("count")))
        speed = number(cpu.get("speedInMHz", cpu.get("speed")))
        old = number(item.get("memory"))  # 1.0-1.3: KB
        memory = number(item.get("memoryInBytes")) or (old * KB if old is not None else None)
        vendor = VENDORS.get(str(cpu.get("vendor") or ""), str(cpu.get("vendor") or ""))
        label = " ".join(p for p in (vendor, f"{speed:.0f} MHz" if speed else "") if p)
        machines[item["nodeName"]] = Machine(int(cores) if cores else None, int(memory) if memory else None, label)
    return machines


def first_machine(raw: object) -> str:
    first = raw[0] if isinstance(raw, list) and raw else raw
    return first if isinstance(first, str) else ""


def v15_tasks(wf: Json, system: str) -> list[Task]:
    spec, execution = wf.get("specification") or {}, wf.get("execution") or {}
    sizes = {f.get("id"): number(f.get("sizeInBytes")) for f in spec.get("files") or [] if isinstance(f, dict)}
    runs = {t.get("id"): t for t in execution.get("tasks") or [] if isinstance(t, dict)}
    tasks = []
    for index, spec_task in enumerate(t for t in spec.get("tasks") or [] if isinstance(t, dict)):
        run = runs.get(spec_task.get("id"), {})
        tasks.append(
            Task(
                index=index,
                task_type=task_type(str(spec_task.get("name") or spec_task.get("id") or ""), run, system),
                runtime=number(run.get("runtimeInSeconds")),
                avg_cpu=number(run.get("avgCPU")),
                cores=number(run.get("coreCount")),
                memory=number(run.get("memoryInBytes")),
                read_bytes=number(run.get("readBytes")),
                written_bytes=number(run.get("writtenBytes")),
                machine=first_machine(run.get("machines")),
                inputs=[(str(i), sizes.get(i)) for i in spec_task.get("inputFiles") or []],
                outputs=[(str(i), sizes.get(i)) for i in spec_task.get("outputFiles") or []],
                started=parse_time(run.get("executedAt")),
            )
        )
    return tasks


def legacy_task(index: int, raw: Json, system: str) -> Task:
    """A 1.0-1.4 task: files inside it; 1.0-1.3 give memory and (but for Pegasus) I/O in KB."""
    files = [f for f in raw.get("files") or [] if isinstance(f, dict)]

    def side(link: str) -> Files:
        return [
            (str(f.get("name")), number(f.get("sizeInBytes", f.get("size")))) for f in files if f.get("link") == link
        ]

    def measured(new: str, old: str, factor: int) -> float | None:
        if number(raw.get(new)) is not None:
            return number(raw.get(new))
        value = number(raw.get(old))
        return None if value is None else value * factor

    io_factor = 1 if system == "pegasus" else KB  # as WfFormat's 1.3 -> 1.4 migration decided
    return Task(
        index=index,
        task_type=task_type(str(raw.get("name") or raw.get("id") or ""), raw, system),
        runtime=measured("runtimeInSeconds", "runtime", 1),
        avg_cpu=number(raw.get("avgCPU")),
        cores=number(raw.get("cores")),
        memory=measured("memoryInBytes", "memory", KB),
        read_bytes=measured("readBytes", "bytesRead", io_factor),
        written_bytes=measured("writtenBytes", "bytesWritten", io_factor),
        machine=first_machine(raw.get("machine")),
        inputs=side("input"),
        outputs=side("output"),
    )


def application_of(path: Path, doc: Json, system: str) -> tuple[str, str]:
    """(application, package): files are named `<application>-<site>-...json` throughout WfInstances."""
    repo = (doc.get("workflow") or {}).get("repo")
    if system == "nextflow" and isinstance(repo, str) and "github.com/" in repo:
        package = repo.split("github.com/", 1)[1].strip("/")
        return clean(package.rsplit("/", 1)[-1]), package
    stem = path.stem.split("-", 1)[0] or path.parent.name or str(doc.get("name") or "unknown")
    return clean(stem.lower()), stem.lower()


def kb_sizes(files: Files) -> Files:
    return [(name, size * KB if size is not None and size < BYTES_ALREADY else size) for name, size in files]


def fix_units(instance: Instance) -> None:
    """Values whose unit contradicts their key (see the module docstring); each fix is recorded."""
    if instance.system in KB_SIZED_FILES:
        for task in instance.tasks:
            task.inputs, task.outputs = kb_sizes(task.inputs), kb_sizes(task.outputs)
        instance.fixes.append(("file sizes KB -> bytes", instance.system))
    rss = [t.memory for t in instance.tasks if t.memory]
    if rss and max(rss) < MIN_RSS:
        for task in instance.tasks:
            task.memory = task.memory * KB if task.memory else task.memory
        instance.fixes.append(("task memory KB -> bytes", f"largest RSS {max(rss):.0f}"))
    for name, machine in list(instance.machines.items()):
        if machine.memory_bytes and machine.memory_bytes < MIN_MACHINE_MEMORY:
            instance.machines[name] = Machine(machine.cores, machine.memory_bytes * KB, machine.cpu)
            instance.fixes.append(("machine memory KB -> bytes", f"{name}: {machine.memory_bytes}"))


def read_instance(path: Path) -> Instance | str:
    """The instance in a file, or why it cannot be used."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"unreadable JSON: {type(exc).__name__}: {str(exc)[:120]}"
    wf = doc.get("workflow") if isinstance(doc, dict) else None
    if not isinstance(wf, dict):
        return "not a WfFormat instance (no workflow object)"
    version = str(doc.get("schemaVersion") or "unknown")
    runtime_system = doc.get("runtimeSystem") or doc.get("wms") or {}
    system = clean(str(runtime_system.get("name") or "unknown")).lower()
    if "specification" in wf:
        execution = wf.get("execution") or {}
        tasks, machines = v15_tasks(wf, system), parse_machines(execution.get("machines"))
        started = parse_time(execution.get("executedAt"))
    else:
        raw_tasks = [t for t in wf.get("tasks") or wf.get("jobs") or [] if isinstance(t, dict)]
        tasks = [legacy_task(i, t, system) for i, t in enumerate(raw_tasks)]
        machines, started = parse_machines(wf.get("machines")), parse_time(wf.get("executedAt"))
    if not tasks:
        return "no tasks"
    started = started or parse_time(doc.get("createdAt"))
    if started is None and not any(t.started for t in tasks):
        return "no executedAt/createdAt to place its tasks in time"
    application, package = application_of(path, doc, system)
    instance = Instance(path, version, system, application, package, started, machines, tasks)
    fix_units(instance)
    return instance


def fmt(value: float | int | None) -> str | int:
    """Integers as integers, other numbers with up to 6 significant digits and no exponent."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    text = f"{value:.6g}"
    return f"{float(text):f}".rstrip("0").rstrip(".") if "e" in text else text


def side_bytes(files: Files, counter: float | None) -> tuple[int, bool]:
    """(bytes, came from the I/O counter): the counter only when no file of the side has a size."""
    known = [size for _, size in files if size is not None]
    if known:
        return int(sum(known)), False
    return (int(counter), True) if counter is not None else (0, False)


@dataclass
class Built:
    when: datetime
    order: tuple[int, int]
    row: dict[str, str | int]
    flags: set[str]


def build_row(inst: Instance, task: Task, when: datetime, order: tuple[int, int]) -> Built:
    runtime = task.runtime or 0.0
    flags: set[str] = set()
    input_bytes, from_read = side_bytes(task.inputs, task.read_bytes)
    output_bytes, from_written = side_bytes(task.outputs, task.written_bytes)
    flags |= {"input_from_readBytes"} if from_read else set()
    flags |= {"output_from_writtenBytes"} if from_written else set()
    cpu = runtime * task.avg_cpu / 100 if task.avg_cpu is not None else runtime * (task.cores or 1)
    flags |= {"cpu_without_avgCPU"} if task.avg_cpu is None else set()
    machine_name = task.machine
    if not machine_name and len(inst.machines) == 1:
        # The instance lists the nodes its tasks ran on; with one node, that is where each ran.
        machine_name = next(iter(inst.machines))
        flags.add("machine_from_sole_instance_node")
    machine = inst.machines.get(machine_name)
    flags |= {"with_machine"} if machine_name else set()
    flags |= {"machine_facts"} if machine else set()
    flags |= {"no_memory"} if not task.memory else set()
    largest = max(task.inputs, key=lambda f: -1 if f[1] is None else f[1], default=("", None))
    row: dict[str, str | int] = {
        "pipeline": clean(f"{inst.system}-{inst.application}.{task.task_type}"),
        "started_at": when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "wall_seconds": fmt(runtime),
        "cpu_seconds": fmt(cpu),
        "peak_rss_bytes": int(task.memory or 0),
        "machine": machine_name,
        "machine_cores": fmt(machine.cores if machine else None),
        "machine_memory_bytes": fmt(machine.memory_bytes if machine else None),
        "machine_cpu": machine.cpu if machine else "",
        "workflow_type": inst.system,
        "steps": task.task_type,
        "package": inst.package,
        "device": file_kind(largest[0]),
    }
    return Built(when, order, row, flags)


def spread(items: list[Built], limit: int) -> list[Built]:
    """At most `limit` items, evenly spaced: the middle one of each of `limit` equal slices."""
    if len(items) <= limit:
        return items
    return [items[(2 * i + 1) * len(items) // (2 * limit)] for i in range(limit)]


def instance_rows(inst: Instance, number_: int, step: timedelta, limit: int, stats: Counter[str]) -> list[Built]:
    by_pipeline: dict[str, list[Built]] = defaultdict(list)
    for task in inst.tasks:
        stats["tasks_seen"] += 1
        if task.runtime is None or task.runtime <= 0:
            stats["tasks_skipped_runtime_missing_or_zero"] += 1
            continue
        when = task.started or (inst.started or datetime.min.replace(tzinfo=UTC)) + step * task.index
        built = build_row(inst, task, when, (number_, task.index))
        stats.update(f"tasks_{flag}" for flag in built.flags)
        by_pipeline[str(built.row["pipeline"])].append(built)
    return [b for group in by_pipeline.values() for b in spread(group, limit)]


def steps_for(instances: list[Instance]) -> list[timedelta]:
    """Per instance, the offset per task index that keeps its rows before the next instance's start."""
    steps = []
    for inst in instances:
        later = [o.started for o in instances if o.started and inst.started and o.started > inst.started]
        gap = (min(later) - inst.started) / (len(inst.tasks) + 1) if later and inst.started else TASK_STEP
        steps.append(min(TASK_STEP, gap))
    return steps


def load(traces: Path, summary: dict[str, Any]) -> list[Instance]:
    instances: list[Instance] = []
    for path in sorted(traces.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(traces).parts):
            continue
        try:
            result = read_instance(path)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # odd shapes: skip the file
            result = f"not WfFormat as expected: {type(exc).__name__}: {str(exc)[:120]}"
        if isinstance(result, str):
            summary["files_skipped"].append({"file": str(path.relative_to(traces)), "reason": result})
            continue
        instances.append(result)
        summary["files_read"][result.system] += 1
        summary["schema_versions"][result.version] += 1
        for kind, detail in result.fixes:
            summary["unit_fixes"].setdefault(kind, []).append(f"{path.relative_to(traces)} ({detail})")
    epoch = datetime.min.replace(tzinfo=UTC)
    instances.sort(key=lambda inst: (inst.started or epoch, str(inst.path)))
    return instances


def order_kept(rows: list[Built]) -> bool:
    """Whether every instance's rows lie before the rows of instances that started later."""
    spans: dict[int, list[datetime]] = defaultdict(list)
    for b in rows:
        spans[b.order[0]].append(b.when)
    ordered = [spans[n] for n in sorted(spans)]
    return all(max(a) <= min(b) for a, b in zip(ordered, ordered[1:], strict=False))


def convert(traces: Path, out: Path, limit: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"traces": str(traces), "out": str(out), "max_per_instance": limit}
    summary.update(files_read=Counter(), files_skipped=[], schema_versions=Counter(), unit_fixes={})
    instances = load(traces, summary)
    stats: Counter[str] = Counter()
    rows: list[Built] = []
    for number_, (inst, step) in enumerate(zip(instances, steps_for(instances), strict=True)):
        rows.extend(instance_rows(inst, number_, step, limit, stats))
    rows.sort(key=lambda b: (b.when, b.order))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(b.row for b in rows)
    summarize(summary, rows, stats)
    summary["instance_time_order_kept"] = order_kept(rows)
    return summary


def summarize(summary: dict[str, Any], rows: list[Built], stats: Counter[str]) -> None:
    """Figures over all tasks (`tasks_*`) and over the rows written (`rows_*`)."""
    per_pipeline = Counter(str(b.row["pipeline"]) for b in rows)
    summary["rows_written"] = len(rows)
    summary["rows_per_system"] = Counter(str(b.row["workflow_type"]) for b in rows)
    summary["pipelines"] = len(per_pipeline)
    summary["pipelines_per_system"] = Counter(p.split("-", 1)[0] for p in per_pipeline)
    summary["pipelines_with_5_rows"] = sum(1 for n in per_pipeline.values() if n >= 5)
    summary.update(sorted(stats.items()))
    summary.update(sorted(Counter(f"rows_{flag}" for b in rows for flag in b.flags).items()))
    summary["rows_per_pipeline"] = dict(sorted(per_pipeline.items()))


def report(summary: dict[str, Any]) -> str:
    """The summary without its long lists, one figure a line."""

    def show(value: object) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(value.items())) if isinstance(value, dict) else str(value)

    long = {"files_skipped", "unit_fixes", "rows_per_pipeline"}
    lines = [f"{key}: {show(value)}" for key, value in summary.items() if key not in long]
    lines.append(f"files_skipped: {len(summary['files_skipped'])}")
    lines += [f"  {s['file']}: {s['reason']}" for s in summary["files_skipped"]]
    lines += [f"unit fix, {kind}: {len(files)} instance(s)" for kind, files in summary["unit_fixes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--traces", type=Path, required=True, help="folder with WfInstances JSON files")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--max-per-instance", type=int, default=40, help="tasks per pipeline per instance")
    args = parser.parse_args(argv)
    if args.max_per_instance < 1:
        parser.error("--max-per-instance must be at least 1")
    if not args.traces.is_dir():
        parser.error(f"{args.traces} is not a folder")
    summary = convert(args.traces, args.out, args.max_per_instance)
    summary_path = args.out.with_name(args.out.name + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(report(summary))
    print(f"wrote {args.out} and {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
