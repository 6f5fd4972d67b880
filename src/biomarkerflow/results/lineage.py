"""Lineage: trace any result number back to the exact input, configuration and package set.

`lineage(target, catalog)` answers "where does this come from?" for three kinds of target:

    result  a run's table file, its provenance.json or the run folder itself
            -> input -> config -> pipeline -> runtime -> platform -> run (+ the catalog's view)
    table   a consolidated table (<output>/tables/<name>.parquet, or the tables folder)
            -> every run whose rows it holds, each with its file, package version and lock hash
    input   a data file the catalog knows (its URL, local path, or path relative to the data location)
            -> its catalog record, every run of it, and the current run's chain

The answer is a plain JSON-ready dict (the CLI can print it with --json); `render` turns
it into a few chain-shaped lines. Provenance is read from the run folders, never rebuilt:
what is shown is what the run wrote down when it produced the numbers. Older provenance
lacks some fields (input sha256, runtime): they come out as None, shown as "not recorded".
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
from packaging.utils import canonicalize_name

from biomarkerflow.catalog.manager import Catalog, FileRecord, RunRecord, StudyRecord
from biomarkerflow.catalog.models import FileState
from biomarkerflow.errors import BiomarkerflowError, Category, StorageError
from biomarkerflow.results import writer
from biomarkerflow.results.consolidate import MANIFEST, TABLES_FOLDER, is_current
from biomarkerflow.storage import store
from biomarkerflow.units import format_bytes

PROVENANCE = "provenance.json"
SUCCESS_MARKER = "_SUCCESS"
RESULT_SUFFIXES = (".parquet", ".csv")
KEY_PACKAGES = ("numpy", "scipy", "pandas")
INPUT_FIELDS = ("url", "size", "fingerprint", "sha256")
NOT_RECORDED = "not recorded"
HINT = (
    "Pass a file under <output>/runs/... or <output>/tables/..., or an input file the catalog knows; "
    "see `biomarkerflow status`."
)


class LineageError(BiomarkerflowError):
    """The target is not something lineage can trace; like a usage error, fixed by another argument."""

    category = Category.INVALID_INPUT


# ---- locations ---------------------------------------------------------------------------


def _normalize(target: str) -> str:
    """Local paths become absolute and normalized, as the catalog stores them; URLs stay as written."""
    target = target.removeprefix("file://")
    if "://" in target:
        return target.rstrip("/")
    return os.path.abspath(os.path.expanduser(target))


def _parent(location: str) -> str:
    # Not PurePosixPath: it would fold the "//" of "s3://bucket".
    return location.rstrip("/").rsplit("/", 1)[0]


def _name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"


def _exists(location: str) -> bool:
    """Whether something is there; an unreachable location counts as absent, so the caller's error names it."""
    try:
        return store.exists(location)
    except StorageError:
        return False


def _in_runs_layout(folder: str) -> bool:
    """runs/<subject>/<file stem>/<run id>: a run folder by its place, even when its provenance is missing."""
    parts = folder.rstrip("/").split("/")
    return len(parts) >= 4 and parts[-4] == "runs"


def _is_run_folder(folder: str) -> bool:
    return _exists(_join(folder, PROVENANCE)) or (_in_runs_layout(folder) and _exists(folder))


def _run_folder_of(location: str) -> str | None:
    """The run folder `location` points into (file, provenance.json or the folder), or None."""
    if not _exists(location):
        return None
    if _name(location) == PROVENANCE:
        return _parent(location)
    if location.endswith(RESULT_SUFFIXES) and _is_run_folder(_parent(location)):
        return _parent(location)
    return location if _is_run_folder(location) else None


def _tables_folder_of(location: str) -> str | None:
    """The consolidated tables folder `location` is (or is a table of), or None."""
    if _name(location) == TABLES_FOLDER and _exists(_join(location, MANIFEST)):
        return location
    if _name(_parent(location)) == TABLES_FOLDER and location.endswith(".parquet") and _exists(location):
        return _parent(location)
    return None


