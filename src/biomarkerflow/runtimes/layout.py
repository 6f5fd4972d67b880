"""The runtime cache on disk: file and folder names, and small readers of a runtime's folder.

    <root>/<label>/venv/             the virtual environment (call venv/bin/python directly)
    <root>/<label>/requirements.in   what was asked for
    <root>/<label>/lock.txt          what was resolved, with hashes (its sha256 is the run's lock hash)
    <root>/<label>/runtime.json      written last: its presence means "complete"
    <root>/<label>/last_used         its mtime is the last use (for pruning)
    <root>/.locks/<key>.lock         flock files: one builder per key, prune skips busy keys
    <root>/.build-<label>-<uuid>/    a runtime being built (renamed to <label> when complete)
    <root>/.trash-<label>-<uuid>/    a runtime being deleted (renamed away first)

Only a folder named after a label and holding runtime.json counts as a runtime; everything
else under the root is a leftover for ``prune``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

RUNTIME_JSON = "runtime.json"
LOCK_FILE = "lock.txt"
REQUIREMENTS_FILE = "requirements.in"
LAST_USED_FILE = "last_used"
LOCKS_DIR = ".locks"
BUILD_PREFIX = ".build-"
TRASH_PREFIX = ".trash-"
_BUILD_NAME = re.compile(r"^\.build-(?P<label>.*-(?P<key8>[0-9a-f]{8}))-(?P<uuid>[0-9a-f]{32})$")


def venv_python(runtime: Path) -> Path:
    """The interpreter of the runtime (or build) folder `runtime`."""
    return runtime / "venv" / "bin" / "python"


def read_record(path: Path) -> dict[str, Any] | None:
    """The runtime.json of the runtime folder `path`, or None when it is missing or incomplete."""
    try:
        record = json.loads((path / RUNTIME_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(k in record for k in ("key", "lock_hash", "packages", "built_at")):
        return None
    if not isinstance(record["packages"], dict):
        return None
    return record


def touch(path: Path) -> None:
    """Set mtime to now (creating the file if needed, but never its folder)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def last_use(path: Path) -> float:
    """When the runtime folder `path` was last used (else built); 0 when neither is known."""
    for candidate in (path / LAST_USED_FILE, path / RUNTIME_JSON):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def folder_size(path: Path) -> int:
    """Bytes of regular files under `path`, without following symlinks (a venv links its interpreter)."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def build_key8(name: str) -> str:
    """The key prefix in a ``.build-*`` folder's name, else ''."""
    match = _BUILD_NAME.match(name)
    return match["key8"] if match else ""


def label_key8(name: str) -> str:
    """The key prefix that ends a runtime folder's label, else ''."""
    tail = name.rsplit("-", 1)[-1]
    return tail if re.fullmatch(r"[0-9a-f]{8}", tail) else ""
