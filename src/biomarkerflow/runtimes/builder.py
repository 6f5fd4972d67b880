"""Isolated, cached runtimes: one virtual environment per pinned algorithm-package requirement set.

A study pins the algorithm package it was validated with (SKDH's results differ between versions), so
its jobs must run with exactly that version, whatever biomarkerflow itself has installed. For each
distinct requirement set we build, once, with uv and from the package index, a virtual environment
holding the pinned package, the study's extra constraints and the few libraries the job entrypoint
imports, and keep it under ``<home>/runtimes``:

    <root>/<label>/venv/             the virtual environment (call venv/bin/python directly)
    <root>/<label>/requirements.in   what was asked for
    <root>/<label>/lock.txt          what was resolved, with hashes (its sha256 is the run's lock hash)
    <root>/<label>/runtime.json      written last: its presence means "complete"
    <root>/<label>/last_used         its mtime is the last use (for pruning)
    <root>/.locks/<key>.lock         flock files: one builder per key, prune skips busy keys

A runtime is built in a ``.build-*`` sibling folder and renamed into place only once it passed a
smoke test, so a folder named after a label is either complete or ignored, and a crash leaves only
a ``.build-*`` folder that ``prune`` removes.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from uv import find_uv_bin

from biomarkerflow.errors import RuntimeUnavailableError

JOB_REQUIREMENTS: tuple[str, ...] = (
    "pydantic>=2.7,<3",
    "PyYAML>=6",
    "packaging>=23",
    "pyarrow>=15",
    "fsspec>=2024.2",
    "s3fs>=2024.2",  # jobs read inputs from and write results to s3:// locations
    "pandas>=2",
    "psutil>=5.9",
    "threadpoolctl>=3",
)
"""What biomarkerflow's job entrypoint imports inside a runtime, besides the pinned package."""