# ---- small formatting helpers --------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    """Catalog times are naive UTC; say so in the JSON, as the provenance times do."""
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds_between(started: Any, finished: Any) -> float | None:
    start, end = _parse_time(started), _parse_time(finished)
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def _version_of(packages: dict[str, Any], name: str) -> str | None:
    """Package lookup by canonical name: lock files spell scikit_digital_health and scikit-digital-health alike."""
    wanted = canonicalize_name(name)
    for package, version in packages.items():
        if canonicalize_name(package) == wanted:
            return str(version)
    return None


# ---- provenance chain (kind "result") ------------------------------------------------------


def _load_provenance(folder: str, target: str) -> dict[str, Any]:
    """provenance.json of a run folder; a Parquet target's embedded copy when the sidecar is gone."""
    try:
        value = json.loads(store.read_bytes(_join(folder, PROVENANCE)))
    except StorageError:
        value = None
    except ValueError as exc:
        raise LineageError(f"{_join(folder, PROVENANCE)} is not valid JSON: {exc}") from exc
    if isinstance(value, dict):
        return value
    if target.endswith(".parquet"):
        with store.local_copy(target) as local:
            embedded = writer.read_provenance(str(local))
        if embedded:
            return embedded
    raise LineageError(
        f"result folder {folder} has no {PROVENANCE}",
        hint="Every run biomarkerflow publishes writes one; this folder is incomplete or was written by hand.",
    )


def _input_section(provenance: dict[str, Any]) -> dict[str, Any]:
    # Fields added by later versions (mtime, etag, ...) pass through as they are.
    recorded = provenance.get("input") or {}
    return {
        **{key: None for key in INPUT_FIELDS},
        **recorded,
        "subject": provenance.get("subject"),
        "subject_inputs": provenance.get("subject_inputs") or {},
    }


def _config_section(provenance: dict[str, Any]) -> dict[str, Any]:
    config = provenance.get("config") or {}
    return {
        "source": config.get("source"),
        "sha256": config.get("sha256"),
        "package_pin": provenance.get("package_pin"),
    }


def _pipeline_section(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"step": step.get("step"), "params": dict(step.get("params") or {})}
        for step in provenance.get("pipeline") or []
        if isinstance(step, dict)
    ]


def _runtime_section(provenance: dict[str, Any]) -> dict[str, Any]:
    """The algorithm package plus the numeric packages most likely to move a number between versions."""
    runtime = provenance.get("runtime")
    recorded = isinstance(runtime, dict)
    runtime = runtime if isinstance(runtime, dict) else {}
    package = provenance.get("package") or {}
    packages = runtime.get("packages") or {}
    return {
        "recorded": recorded,
        "key": runtime.get("key"),
        "label": runtime.get("label"),
        "isolated": runtime.get("isolated"),
        "lock_hash": runtime.get("lock_hash"),
        "python": runtime.get("python"),
        "package": {"name": package.get("name"), "version": package.get("version")},
        "key_packages": {name: _version_of(packages, name) for name in KEY_PACKAGES},
    }


def _platform_section(provenance: dict[str, Any]) -> dict[str, Any]:
    platform = provenance.get("platform") or {}
    return {
        "biomarkerflow": platform.get("biomarkerflow"),
        "python": platform.get("python"),
        "host": platform.get("host"),
    }


def _run_section(provenance: dict[str, Any], folder: str) -> dict[str, Any]:
    started, finished = provenance.get("started_at"), provenance.get("finished_at")
    return {
        "id": provenance.get("run_id") or _name(folder),
        "study": provenance.get("study"),
        "host": (provenance.get("platform") or {}).get("host"),
        "started_at": started,
        "finished_at": finished,
        "seconds": _seconds_between(started, finished),
    }


def _result_files(folder: str) -> list[str]:
    try:
        return [entry.name for entry in store.list_files(folder, [f"*{suffix}" for suffix in RESULT_SUFFIXES])]
    except StorageError:
        return []


