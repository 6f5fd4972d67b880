"""Lineage as text: short, chain-shaped lines for a terminal, each hop of the lineage on its own line."""

from __future__ import annotations

import json
from typing import Any

from biomarkerflow.results.lineage_chain import _parse_time
from biomarkerflow.units import format_bytes

NOT_RECORDED = "not recorded"

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
    # Files the run wrote beside its tables (the activity plot, its profile): where to open them.
    lines += [
        _line(
            "profile" if written["name"].startswith("profile.") else "file",
            f"{written['url']}  ({_size(written.get('bytes'))})",
        )
        for written in result.get("run_files") or []
    ]
    profile = result.get("profile") or {}
    if profile.get("error"):
        lines.append(_line("profile", f"none: {profile['error']}"))
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