RUNTIME_JSON = "runtime.json"
LOCK_FILE = "lock.txt"
REQUIREMENTS_FILE = "requirements.in"
LAST_USED_FILE = "last_used"
_LOCKS_DIR = ".locks"
_BUILD_PREFIX = ".build-"
_TRASH_PREFIX = ".trash-"
_BUILD_NAME = re.compile(r"^\.build-(?P<label>.*-(?P<key8>[0-9a-f]{8}))-(?P<uuid>[0-9a-f]{32})$")
_LOCK_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*(?P<version>[^\s;\\]+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STDERR_TAIL_LINES = 12
_STDERR_TAIL_CHARS = 1500

# Import names of JOB_REQUIREMENTS: a library that installs but does not import with the
# resolved versions (e.g. pyarrow 26 with NumPy 1.x) must fail the build, not every job.
_JOB_IMPORTS = ("pydantic", "yaml", "packaging", "pyarrow", "fsspec", "pandas", "psutil", "threadpoolctl")

# Companion constraints for combinations pip metadata does not express: when a study's
# constraints rule out NumPy 2, pyarrow 26+ (which needs NumPy 2 but does not declare it)
# must be ruled out too.
_COMPANIONS: tuple[tuple[str, str, str], ...] = (("numpy", "2.0", "pyarrow<26"),)

# Run inside the new environment: proves its interpreter starts, the job's libraries import,
# and lists what is really installed.
_SMOKE_TEST = (
    f"import {', '.join(_JOB_IMPORTS)}; "
    "import importlib.metadata as m, json, platform; "
    "print(json.dumps({'python': platform.python_version(), "
    "'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))"
)


def _normalise(requirement: str) -> str:
    """One spelling per requirement (canonical name, packaging's formatting), so equal sets hash equally."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        raise RuntimeUnavailableError(
            f"invalid package requirement {requirement!r}: {exc}",
            hint="Write it like scikit-digital-health==0.17.18 (PEP 508).",
        ) from exc
    parsed.name = canonicalize_name(parsed.name)
    return str(parsed)


def _python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso_from_timestamp(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RuntimeSpec:
    """What a runtime must hold: the study's pinned package plus optional extra constraints.

    Invalid requirement strings are refused at construction, so a bad pin fails before any build.
    """

    package: str
    constraints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _normalise(self.package)
        for constraint in self.constraints:
            _normalise(constraint)

    @property
    def _pinned(self) -> Requirement:
        return Requirement(_normalise(self.package))

    @property
    def pinned_name(self) -> str:
        """The pinned package's canonical name, e.g. scikit-digital-health."""
        return self._pinned.name

    def requirements(self) -> list[str]:
        """Package, then constraints (sorted: their order carries no meaning), then the job's libraries."""
        ordered = [_normalise(self.package)]
        ordered += sorted({_normalise(c) for c in self.constraints})
        ordered += self._companions()
        ordered += [_normalise(r) for r in JOB_REQUIREMENTS]
        return list(dict.fromkeys(ordered))

    def _companions(self) -> list[str]:
        constrained = {Requirement(c).name.lower(): Requirement(c) for c in (self.package, *self.constraints)}
        extra = []
        for name, excluded_version, companion in _COMPANIONS:
            rule = constrained.get(name)
            companion_name = Requirement(companion).name.lower()
            if rule is not None and not rule.specifier.contains(excluded_version) and companion_name not in constrained:
                extra.append(_normalise(companion))
        return extra

    @property
    def key(self) -> str:
        """Identity of the environment: requirements, Python minor version and machine architecture.

        A runtime built for another Python or CPU cannot be reused, so those are part of the key.
        """
        digest = hashlib.sha256()
        for requirement in sorted(self.requirements()):
            digest.update(requirement.encode() + b"\n")
        digest.update(_python_tag().encode() + b"\n")
        digest.update(platform.machine().encode() + b"\n")
        return digest.hexdigest()[:16]

    @property
    def label(self) -> str:
        """Folder name a person can recognise: package, version and a key prefix; safe characters only."""
        pinned = self._pinned
        specs = list(pinned.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "==="):
            version = specs[0].version
        else:
            version = str(pinned.specifier) or "any"
        readable = _UNSAFE.sub("_", f"{pinned.name}-{version}").strip("._-")[:80]
        return f"{readable}-{self.key[:8]}"

    def describe(self) -> str:
        """Human text for messages, e.g. ``scikit-digital-health==0.16.15 (with numpy<2)``."""
        package = _normalise(self.package)
        constraints = sorted({_normalise(c) for c in self.constraints})
        return f"{package} (with {', '.join(constraints)})" if constraints else package


@dataclass(frozen=True)
class BuiltRuntime:
    """A complete runtime on disk: where its interpreter is and exactly what it holds."""

    spec: RuntimeSpec
    path: Path
    python: str
    lock_hash: str
    packages: dict[str, str] = field(hash=False)
    built_at: str

    def version_of(self, package: str) -> str | None:
        """Installed version of a distribution, whatever its spelling (``Scikit_Digital_Health`` too)."""
        wanted = canonicalize_name(package)
        for name, version in self.packages.items():
            if canonicalize_name(name) == wanted:
                return version
        return None


@dataclass(frozen=True)
class RuntimeInfo:
    """One cached runtime as ``runtimes list`` shows it (or a leftover ``prune`` removes)."""

    key: str
    requirement: str
    lock_hash: str
    size_bytes: int
    built_at: str
    last_used: str | None
    path: Path


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
        python = path / "venv" / "bin" / "python"
        record = _read_record(path)
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
            _touch(found.path / LAST_USED_FILE)
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
                    _touch(existing.path / LAST_USED_FILE)
                    return existing
            self._say(f"Building runtime for {spec.describe()} (first use; about a minute)…")
            tmp = self.root / f"{_BUILD_PREFIX}{spec.label}-{uuid.uuid4().hex}"
            try:
                self._build_into(spec, tmp)
                target = self.root / spec.label
                if target.exists() or target.is_symlink():
                    self._discard(target)  # stale, damaged, or replaced by force
                os.rename(tmp, target)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, RuntimeUnavailableError | KeyboardInterrupt | SystemExit):
                    raise
                raise RuntimeUnavailableError(
                    f"cannot build a runtime for {spec.describe()}: {exc}", hint=_hint()
                ) from exc
        built = self.find(spec)
        if built is None:  # pragma: no cover - only if someone deletes it within this instant
            raise RuntimeUnavailableError(f"runtime for {spec.describe()} vanished right after it was built")
        return built

    def _build_into(self, spec: RuntimeSpec, tmp: Path) -> None:
        """Create, resolve, install, smoke-test and describe a runtime in `tmp` (not yet visible)."""
        tmp.mkdir(parents=True)
        venv_python = tmp / "venv" / "bin" / "python"
        # --relocatable: the venv is renamed into place after it is made (its scripts must not
        # carry the build folder's path); we always call venv/bin/python directly anyway.
        self._uv(spec, tmp, ["venv", "--quiet", "--relocatable", "--python", sys.executable, "venv"])
        (tmp / REQUIREMENTS_FILE).write_text("\n".join(spec.requirements()) + "\n")
        # --no-header: the header would carry the build folder's random name, and the lock hash
        # must depend only on what was resolved.
        self._uv(
            spec,
            tmp,
            [
                "pip",
                "compile",
                "--quiet",
                "--no-header",
                "--generate-hashes",
                # The pinned package comes as a published wheel or not at all: a source build
                # needs compilers (SKDH: Fortran), takes minutes and may compute differently
                # per machine. uv then says plainly "has no usable wheels".
                "--only-binary",
                spec.pinned_name,
                "--python",
                str(venv_python),
                REQUIREMENTS_FILE,
                "-o",
                LOCK_FILE,
            ],
        )
        bytecode = ["--compile-bytecode"] if self.compile_bytecode else []
        sync = ["pip", "sync", "--quiet", "--require-hashes", *bytecode, "--python", str(venv_python), LOCK_FILE]
        self._uv(spec, tmp, sync)

        lock_bytes = (tmp / LOCK_FILE).read_bytes()
        installed, python_version = _smoke_test(spec, venv_python)
        packages = _check_against_lock(spec, installed, lock_bytes.decode())

        _touch(tmp / LAST_USED_FILE)
        record = {
            "package": spec.package,
            "constraints": list(spec.constraints),
            "requirements": spec.requirements(),
            "key": spec.key,
            "lock_hash": hashlib.sha256(lock_bytes).hexdigest(),
            "packages": packages,
            "python": python_version,
            "machine": platform.machine(),
            "built_at": _now_iso(),
        }
        partial = tmp / (RUNTIME_JSON + ".part")
        partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(partial, tmp / RUNTIME_JSON)  # last: from here on the folder is complete

    def _uv(self, spec: RuntimeSpec, cwd: Path, args: list[str]) -> None:
        """Run uv in the build folder (so no project config from the caller's cwd applies).

        File names in `args` are relative to the build folder; paths elsewhere must be absolute.
        """
        try:
            result = subprocess.run(
                [find_uv_bin(), *args],
                cwd=cwd,
                env=dict(os.environ),  # uv reads UV_INDEX_URL, proxies, certificates itself
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise RuntimeUnavailableError(
                f"cannot build a runtime for {spec.describe()}: cannot run uv: {exc}",
                hint="Reinstall biomarkerflow; it depends on the uv package for building runtimes.",
            ) from exc
        if result.returncode != 0:
            raise _uv_failure(spec, args, result)

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
            if name == _LOCKS_DIR:
                continue
            if name.startswith(_TRASH_PREFIX):
                # An earlier deletion was interrupted after the rename: finish it.
                removed.append(self._leftover_info(path, key=""))
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            if name.startswith(_BUILD_PREFIX):
                if self._removable_build(path, dry_run):
                    removed.append(self._leftover_info(path, key=_build_key8(name)))
                    if not dry_run:
                        self._discard(path)
                continue
            if name.startswith(".") or not path.is_dir():
                continue
            record = _read_record(path)
            key = str(record.get("key", "")) if record else _label_key8(name)
            if record and key in keep:
                continue
            with self._lock_for_deletion(key, name) as free:
                if not free:
                    continue
                info = self._info(path)
                if info is None:  # half-made or damaged folder under a label: never usable as is
                    if path.exists():
                        removed.append(self._leftover_info(path, key=key))
                        if not dry_run:
                            self._discard(path)
                    continue
                if _last_use(path) > cutoff:
                    continue
                removed.append(info)
                if not dry_run:
                    self._discard(path)
        return removed

    def _removable_build(self, path: Path, dry_run: bool) -> bool:
        """A `.build-*` folder is a leftover when no process holds a lock its builder would hold."""
        key8 = _build_key8(path.name)
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
        key8 = key or _label_key8(name)
        candidates = sorted(self._locks_dir().glob(f"{key8}*.lock")) if key8 else []
        if not candidates:
            yield True
            return
        with self._lock(candidates[0].stem, exclusive=True, blocking=False) as free:
            yield free

    def _discard(self, path: Path) -> None:
        """Rename away, then delete: no reader ever sees a half-deleted folder under its real name."""
        trash = self.root / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _info(self, path: Path) -> RuntimeInfo | None:
        record = _read_record(path)
        if record is None or not (path / "venv" / "bin" / "python").exists():
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
            size_bytes=_size(path),
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
            size_bytes=_size(path),
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
        return self.root / _LOCKS_DIR

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


def _uv_failure(
    spec: RuntimeSpec, args: list[str], result: subprocess.CompletedProcess[str]
) -> RuntimeUnavailableError:
    """The error for a failed uv command: a missing version or package said plainly, else uv's reason."""
    missing = _missing_on_index(result.stderr)
    if missing is not None:
        reason, hint = missing
        return RuntimeUnavailableError(f"cannot build a runtime for {spec.describe()}: {reason}", hint=hint)
    reason = _tail(result.stderr) or _tail(result.stdout) or f"uv {args[0]} exited {result.returncode}"
    return RuntimeUnavailableError(f"cannot build a runtime for {spec.describe()}: {reason}", hint=_hint())


# What uv (0.13) prints when a requirement names a version or a package the index does not have
# (uv says only "No solution found when resolving dependencies", then why).
_NO_SUCH_VERSION = re.compile(
    r"there is no version of (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s,;*]+)(?=[\s,])"
)
_NO_SUCH_PACKAGE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) was not found in the package registry")
_VERSIONS_SHOWN = 5