def chain(provenance: dict[str, Any], folder: str) -> dict[str, Any]:
    """The input -> config -> pipeline -> runtime -> platform -> run chain of one run's provenance."""
    return {
        "input": _input_section(provenance),
        "config": _config_section(provenance),
        "pipeline": _pipeline_section(provenance),
        "runtime": _runtime_section(provenance),
        "platform": _platform_section(provenance),
        "run": _run_section(provenance, folder),
        "recording": provenance.get("recording"),
        "warnings": list(provenance.get("warnings") or []),
        # SKDH's warnings that changed the results, in words (provenance from before issue 14 has none).
        "notices": list(provenance.get("notices") or []),
    }


def _result_lineage(folder: str, target: str, catalog: Catalog | None) -> dict[str, Any]:
    provenance = _load_provenance(folder, target)
    out: dict[str, Any] = {
        "kind": "result",
        "result": {
            "target": target,
            "folder": folder,
            "files": _result_files(folder),
            # Readers trust only marked folders: an unmarked one was never fully published.
            "complete": _exists(_join(folder, SUCCESS_MARKER)),
        },
        **chain(provenance, folder),
        "catalog": None,
        "notes": [],
    }
    if catalog is not None:
        view = _catalog_view(catalog, out["run"]["id"])
        out["catalog"] = view
        out["notes"] = _notes(catalog, provenance, view)
    return out


# ---- the catalog's view of a run ------------------------------------------------------------


def _current_run_id(file: FileRecord | None) -> str | None:
    """The file's current result, as `Catalog.current_results` defines it: SUCCEEDED and its current run."""
    if file is None or file.state != FileState.SUCCEEDED.value:
        return None
    return file.current_run_id


def run_status(run: RunRecord, file: FileRecord | None, file_runs: list[RunRecord]) -> dict[str, Any]:
    """Whether a run's results are the ones in force for its file, and if not, why not.

    status: "current"; "superseded" (by a later succeeded run); "outdated" (still the file's
    last result, but the file is STALE/changed and not yet recomputed); or the run's own
    outcome when it produced no result ("failed", "interrupted", "lost", "running").
    """
    current = _current_run_id(file)
    if run.outcome != "succeeded":
        return {"status": run.outcome, "superseded_by": None, "why": run.error}
    if run.id == current:
        return {"status": "current", "superseded_by": None, "why": None}
    if current is not None:
        return {"status": "superseded", "superseded_by": current, "why": None}
    later = [r for r in file_runs if r.outcome == "succeeded" and r.started_at > run.started_at]
    if later:
        return {"status": "superseded", "superseded_by": later[-1].id, "why": None}
    state = file.state if file else "unknown"
    reason = f": {file.reason}" if file and file.reason else ""
    return {"status": "outdated", "superseded_by": None, "why": f"its input file is {state}{reason}"}


def _run_entry(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "attempt": run.attempt,
        "outcome": run.outcome,
        "error": run.error,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "peak_rss_bytes": run.peak_rss_bytes,
        "package_version": run.package_version,
        "lock_hash": run.lock_hash,
        "config_sha256": run.config_sha256,
        "result_location": run.result_location,
        "failed_step": run.failed_step,
        "traceback": run.traceback,
        "notices": list(run.notices),
    }


def _catalog_view(catalog: Catalog, run_id: str) -> dict[str, Any]:
    run = catalog.get_run(run_id)
    if run is None:
        return {"known": False, "catalog": catalog.url}
    file = catalog.get_file(run.file_id)
    file_runs = catalog.runs(run.study_id, file_id=run.file_id)
    return {
        "known": True,
        **_run_entry(run),
        **run_status(run, file, file_runs),
        "file": None if file is None else {"url": file.url, "state": file.state, "fingerprint": file.fingerprint},
        "study": run.study_id,
    }


def _notes(catalog: Catalog, provenance: dict[str, Any], view: dict[str, Any]) -> list[str]:
    """Differences between what the run used and what the catalog holds now: reasons a rerun would differ."""
    if not view.get("known"):
        return [f"the catalog at {catalog.url} does not know this run"]
    notes: list[str] = []
    used = (provenance.get("input") or {}).get("fingerprint")
    now = (view.get("file") or {}).get("fingerprint")
    if used and now and used != now:
        notes.append(f"the input file has changed since this run (fingerprint then {used}, now {now})")
    study = catalog.get_study(view["study"])
    sha = (provenance.get("config") or {}).get("sha256")
    if study is not None and sha and sha != study.config_sha256:
        notes.append(f"the study config has changed since this run (sha256 now {study.config_sha256})")
    return notes


