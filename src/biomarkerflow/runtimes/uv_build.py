"""Building one runtime with uv into a folder that is not yet visible, and explaining uv's failures.

The steps, each in the build folder (so no project configuration of the caller's working
folder applies): create a relocatable virtual environment with biomarkerflow's own Python,
resolve the requirements into a lock with hashes, install exactly the lock, start the new
interpreter once (the smoke test: the job's libraries import, the pinned version is there,
everything in the lock is installed) and write runtime.json last.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from uv import find_uv_bin

from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.runtimes.layout import (
    LAST_USED_FILE,
    LOCK_FILE,
    REQUIREMENTS_FILE,
    RUNTIME_JSON,
    touch,
    venv_python,
)
from biomarkerflow.runtimes.package_index import no_such_version
from biomarkerflow.runtimes.spec import RuntimeSpec, normalise_requirement

# Import names of JOB_REQUIREMENTS: a library that installs but does not import with the
# resolved versions (e.g. pyarrow 26 with NumPy 1.x) must fail the build, not every job.
_JOB_IMPORTS = (
    "pydantic",
    "yaml",
    "packaging",
    "pyarrow",
    "fsspec",
    "pandas",
    "psutil",
    "threadpoolctl",
    "pyinstrument",
)

# Run inside the new environment: proves its interpreter starts, the job's libraries import,
# and lists what is really installed.
_SMOKE_TEST = (
    f"import {', '.join(_JOB_IMPORTS)}; "
    "import importlib.metadata as m, json, platform; "
    "print(json.dumps({'python': platform.python_version(), "
    "'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))"
)

_LOCK_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*(?P<version>[^\s;\\]+)")
_STDERR_TAIL_LINES = 12
_STDERR_TAIL_CHARS = 1500

# What uv (0.13) prints when a requirement names a version or a package the index does not have
# (uv says only "No solution found when resolving dependencies", then why).
_NO_SUCH_VERSION = re.compile(
    r"there is no version of (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s,;*]+)(?=[\s,])"
)
_NO_SUCH_PACKAGE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) was not found in the package registry")
_DECORATION = re.compile(r"^[\s×╰─▶│├┬┴┼╭╮╯]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def build_into(spec: RuntimeSpec, tmp: Path, *, compile_bytecode: bool) -> None:
    """Create, resolve, install, smoke-test and describe a runtime in `tmp` (not yet visible)."""
    tmp.mkdir(parents=True)
    python = venv_python(tmp)
    # --relocatable: the venv is renamed into place after it is made (its scripts must not
    # carry the build folder's path); we always call venv/bin/python directly anyway.
    run_uv(spec, tmp, ["venv", "--quiet", "--relocatable", "--python", sys.executable, "venv"])
    (tmp / REQUIREMENTS_FILE).write_text("\n".join(spec.requirements()) + "\n")
    _lock_requirements(spec, tmp, python)
    bytecode = ["--compile-bytecode"] if compile_bytecode else []
    sync = ["pip", "sync", "--quiet", "--require-hashes", *bytecode, "--python", str(python), LOCK_FILE]
    run_uv(spec, tmp, sync)

    lock_bytes = (tmp / LOCK_FILE).read_bytes()
    installed, python_version = _smoke_test(spec, python)
    packages = _check_against_lock(spec, installed, lock_bytes.decode())

    touch(tmp / LAST_USED_FILE)
    record = {
        "package": spec.package,
        "constraints": list(spec.constraints),
        "requirements": spec.requirements(),
        "key": spec.key,
        "lock_hash": hashlib.sha256(lock_bytes).hexdigest(),
        "packages": packages,
        "python": python_version,
        "machine": platform.machine(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    partial = tmp / (RUNTIME_JSON + ".part")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(partial, tmp / RUNTIME_JSON)  # last: from here on the folder is complete


def _lock_requirements(spec: RuntimeSpec, tmp: Path, python: Path) -> None:
    """Resolve requirements.in into lock.txt, with hashes."""
    # --no-header: the header would carry the build folder's random name, and the lock hash
    # must depend only on what was resolved.
    run_uv(
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
            str(python),
            REQUIREMENTS_FILE,
            "-o",
            LOCK_FILE,
        ],
    )


def run_uv(spec: RuntimeSpec, cwd: Path, args: list[str]) -> None:
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


def build_hint() -> str:
    """The hint of a build that failed for a reason we cannot name more precisely."""
    major, minor = sys.version_info.major, sys.version_info.minor
    return (
        f"Check that this version exists on PyPI with a wheel for Python {major}.{minor} on {platform.machine()} "
        "and that its constraints can be met together, or that the package index is reachable; "
        "set UV_INDEX_URL to use a mirror."
    )


def _uv_failure(
    spec: RuntimeSpec, args: list[str], result: subprocess.CompletedProcess[str]
) -> RuntimeUnavailableError:
    """The error for a failed uv command: a missing version or package said plainly, else uv's reason."""
    missing = _missing_on_index(result.stderr)
    if missing is not None:
        reason, hint = missing
        return RuntimeUnavailableError(f"cannot build a runtime for {spec.describe()}: {reason}", hint=hint)
    reason = _tail(result.stderr) or _tail(result.stdout) or f"uv {args[0]} exited {result.returncode}"
    return RuntimeUnavailableError(f"cannot build a runtime for {spec.describe()}: {reason}", hint=build_hint())


def _missing_on_index(stderr: str) -> tuple[str, str] | None:
    """(reason, hint) when uv's resolution failed because a pinned version or a package does not exist."""
    text = " ".join(_ANSI.sub("", stderr).split())  # uv wraps long sentences over lines
    version = _NO_SUCH_VERSION.search(text)
    if version is not None:
        return no_such_version(canonicalize_name(version["name"]), version["version"].rstrip("."))
    package = _NO_SUCH_PACKAGE.search(text)
    if package is not None:
        name = canonicalize_name(package["name"])
        return (
            f"{name} is not on the package index",
            f"Check the spelling of {name} in the study's pipeline.package or pipeline.constraints; "
            "if it comes from a private index, set UV_INDEX_URL (or UV_EXTRA_INDEX_URL) to that index.",
        )
    return None


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


def _smoke_test(spec: RuntimeSpec, python: Path) -> tuple[dict[str, str], str]:
    """Start the new interpreter (isolated from PYTHONPATH and user site) and list its distributions."""
    try:
        result = subprocess.run(
            [str(python), "-I", "-c", _SMOKE_TEST], capture_output=True, text=True, check=False, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: its Python does not start: {exc}", hint=build_hint()
        ) from exc
    if result.returncode != 0:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: smoke test failed: {_tail(result.stderr)}",
            hint=build_hint(),
        )
    try:
        report = json.loads(result.stdout)
        installed: dict[str, str] = {canonicalize_name(str(k)): str(v) for k, v in report["packages"].items()}
        python_version = str(report["python"])
    except (ValueError, KeyError, AttributeError) as exc:
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: smoke test printed {result.stdout[-300:]!r}",
            hint=build_hint(),
        ) from exc
    pinned = Requirement(normalise_requirement(spec.package))
    version = installed.get(canonicalize_name(pinned.name))
    if version is None or not pinned.specifier.contains(version, prereleases=True):
        raise RuntimeUnavailableError(
            f"cannot build a runtime for {spec.describe()}: after installing, {pinned.name} is {version or 'missing'}",
            hint=build_hint(),
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
            hint=build_hint(),
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