def _missing_on_index(stderr: str) -> tuple[str, str] | None:
    """(reason, hint) when uv's resolution failed because a pinned version or a package does not exist."""
    text = " ".join(_ANSI.sub("", stderr).split())  # uv wraps long sentences over lines
    version = _NO_SUCH_VERSION.search(text)
    if version is not None:
        return _no_such_version(canonicalize_name(version["name"]), version["version"].rstrip("."))
    package = _NO_SUCH_PACKAGE.search(text)
    if package is not None:
        name = canonicalize_name(package["name"])
        return (
            f"{name} is not on the package index",
            f"Check the spelling of {name} in the study's pipeline.package or pipeline.constraints; "
            "if it comes from a private index, set UV_INDEX_URL (or UV_EXTRA_INDEX_URL) to that index.",
        )
    return None


def _no_such_version(name: str, version: str) -> tuple[str, str]:
    reason = f"{name} {version} does not exist on the package index"
    try:
        available = newest_versions(name)
    except OSError as exc:  # the index answered uv but not us: say what we know
        return reason, f"Look up the versions of {name} on the package index ({exc}), then pin one of them."
    if not available:
        return reason, f"The package index lists no installable version of {name}."
    return (
        f"{reason}; versions available include {', '.join(available)}",
        f"Pin one of these instead (in the study's pipeline.package or pipeline.constraints), "
        f"e.g. {name}=={available[0]}.",
    )


