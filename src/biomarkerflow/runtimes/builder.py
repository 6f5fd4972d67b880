"""The runtime cache: one isolated virtual environment per pinned algorithm-package requirement set.

A study pins the algorithm package it was validated with (SKDH's results differ between versions), so
its jobs must run with exactly that version, whatever biomarkerflow itself has installed. For each
distinct requirement set we build, once, with uv and from the package index, a virtual environment
holding the pinned package, the study's extra constraints and the few libraries the job entrypoint
imports, and keep it under ``<home>/runtimes`` (the folder layout is in layout.py).

A runtime is built in a ``.build-*`` sibling folder and renamed into place only once it passed a
smoke test, so a folder named after a label is either complete or ignored, and a crash leaves only
a ``.build-*`` folder that ``prune`` removes.

This module is the cache itself (find, ensure, build, list, prune, and the locks that make them
safe across processes); the rest lives next to it and is re-exported here:

    spec.py           RuntimeSpec, BuiltRuntime, RuntimeInfo, JOB_REQUIREMENTS
    layout.py         file and folder names of the cache, readers of a runtime's folder
    uv_build.py       building one runtime with uv, and explaining uv's failures
    package_index.py  which versions the index has, for "this version does not exist"
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.runtimes.layout import (
    BUILD_PREFIX,
    LAST_USED_FILE,
    LOCK_FILE,
    LOCKS_DIR,
    REQUIREMENTS_FILE,
    RUNTIME_JSON,
    TRASH_PREFIX,
    build_key8,
    folder_size,
    label_key8,
    last_use,
    read_record,
    touch,
    venv_python,
)
from biomarkerflow.runtimes.package_index import newest_versions
from biomarkerflow.runtimes.spec import JOB_REQUIREMENTS, BuiltRuntime, RuntimeInfo, RuntimeSpec
from biomarkerflow.runtimes.uv_build import build_hint, build_into

__all__ = [
    "JOB_REQUIREMENTS",
    "LAST_USED_FILE",
    "LOCK_FILE",
    "REQUIREMENTS_FILE",
    "RUNTIME_JSON",
    "BuiltRuntime",
    "RuntimeCache",
    "RuntimeInfo",
    "RuntimeSpec",
    "newest_versions",
]


def _iso_from_timestamp(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class RuntimeCache:
    """The runtimes under ``<home>/runtimes``: find, build once, list and prune them.

    Safe across processes: builds and deletions of one key are serialised with ``flock``, and a
    runtime becomes visible only by an atomic rename once it is complete.
    """

    def __init__(
        self, root: Path, progress: Callable[[str], None] | None = None, *, compile_bytecode: bool = True
    ) -> None:
        # Absolute, fixed now: uv runs inside the build folder, where a relative interpreter
        # path would name another file ("No interpreter found at path '.biomarkerflow/…'"), and
        # workers started elsewhere must find the same folders.
        self.root = Path(root).expanduser().resolve()
        self._progress = progress
        # Compiled at build time (~10 s once): otherwise every worker start where Python may
        # not write .pyc files (PYTHONDONTWRITEBYTECODE, read-only shared runtimes) compiles
        # SKDH's import chain again, 6.8 s instead of 2.1 s (benchmarks/README.md).
        self.compile_bytecode = compile_bytecode

    # ------------------------------------------------------------------ lookup

    def find(self, spec: RuntimeSpec) -> BuiltRuntime | None:
        """The complete runtime for `spec` on disk, else None. Never builds.

        A folder without runtime.json (half-made) or without its interpreter (damaged or being
        deleted) counts as absent, so `ensure` simply rebuilds it.
        """
        path = self.root / spec.label
        python = venv_python(path)
        record = read_record(path)
        if record is None or record.get("key") != spec.key or not python.exists():
            return None
        return BuiltRuntime(
            spec=spec,
            path=path,
            python=str(python),
            lock_hash=str(record["lock_hash"]),
            packages={str(k): str(v) for k, v in record["packages"].items()},
            built_at=str(record["built_at"]),
        )

    def ensure(self, spec: RuntimeSpec) -> BuiltRuntime:
        """The runtime for `spec`, building it on first use; records the use for `prune`.

        The lookup holds the key's lock shared, so a concurrent `prune` cannot delete the runtime
        between finding it and marking it used, and a concurrent build is waited for, not repeated.
        """
        self._locks_dir().mkdir(parents=True, exist_ok=True)
        with self._lock(spec.key, exclusive=False, blocking=False) as free:
            if free:
                found = self._find_and_touch(spec)
                if found is not None:
                    return found
        if not free:
            self._say(f"Waiting for runtime for {spec.describe()} (another process is building it)…")
            with self._lock(spec.key, exclusive=False, blocking=True):
                found = self._find_and_touch(spec)
                if found is not None:
                    return found
        return self.build(spec)

    def _find_and_touch(self, spec: RuntimeSpec) -> BuiltRuntime | None:
        found = self.find(spec)
        if found is None:
            return None
        try:
            touch(found.path / LAST_USED_FILE)
        except OSError:
            return None  # deleted under us: rebuild
        return found

    # ------------------------------------------------------------------ building

    def build(self, spec: RuntimeSpec, force: bool = False) -> BuiltRuntime:
        """Build the runtime for `spec` (unless another process just did, or it exists and not `force`).

        Raises RuntimeUnavailableError naming the requirement and uv's reason when it cannot be
        built; nothing half-made is left behind (only the empty lock file).
        """
        self._locks_dir().mkdir(parents=True, exist_ok=True)
        with self._lock(spec.key, exclusive=True, blocking=True):
            if not force:
                existing = self.find(spec)
                if existing is not None:
                    touch(existing.path / LAST_USED_FILE)
                    return existing
            self._say(f"Building runtime for {spec.describe()} (first use; about a minute)…")
            tmp = self.root / f"{BUILD_PREFIX}{spec.label}-{uuid.uuid4().hex}"
            try:
                build_into(spec, tmp, compile_bytecode=self.compile_bytecode)
                target = self.root / spec.label
                if target.exists() or target.is_symlink():
                    self._discard(target)  # stale, damaged, or replaced by force
                os.rename(tmp, target)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, RuntimeUnavailableError | KeyboardInterrupt | SystemExit):
                    raise
                raise RuntimeUnavailableError(
                    f"cannot build a runtime for {spec.describe()}: {exc}", hint=build_hint()
                ) from exc
        built = self.find(spec)
        if built is None:  # pragma: no cover - only if someone deletes it within this instant
            raise RuntimeUnavailableError(f"runtime for {spec.describe()} vanished right after it was built")
        return built

    # ------------------------------------------------------------------ listing and pruning

    def entries(self) -> list[RuntimeInfo]:
        """Every complete runtime under the root, sorted by label."""
        infos: list[RuntimeInfo] = []
        for path in sorted(self._children(), key=lambda p: p.name):
            if path.name.startswith("."):
                continue
            info = self._info(path)
            if info is not None:
                infos.append(info)
        return infos

    def prune(self, keep: set[str], unused_days: float = 0.0, dry_run: bool = False) -> list[RuntimeInfo]:
        """Remove runtimes not in `keep` and unused for `unused_days`, plus leftovers of dead builds.

        Busy keys (a build or a lookup holds the lock) are skipped. Deletion renames the folder
        away first, so a half-deleted runtime never looks complete. Returns what was (or, with
        `dry_run`, would be) removed.
        """
        removed: list[RuntimeInfo] = []
        cutoff = time.time() - unused_days * 86400.0
        if self.root.is_dir():
            self._locks_dir().mkdir(parents=True, exist_ok=True)
        for path in sorted(self._children(), key=lambda p: p.name):
            name = path.name
            if name == LOCKS_DIR:
                continue
            if name.startswith(TRASH_PREFIX):
                gone: RuntimeInfo | None = self._prune_trash(path, dry_run)
            elif name.startswith(BUILD_PREFIX):
                gone = self._prune_build(path, dry_run)
            elif name.startswith(".") or not path.is_dir():
                continue
            else:
                gone = self._prune_runtime(path, keep, cutoff, dry_run)
            if gone is not None:
                removed.append(gone)
        return removed

    def _prune_trash(self, path: Path, dry_run: bool) -> RuntimeInfo:
        """An earlier deletion was interrupted after the rename: finish it."""
        info = self._leftover_info(path, key="")
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
        return info

    def _prune_build(self, path: Path, dry_run: bool) -> RuntimeInfo | None:
        """Remove a ``.build-*`` folder whose builder is gone (a crash); leave a running build alone."""
        if not self._removable_build(path, dry_run):
            return None
        info = self._leftover_info(path, key=build_key8(path.name))
        if not dry_run:
            self._discard(path)
        return info

    def _prune_runtime(self, path: Path, keep: set[str], cutoff: float, dry_run: bool) -> RuntimeInfo | None:
        """Remove a runtime folder not kept, not busy and unused since `cutoff`, or one that is half-made."""
        record = read_record(path)
        key = str(record.get("key", "")) if record else label_key8(path.name)
        if record and key in keep:
            return None
        with self._lock_for_deletion(key, path.name) as free:
            if not free:
                return None
            info = self._info(path)
            if info is None:  # half-made or damaged folder under a label: never usable as is
                if not path.exists():
                    return None
                info = self._leftover_info(path, key=key)
            elif last_use(path) > cutoff:
                return None
            if not dry_run:
                self._discard(path)
            return info

    def _removable_build(self, path: Path, dry_run: bool) -> bool:
        """A `.build-*` folder is a leftover when no process holds a lock its builder would hold."""
        key8 = build_key8(path.name)
        candidates = sorted(self._locks_dir().glob(f"{key8}*.lock")) if key8 else []
        for lock_path in candidates:
            with self._lock(lock_path.stem, exclusive=True, blocking=False) as free:
                if not free:
                    return False
        return True

    @contextmanager
    def _lock_for_deletion(self, key: str, name: str) -> Iterator[bool]:
        """Exclusive, non-blocking lock on the runtime's key (or on every key its label could mean)."""
        if len(key) == 16:
            with self._lock(key, exclusive=True, blocking=False) as free:
                yield free
            return
        key8 = key or label_key8(name)
        candidates = sorted(self._locks_dir().glob(f"{key8}*.lock")) if key8 else []
        if not candidates:
            yield True
            return
        with self._lock(candidates[0].stem, exclusive=True, blocking=False) as free:
            yield free

    def _discard(self, path: Path) -> None:
        """Rename away, then delete: no reader ever sees a half-deleted folder under its real name."""
        trash = self.root / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _info(self, path: Path) -> RuntimeInfo | None:
        record = read_record(path)
        if record is None or not venv_python(path).exists():
            return None
        try:
            spec = RuntimeSpec(str(record["package"]), tuple(str(c) for c in record.get("constraints", ())))
            requirement = spec.describe()
        except RuntimeUnavailableError:
            requirement = str(record.get("package", "?"))
        last_used_path = path / LAST_USED_FILE
        last_used = _iso_from_timestamp(last_used_path.stat().st_mtime) if last_used_path.exists() else None
        return RuntimeInfo(
            key=str(record.get("key", "")),
            requirement=requirement,
            lock_hash=str(record.get("lock_hash", "")),
            size_bytes=folder_size(path),
            built_at=str(record.get("built_at", "")),
            last_used=last_used,
            path=path,
        )

    def _leftover_info(self, path: Path, key: str) -> RuntimeInfo:
        try:
            mtime: float | None = path.stat().st_mtime
        except OSError:
            mtime = None
        return RuntimeInfo(
            key=key,
            requirement="(incomplete)",
            lock_hash="",
            size_bytes=folder_size(path),
            built_at=_iso_from_timestamp(mtime) if mtime is not None else "",
            last_used=None,
            path=path,
        )

    # ------------------------------------------------------------------ helpers

    def _children(self) -> list[Path]:
        try:
            return [Path(entry.path) for entry in os.scandir(self.root)]
        except FileNotFoundError:
            return []

    def _locks_dir(self) -> Path:
        return self.root / LOCKS_DIR

    @contextmanager
    def _lock(self, key: str, *, exclusive: bool, blocking: bool) -> Iterator[bool]:
        """flock on ``.locks/<key>.lock``; yields False when non-blocking and someone else holds it."""
        self._locks_dir().mkdir(parents=True, exist_ok=True)
        fd = os.open(self._locks_dir() / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            if not blocking:
                operation |= fcntl.LOCK_NB
            try:
                fcntl.flock(fd, operation)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    yield False
                    return
                raise
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)