# ---- consolidated tables (kind "table") ------------------------------------------------------


def _read_manifest(tables_folder: str) -> list[str] | None:
    try:
        return [str(run_id) for run_id in json.loads(store.read_bytes(_join(tables_folder, MANIFEST)))]
    except (StorageError, ValueError, TypeError):
        return None


def _rows_per_run(table: str) -> dict[str, dict[str, Any]]:
    """Run id -> rows it holds in the table, with the subject and file the rows name."""
    with store.local_copy(table) as local:
        names = pq.read_schema(local).names
        if "run_id" not in names:
            return {}
        frame = pq.read_table(local, columns=[c for c in ("run_id", "subject", "file") if c in names]).to_pylist()
    counts = Counter(str(row["run_id"]) for row in frame)
    first: dict[str, dict[str, Any]] = {}
    for row in frame:
        first.setdefault(str(row["run_id"]), row)
    return {
        run_id: {"rows": count, "subject": first[run_id].get("subject"), "file": first[run_id].get("file")}
        for run_id, count in counts.items()
    }


def _study_for_output(catalog: Catalog, output: str) -> StudyRecord | None:
    wanted = _normalize(output)
    return next((s for s in catalog.studies() if _normalize(s.output_location) == wanted), None)


def _search_run_folders(output: str) -> dict[str, str]:
    """Run id -> run folder, by listing <output>/runs/*/*/<run id>/provenance.json (no catalog at hand)."""
    try:
        entries = store.list_files(_join(output, "runs"), [f"*/{PROVENANCE}"])
    except StorageError:
        return {}
    return {_name(_parent(entry.url)): _parent(entry.url) for entry in entries}


def _run_folders(records: dict[str, RunRecord], output: str, run_ids: list[str]) -> dict[str, str]:
    """Run id -> run folder: where the catalog says, else found by searching (no catalog, or it lost track)."""
    folders = {run_id: records[run_id].result_location or "" for run_id in run_ids if run_id in records}
    folders = {run_id: folder for run_id, folder in folders.items() if folder}
    if any(run_id not in folders for run_id in run_ids):
        found = _search_run_folders(output)
        folders.update({run_id: found[run_id] for run_id in run_ids if run_id not in folders and run_id in found})
    return folders


def _table_run(
    run_id: str, rows: dict[str, Any], folder: str | None, record: RunRecord | None, current: set[str] | None
) -> dict[str, Any]:
    provenance: dict[str, Any] = {}
    if folder is not None:
        try:
            provenance = _load_provenance(folder, folder)
        except LineageError:
            provenance = {}
    runtime = _runtime_section(provenance)
    return {
        "id": run_id,
        "rows": rows.get("rows", 0),
        "subject": provenance.get("subject", rows.get("subject")),
        "file": rows.get("file"),
        "input_url": (provenance.get("input") or {}).get("url"),
        # Provenance first (what the run itself wrote), the catalog's record when it is missing.
        "package_version": runtime["package"]["version"] or (record.package_version if record else None),
        "lock_hash": runtime["lock_hash"] or (record.lock_hash if record else None),
        "config_sha256": (provenance.get("config") or {}).get("sha256"),
        "folder": folder,
        "provenance_found": bool(provenance),
        "current": None if current is None else run_id in current,
    }