def newest_versions(name: str, count: int = _VERSIONS_SHOWN) -> list[str]:
    """The newest releases of `name` on the index uv uses, newest first.

    Final releases with a wheel for this Python and machine come first (a runtime installs the
    pinned package from a wheel only), then any final release, then pre-releases. Yanked files
    do not count. Raises OSError when no index could be read.
    """
    supported = set(sys_tags())
    releases: dict[Version, bool] = {}  # version -> has a wheel for this interpreter
    for filename, yanked in _index_files(name):
        parsed = _file_version(filename, supported)
        if parsed is not None and not yanked:
            releases[parsed[0]] = releases.get(parsed[0], False) or parsed[1]
    final = [v for v in releases if not (v.is_prerelease or v.is_devrelease)]
    for choice in ([v for v in final if releases[v]], final, list(releases)):
        if choice:
            return [str(v) for v in sorted(choice, reverse=True)[:count]]
    return []


def _index_files(name: str) -> list[tuple[str, bool]]:
    """(file name, yanked) for `name` from every index uv would ask; OSError if none answered."""
    indexes = _index_urls(os.environ)
    if not indexes:
        raise OSError("uv is set to work offline or without an index (UV_OFFLINE, UV_NO_INDEX)")
    files: list[tuple[str, bool]] = []
    errors: list[str] = []
    for index in indexes:
        try:
            files += _project_files(index, name)
        except OSError as exc:
            errors.append(str(exc))
    if errors and not files:
        raise OSError("; ".join(errors))
    return files


