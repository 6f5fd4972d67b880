"""One small interface over fsspec: list files with fingerprints, read, write atomically.

Locations are local paths or URLs (`s3://bucket/prefix`, `file:///...`). Everything
else in biomarkerflow goes through here, so adding a backend is an fsspec matter.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from biomarkerflow.errors import StorageError


@dataclass(frozen=True)
class FileEntry:
    """A file as listed: its URL and what tells us whether it changed."""

    url: str
    relative_path: str
    size: int
    mtime: float | None
    etag: str | None

    @property
    def name(self) -> str:
        return PurePosixPath(self.relative_path).name

    @property
    def fingerprint(self) -> str:
        """Changes whenever the content may have changed (etag if the store has one)."""
        return self.etag or f"{self.size}:{self.mtime}"


def _split(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open location {location!r}: {exc}") from exc
    return fs, path


def _join(location: str, relative: str) -> str:
    return location.rstrip("/") + "/" + relative.lstrip("/")


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified", info.get("created")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _matches(relative: str, patterns: list[str]) -> bool:
    # fnmatch's '*' crosses '/', so '**/*.bin' would miss top-level files: also try
    # the pattern with a leading '**/' removed.
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(relative, pattern[3:]):
            return True
    return False


def exists(location: str) -> bool:
    fs, path = _split(location)
    try:
        return bool(fs.exists(path))
    except OSError as exc:
        raise StorageError(f"cannot reach {location!r}: {exc}") from exc


def list_files(location: str, include: list[str], exclude: list[str] | None = None) -> list[FileEntry]:
    """Every file under `location` matching `include` and not `exclude`, sorted by path."""
    fs, root = _split(location)
    try:
        if not fs.isdir(root):
            raise StorageError(
                f"data location {location!r} does not exist or is not a folder",
                hint="Check data.location in the study config (relative paths start at the config file).",
            )
        listing = fs.find(root, detail=True)
    except OSError as exc:
        raise StorageError(f"cannot list {location!r}: {exc}") from exc
    entries: list[FileEntry] = []
    prefix = root.rstrip("/") + "/"
    for path, info in listing.items():
        if info.get("type") == "directory":
            continue
        relative = path[len(prefix) :] if path.startswith(prefix) else PurePosixPath(path).name
        if not _matches(relative, include) or _matches(relative, exclude or []):
            continue
        etag = info.get("ETag") or info.get("etag")
        entries.append(
            FileEntry(
                url=_join(location, relative),
                relative_path=relative,
                size=int(info.get("size") or 0),
                mtime=_mtime(info),
                etag=str(etag).strip('"') if etag else None,
            )
        )
    return sorted(entries, key=lambda e: e.relative_path)


def read_bytes(url: str) -> bytes:
    fs, path = _split(url)
    try:
        with fs.open(path, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError as exc:
        raise StorageError(f"file not found: {url}") from exc
    except OSError as exc:
        raise StorageError(f"cannot read {url!r}: {exc}") from exc


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """A local path for `url`: the file itself when local, else a temporary download.

    SKDH's readers are C code that need a real file on disk.
    """
    if is_local(url):
        yield Path(url.removeprefix("file://"))
        return
    fs, path = _split(url)
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-") as tmp:
        target = Path(tmp) / PurePosixPath(path).name
        try:
            fs.get(path, str(target))
        except OSError as exc:
            raise StorageError(f"cannot download {url!r}: {exc}") from exc
        yield target


def publish_folder(local_folder: Path, destination: str) -> None:
    """Make a finished local folder visible at `destination` in one step.

    Locally this is a rename of a fully written sibling folder, so a reader sees
    all of it or nothing. Remote stores get every file uploaded first and a
    `_SUCCESS` marker last; readers only trust folders that have the marker.
    """
    marker = local_folder / "_SUCCESS"
    marker.write_text("")
    fs, path = _split(destination)
    try:
        if is_local(destination):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy beside the target (same filesystem), then one rename makes it visible.
            staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            shutil.copytree(local_folder, staging)
            os.replace(staging, target)
        else:
            files = sorted(p for p in local_folder.rglob("*") if p.is_file() and p.name != "_SUCCESS")
            for file in files:
                fs.put(str(file), _join(path, file.relative_to(local_folder).as_posix()))
            fs.put(str(marker), _join(path, "_SUCCESS"))
    except OSError as exc:
        raise StorageError(f"cannot write results to {destination!r}: {exc}") from exc


def replace_folder(local_folder: Path, destination: str) -> None:
    """Make `destination` hold exactly the files of `local_folder`, each replaced atomically.

    Each file is swapped in whole (rename locally, one PUT on object stores), so a
    reader sees either the old or the new version of a file, never a partial one.
    """
    fs, root = _split(destination)
    names = {p.name for p in local_folder.iterdir() if p.is_file()}
    try:
        fs.makedirs(root, exist_ok=True)
        # Marker files (leading "_") go last: they vouch for everything before them.
        for name in sorted(names, key=lambda n: (n.startswith("_"), n)):
            if is_local(destination):
                temporary = Path(root) / f".{name}.{uuid.uuid4().hex}.tmp"
                shutil.copyfile(local_folder / name, temporary)
                os.replace(temporary, Path(root) / name)
            else:
                fs.put(str(local_folder / name), _join(root, name))
        for path in fs.ls(root, detail=False):
            name = PurePosixPath(path).name
            if name not in names and not name.startswith("."):
                fs.rm(path)
    except OSError as exc:
        raise StorageError(f"cannot write {destination!r}: {exc}") from exc