def _table_lineage(location: str, tables_folder: str, catalog: Catalog | None) -> dict[str, Any]:
    output = _parent(tables_folder)
    is_table = location != tables_folder
    rows = _rows_per_run(location) if is_table else {}
    manifest = _read_manifest(tables_folder)
    run_ids = sorted(set(rows) | set(manifest or []))
    study = _study_for_output(catalog, output) if catalog is not None else None
    current = {r.id for _, r in catalog.current_results(study.id)} if catalog and study else None
    records = {r.id: r for r in catalog.runs(study.id)} if catalog and study else {}
    folders = _run_folders(records, output, run_ids)
    return {
        "kind": "table",
        "table": location if is_table else None,
        "name": _name(location).removesuffix(".parquet") if is_table else None,
        "tables_folder": tables_folder,
        "output_location": output,
        "study": study.id if study else None,
        "rows": sum(r["rows"] for r in rows.values()),
        "manifest": manifest,
        # Whether the tables hold exactly the catalog's current runs (None: no catalog to ask).
        "up_to_date": is_current(catalog, study) if catalog and study else None,
        "runs": [
            _table_run(run_id, rows.get(run_id, {}), folders.get(run_id), records.get(run_id), current)
            for run_id in run_ids
        ],
    }


# ---- input files (kind "input") ---------------------------------------------------------------


def _find_input(catalog: Catalog, target: str, location: str) -> FileRecord | None:
    """The catalogued file `target` names: by URL or local path, else by path relative to its data location."""
    names = {target, location, target.removeprefix("file://"), f"file://{location}"}
    relative = os.path.normpath(target).replace(os.sep, "/")
    matches = catalog.files_named(sorted(names), relative_path=relative)
    if len(matches) > 1:
        where = ", ".join(f"{f.study_id}: {f.url}" for f in matches)
        raise LineageError(f"{target} matches several catalogued files ({where})", hint="Pass the full path or URL.")
    return matches[0] if matches else None


def _file_entry(file: FileRecord) -> dict[str, Any]:
    return {
        "study": file.study_id,
        "url": file.url,
        "relative_path": file.relative_path,
        "subject": file.subject,
        "state": file.state,
        "reason": file.reason,
        "size": file.size,
        "fingerprint": file.fingerprint,
        "attempts": file.attempts,
        "last_error": file.last_error,
        "current_run_id": _current_run_id(file),
    }


def _current_chain(catalog: Catalog, runs: list[RunRecord], run_id: str | None) -> dict[str, Any] | None:
    """The result chain of the file's last result; an error note instead if its folder is gone."""
    run = next((r for r in runs if r.id == run_id), None)
    if run is None or not run.result_location:
        return None
    try:
        return _result_lineage(run.result_location, run.result_location, catalog)
    except LineageError as exc:
        return {"kind": "result", "error": exc.message}


def _input_lineage(file: FileRecord, catalog: Catalog) -> dict[str, Any]:
    runs = catalog.runs(file.study_id, file_id=file.id)
    entries = [{**_run_entry(run), **run_status(run, file, runs)} for run in runs]
    return {
        "kind": "input",
        "file": _file_entry(file),
        "runs": entries,
        # Even a STALE file's last result is worth tracing: it is what the tables still hold.
        "current": _current_chain(catalog, runs, file.current_run_id),
    }


# ---- entry point ------------------------------------------------------------------------------