def _index_urls(env: Mapping[str, str]) -> list[str]:
    """The Simple-API indexes uv reads by its environment variables (uv.toml settings are not read)."""
    if env.get("UV_OFFLINE") or env.get("UV_NO_INDEX"):
        return []
    extra = [
        entry.split("=", 1)[-1] if "=" in entry.split("://", 1)[0] else entry
        for entry in env.get("UV_INDEX", "").split()
    ]
    extra += env.get("UV_EXTRA_INDEX_URL", "").split()
    default = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL") or "https://pypi.org/simple"
    return [url for url in (*extra, default) if url.startswith(("http://", "https://"))]


_ANCHOR = re.compile(r"<a\s(?P<attributes>[^>]*)>(?P<text>[^<]+)</a>", re.IGNORECASE)
_INDEX_TIMEOUT_SECONDS = 20


def _project_files(index: str, name: str) -> list[tuple[str, bool]]:
    """(file name, yanked) of every file `index` lists for project `name` (PEP 691 JSON or PEP 503 HTML)."""
    parts = urllib.parse.urlsplit(index.rstrip("/") + f"/{name}/")
    # Credentials in the URL (https://user:token@host/simple) go in a header; urllib cannot use them there.
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
        headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"},
    )
    if parts.username:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=_INDEX_TIMEOUT_SECONDS) as response:
            kind = response.headers.get_content_type()
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise OSError(f"{netloc} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise OSError(f"cannot reach {netloc}: {getattr(exc, 'reason', exc)}") from exc
    if kind.endswith("json"):
        try:
            return [(str(f["filename"]), bool(f.get("yanked"))) for f in json.loads(body)["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise OSError(f"{netloc} sent an unreadable project page") from exc
    return [(m["text"].strip(), "data-yanked" in m["attributes"]) for m in _ANCHOR.finditer(body)]


def _file_version(filename: str, supported: set[Tag]) -> tuple[Version, bool] | None:
    """(version, whether it is a wheel for this interpreter) of a distribution file, else None."""
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return version, not tags.isdisjoint(supported)
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1], False
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def _hint() -> str:
    major, minor = sys.version_info.major, sys.version_info.minor
    return (
        f"Check that this version exists on PyPI with a wheel for Python {major}.{minor} on {platform.machine()} "
        "and that its constraints can be met together, or that the package index is reachable; "
        "set UV_INDEX_URL to use a mirror."
    )


_DECORATION = re.compile(r"^[\s×╰─▶│├┬┴┼╭╮╯]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(text: str) -> str:
    """The useful end of uv's output: last lines, without colours, box drawing or blank lines."""
    lines = []
    for raw in _ANSI.sub("", text).splitlines():
        line = _DECORATION.sub("", raw).strip()
        for prefix in ("error: ", "cause: ", "hint: "):
            if line.startswith(prefix):
                line = line[len(prefix) :]
        if line:
            lines.append(line)
    tail = " ".join(lines[-_STDERR_TAIL_LINES:])
    return tail if len(tail) <= _STDERR_TAIL_CHARS else "…" + tail[-_STDERR_TAIL_CHARS:]


def _smoke_test(spec: RuntimeSpec, venv_python: Path) -> tuple[dict[str, str], str]:
    """Start the new interpreter (isolated from PYTHONPATH and user site) and list its distributions."""
    try:
        result = subprocess.run(
            [str(venv_python), "-I", "-c", _SMOKE_TEST], capture_output=True, text=True, check=False, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: its Python does not start: {exc}", hint=_hint()
        ) from exc
    if result.returncode != 0:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: smoke test failed: {_tail(result.stderr)}", hint=_hint()
        )
    try:
        report = json.loads(result.stdout)
        installed: dict[str, str] = {canonicalize_name(str(k)): str(v) for k, v in report["packages"].items()}
        python_version = str(report["python"])
    except (ValueError, KeyError, AttributeError) as exc:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: smoke test printed {result.stdout[-300:]!r}", hint=_hint()
        ) from exc
    pinned = Requirement(_normalise(spec.package))
    version = installed.get(canonicalize_name(pinned.name))
    if version is None or not pinned.specifier.contains(version, prereleases=True):
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: after installing, {pinned.name} is {version or 'missing'}",
            hint=_hint(),
        )
    return installed, python_version


