"""Lineage of one run (kind "result"): its provenance chain and the catalog's view of it.

Provenance is read from the run folder, never rebuilt; older provenance lacks some fields,
which come out as None.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from packaging.utils import canonicalize_name

from biomarkerflow.catalog.manager import Catalog, FileRecord, RunRecord
from biomarkerflow.catalog.models import FileState
from biomarkerflow.errors import StorageError
from biomarkerflow.results import writer
from biomarkerflow.results.lineage_locate import (
    PROVENANCE,
    RESULT_SUFFIXES,
    SUCCESS_MARKER,
    LineageError,
    _exists,
    _join,
    _name,
)
from biomarkerflow.storage import store

KEY_PACKAGES = ("numpy", "scipy", "pandas")
INPUT_FIELDS = ("url", "size", "fingerprint", "sha256")


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


def _run_files(provenance: dict[str, Any], folder: str) -> list[dict[str, Any]]:
    """The files the run wrote beside its tables, as its provenance names them, with their URL."""
    listed = provenance.get("files")
    if not isinstance(listed, dict):
        return []  # provenance from before runs wrote files
    return [
        {"name": name, "url": _join(folder, name), **(facts if isinstance(facts, dict) else {})}
        for name, facts in sorted(listed.items())
    ]


def _profile(provenance: dict[str, Any], folder: str) -> dict[str, Any] | None:
    """The run's profile (where its time went), with its page's URL; None when none was asked for."""
    profile = provenance.get("profile")
    if not isinstance(profile, dict):
        return None
    name = profile.get("file")
    return {**profile, "url": _join(folder, name) if isinstance(name, str) else None}


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
            "run_files": _run_files(provenance, folder),
            "profile": _profile(provenance, folder),
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

    status: "current"; "excluded" (current, but outside the study's quality gates: only its
    quality report is in the study's tables); "superseded" (by a later succeeded run); "outdated" (still the file's
    last result, but the file is STALE/changed and not yet recomputed); or the run's own
    outcome when it produced no result ("failed", "interrupted", "lost", "running").
    """
    current = _current_run_id(file)
    if run.outcome != "succeeded":
        return {"status": run.outcome, "superseded_by": None, "why": run.error}
    if file is not None and file.state == FileState.REMOVED.value:
        return {"status": "removed", "superseded_by": None, "why": "its input file was removed from the data location"}
    if file is not None and file.state == FileState.EXCLUDED.value and run.id == file.current_run_id:
        # Its quality report is current; its other results are out of the study's tables.
        return {"status": "excluded", "superseded_by": None, "why": file.reason}
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