def lineage(target: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """What `biomarkerflow lineage TARGET` shows, as a JSON-ready dict with a "kind" field.

    Raises LineageError when the target is neither a result, a consolidated table nor an
    input file the catalog knows.
    """
    location = _normalize(target)
    folder = _run_folder_of(location)
    if folder is not None:
        return _result_lineage(folder, location, catalog)
    tables_folder = _tables_folder_of(location)
    if tables_folder is not None:
        return _table_lineage(location, tables_folder, catalog)
    if catalog is not None:
        file = _find_input(catalog, target, location)
        if file is not None:
            return _input_lineage(file, catalog)
    raise LineageError(f"no result, table or catalogued input file at {target}", hint=HINT)


# ---- rendering ---------------------------------------------------------------------------------

LABEL_WIDTH = 8
LINE_WIDTH = 110
TRACEBACK_LINES = 15  # the end of a traceback: where it was raised


def _line(label: str, text: str) -> str:
    return f"{label:<{LABEL_WIDTH}} {text}"


def _size(value: Any) -> str:
    return format_bytes(value) if isinstance(value, int | float) else f"size {NOT_RECORDED}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _short(value: Any, keep: int = 12) -> str:
    """Hashes shortened for reading; the JSON keeps them whole."""
    if value is None:
        return NOT_RECORDED
    text = str(value)
    return text if len(text) <= keep + 4 else f"{text[:keep]}…"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _step(step: dict[str, Any], shown: int = 3) -> str:
    params = [f"{key}={_value(value)}" for key, value in step["params"].items()]
    more = ", …" if len(params) > shown else ""
    return f"{step['step']}({', '.join(params[:shown])}{more})"


def _wrapped(label: str, parts: list[str], separator: str = " → ") -> list[str]:
    """Parts joined by `separator`, continued on indented lines instead of one very long line."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current}{separator}{part}" if current else part
        if current and len(candidate) + LABEL_WIDTH + 1 > LINE_WIDTH:
            lines.append(current + separator.rstrip())
            current = part
        else:
            current = candidate
    lines.append(current)
    return [_line(label if i == 0 else "", text) for i, text in enumerate(lines)]


def _time_span(run: dict[str, Any]) -> str:
    start, end = _parse_time(run.get("started_at")), _parse_time(run.get("finished_at"))
    if start is None:
        return f"time {NOT_RECORDED}"
    text = f"{start:%Y-%m-%d %H:%M:%S}"
    if end is not None:
        text += f" → {end:%H:%M:%S}" if end.date() == start.date() else f" → {end:%Y-%m-%d %H:%M:%S}"
    seconds = run.get("seconds")
    return text + " UTC" + (f" ({seconds:.0f} s)" if isinstance(seconds, int | float) else "")


def _runtime_text(runtime: dict[str, Any]) -> str:
    package = runtime["package"]
    text = f"{package.get('name') or 'algorithm package'} {package.get('version') or NOT_RECORDED}"
    if not runtime["recorded"]:
        return f"{text}; runtime {NOT_RECORDED}"
    where = f"isolated runtime {runtime['label']}" if runtime["isolated"] else f"{runtime['label'] or 'environment'}"
    versions = ", ".join(f"{name} {version or '?'}" for name, version in runtime["key_packages"].items())
    return f"{text} in {where} (lock {_short(runtime['lock_hash'])}; {versions})"


def _status_text(view: dict[str, Any] | None) -> str:
    if view is None:
        return "not checked against a catalog"
    if not view.get("known"):
        return "unknown to the catalog"
    status = view["status"]
    if status == "current":
        return f"{view['outcome']}, current result"
    if status == "superseded":
        return f"{view['outcome']}, superseded by {view['superseded_by']}"
    return f"{status}: {view['why']}" if view.get("why") else status


def _cost_text(view: dict[str, Any]) -> str:
    parts = [f"attempt {view['attempt']}"]
    for key, label in (("wall_seconds", "wall"), ("cpu_seconds", "cpu")):
        if view.get(key) is not None:
            parts.append(f"{label} {view[key]:.1f} s")
    if view.get("peak_rss_bytes") is not None:
        parts.append(f"peak memory {_size(view['peak_rss_bytes'])}")
    return ", ".join(parts)


def _render_result(data: dict[str, Any]) -> list[str]:
    if "error" in data:
        return [_line("result", data["error"])]
    result, source, config = data["result"], data["input"], data["config"]
    platform, run, view = data["platform"], data["run"], data["catalog"]
    target = result["target"] if result["target"] != result["folder"] else f"{result['folder']}/"
    lines = [_line("result", target + ("" if result["complete"] else "  (no _SUCCESS marker: incomplete)"))]
    lines.append(
        _line(
            "input",
            f"{source['url']}  ({_size(source['size'])}, sha256 {_short(source['sha256'])}, "
            f"fingerprint {_short(source['fingerprint'], 24)})",
        )
    )
    lines.append(_line("config", f"{config['source']}  (sha256 {_short(config['sha256'])})"))
    lines += _wrapped("pipeline", [_step(step) for step in data["pipeline"]] or [NOT_RECORDED])
    lines.append(_line("runtime", _runtime_text(data["runtime"])))
    lines.append(
        _line(
            "platform",
            f"biomarkerflow {platform['biomarkerflow'] or '?'}, Python {platform['python'] or '?'}, "
            f"host {platform['host'] or '?'}",
        )
    )
    lines.append(_line("run", f"{run['id']}  {_time_span(run)}, {_status_text(view)}"))
    if view and view.get("known"):
        lines.append(_line("cost", _cost_text(view)))
    if data["warnings"]:
        lines.append(_line("warnings", f"{len(data['warnings'])} from the algorithm package (see provenance.json)"))
    # The catalog's copy when the provenance predates notices.
    notices = data.get("notices") or (view or {}).get("notices") or []
    lines += [_line("notice", notice) for notice in notices]
    lines += [_line("note", note) for note in data["notes"]]
    return lines


def _render_table(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    where = data["table"] or data["tables_folder"]
    freshness = {True: "; up to date with the catalog", False: "; OUT OF DATE with the catalog", None: ""}
    summary = _count(len(runs), "run")
    if data["table"]:
        summary = f"{_count(data['rows'], 'row')} from {summary}"
    lines = [_line("table", f"{where}  ({summary}{freshness[data['up_to_date']]})")]
    for run in runs:
        current = {True: ", current", False: ", NOT current", None: ""}[run["current"]]
        details = (
            f"{run['subject'] or '?'}  {run['file'] or run['input_url'] or '?'}  "
            f"package {run['package_version'] or NOT_RECORDED}  lock {_short(run['lock_hash'])}"
        )
        if not run["provenance_found"]:
            details += "  (run folder or provenance.json not found)"
        lines.append(_line("run", f"{run['id']}  {details}  ({_count(run['rows'], 'row')}{current})"))
    return lines


def _run_details(run: dict[str, Any]) -> list[str]:
    """Under a run's line: the step that failed and the end of its traceback; its notices."""
    lines: list[str] = []
    if run["outcome"] != "succeeded" and run.get("failed_step"):
        lines.append(_line("", f"  failed in step {run['failed_step']}"))
    traceback = (run.get("traceback") or "").rstrip().splitlines() if run["outcome"] != "succeeded" else []
    if len(traceback) > TRACEBACK_LINES:
        cut = len(traceback) - TRACEBACK_LINES
        lines.append(_line("", f"  │ ... {_count(cut, 'earlier line')} (--json shows the whole traceback)"))
        traceback = traceback[cut:]
    lines += [_line("", f"  │ {text}") for text in traceback]
    lines += [_line("", f"  notice: {notice}") for notice in run.get("notices") or []]
    return lines


def _render_input(data: dict[str, Any]) -> list[str]:
    file = data["file"]
    reason = f": {file['reason']}" if file["reason"] else ""
    lines = [
        _line(
            "input",
            f"{file['url']}  (study {file['study']}, subject {file['subject'] or '?'}, {_size(file['size'])}, "
            f"fingerprint {_short(file['fingerprint'], 24)})",
        ),
        _line("state", f"{file['state']}{reason}"),
    ]
    for i, run in enumerate(data["runs"]):
        when = (run["started_at"] or "")[:19].replace("T", " ")
        status = f"{run['status']} by {run['superseded_by']}" if run["superseded_by"] else run["status"]
        error = f"  {run['error']}" if run["error"] and run["outcome"] != "succeeded" else ""
        text = (
            f"{run['id']}  attempt {run['attempt']}  {when}  package {run['package_version'] or '?'}  "
            f"{status.upper() if status == 'current' else status}{error}"
        )
        lines.append(_line("runs" if i == 0 else "", text))
        lines += _run_details(run)
    if not data["runs"]:
        lines.append(_line("runs", "none yet"))
    if data["current"] is not None:
        lines += ["", *_render_result(data["current"])]
    return lines


def render(data: dict[str, Any]) -> list[str]:
    """Short, chain-shaped lines for a terminal: each hop of the lineage on its own line."""
    renderers = {"result": _render_result, "table": _render_table, "input": _render_input}
    return renderers[data["kind"]](data)