def _check_against_lock(spec: RuntimeSpec, installed: dict[str, str], lock_text: str) -> dict[str, str]:
    """Every pin in the lock must be installed at that version; returns the lock's name -> version."""
    locked = _parse_lock(lock_text)
    wrong = [
        f"{name}=={version} (installed: {installed.get(canonicalize_name(name), 'none')})"
        for name, version in locked.items()
        if installed.get(canonicalize_name(name)) != version
    ]
    if wrong:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: installed packages differ from the lock: "
            + ", ".join(wrong[:5]),
            hint=_hint(),
        )
    return locked


def _parse_lock(text: str) -> dict[str, str]:
    """``name==version`` lines of a uv/pip-compile lock (continuation and comment lines skipped)."""
    packages: dict[str, str] = {}
    for line in text.splitlines():
        match = _LOCK_LINE.match(line)
        if match:
            packages[match["name"]] = match["version"]
    return packages


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((path / RUNTIME_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(k in record for k in ("key", "lock_hash", "packages", "built_at")):
        return None
    if not isinstance(record["packages"], dict):
        return None
    return record


def _touch(path: Path) -> None:
    """Set mtime to now (creating the file if needed, but never its folder)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def _last_use(path: Path) -> float:
    for candidate in (path / LAST_USED_FILE, path / RUNTIME_JSON):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _size(path: Path) -> int:
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


def _build_key8(name: str) -> str:
    match = _BUILD_NAME.match(name)
    return match["key8"] if match else ""


def _label_key8(name: str) -> str:
    tail = name.rsplit("-", 1)[-1]
    return tail if re.fullmatch(r"[0-9a-f]{8}", tail) else ""
