"""Runtimes: the Python environment a study's jobs run in.

A study pins its algorithm package (`pipeline.package`) and may add constraints
(`pipeline.constraints`, e.g. `numpy<2`). The environment biomarkerflow runs in is
used when it already satisfies all of them; otherwise an isolated environment is
built once with uv and cached (`builder.RuntimeCache`). Either way the caller gets a
`RuntimeRef`: a plain, picklable description an executor starts its workers from.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import biomarkerflow
from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.home import HOME_FOLDER, find_home
from biomarkerflow.runtimes.builder import BuiltRuntime, RuntimeCache, RuntimeSpec
from biomarkerflow.runtimes.process import installed_packages, packages_hash

RUNTIMES_ENV = "BIOMARKERFLOW_RUNTIMES"
CURRENT = "current"


@dataclass(frozen=True)
class RuntimeRef:
    """Where a study's jobs run: the Python to start, and what that environment holds."""

    key: str  # "current", or the isolated runtime's key
    label: str
    python: str
    lock_hash: str
    packages: dict[str, str] = field(compare=False)
    isolated: bool = False
    # Isolated runtimes see biomarkerflow's own code through this folder (PYTHONPATH),
    # so their job entrypoint always matches the platform that sends the jobs.
    pythonpath: str | None = None
    # The pin it was built for: lets another machine (a Dask worker) build the same runtime.
    package: str | None = None
    constraints: tuple[str, ...] = ()

    def version_of(self, package: str) -> str | None:
        wanted = canonicalize_name(package)
        for name, version in self.packages.items():
            if canonicalize_name(name) == wanted:
                return version
        return None

    def worker_environment(self) -> dict[str, str]:
        """Environment variables for a worker process of this runtime."""
        env = dict(os.environ)
        if self.isolated:
            env["PYTHONPATH"] = self.pythonpath or ""
            env["PYTHONNOUSERSITE"] = "1"
            env.pop("PYTHONHOME", None)
        return env

    def provenance(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "isolated": self.isolated,
            "lock_hash": self.lock_hash,
            "python": self.python,
            "packages": dict(sorted(self.packages.items(), key=lambda item: item[0].lower())),
        }


@cache
def current_environment() -> RuntimeRef:
    """The environment biomarkerflow itself runs in."""
    packages = installed_packages()
    return RuntimeRef(
        key=CURRENT,
        label="current environment",
        python=sys.executable,
        lock_hash=packages_hash(packages),
        packages=packages,
    )


def parse_spec(package: str, constraints: Sequence[str] = ()) -> RuntimeSpec:
    """A runtime spec from a study's pin, with a clear error for a malformed requirement."""
    for text in (package, *constraints):
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise RuntimeUnavailableError(
                f"invalid package requirement {text!r}: {exc}",
                hint="Write requirements as on a pip command line, e.g. scikit-digital-health==0.17.18 or numpy<2.",
            ) from exc
    return RuntimeSpec(package=package, constraints=tuple(constraints))


def satisfies(ref: RuntimeRef, spec: RuntimeSpec) -> bool:
    """Whether an environment already holds versions meeting the pin and every constraint."""
    for text in (spec.package, *spec.constraints):
        requirement = Requirement(text)
        installed = ref.version_of(requirement.name)
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def default_cache_root(home: Path) -> Path:
    """Runtimes live under the home unless BIOMARKERFLOW_RUNTIMES names a shared folder.

    Always absolute (a relative setting is taken from the current folder, now): uv and worker
    processes run in other folders, where a relative path would name another place.
    """
    configured = os.environ.get(RUNTIMES_ENV, "").strip()
    return _absolute(Path(configured) if configured else home / "runtimes")


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


class Runtimes:
    """Finds (and builds when needed) the runtime for each pin; one per distinct pin."""

    def __init__(
        self,
        cache_root: Path,
        *,
        progress: Callable[[str], None] | None = None,
        isolate_always: bool = False,
    ) -> None:
        self.cache = RuntimeCache(cache_root, progress=progress)
        self.isolate_always = isolate_always  # for benchmarks: isolated even when the current one fits
        self._specs: dict[str, RuntimeSpec] = {}

    @classmethod
    def for_home(cls, home: Path, progress: Callable[[str], None] | None = None) -> Runtimes:
        """The runtimes of `home` (relative: from the current folder), or the shared BIOMARKERFLOW_RUNTIMES."""
        return cls(default_cache_root(home), progress=progress)

    def for_pin(self, package: str, constraints: Sequence[str] = ()) -> RuntimeRef:
        """The runtime for a pin; raises RuntimeUnavailableError naming the pin if it cannot exist."""
        spec = parse_spec(package, constraints)
        current = current_environment()
        if not self.isolate_always and satisfies(current, spec):
            return current
        return self._ref(self.cache.ensure(spec))

    def ready(self, ref: RuntimeRef) -> RuntimeRef:
        """The same runtime, rebuilt first if its folder was deleted since it was found."""
        if not ref.isolated or Path(ref.python).exists():
            return ref
        built = self.cache.ensure(self._spec_of(ref))
        return self._ref(built)

    def _spec_of(self, ref: RuntimeRef) -> RuntimeSpec:
        spec = self._specs.get(ref.key)
        if spec is None:
            raise RuntimeUnavailableError(f"runtime {ref.label} is unknown to this platform")
        return spec

    def _ref(self, built: BuiltRuntime) -> RuntimeRef:
        self._specs[built.spec.key] = built.spec
        return RuntimeRef(
            key=built.spec.key,
            label=built.spec.describe(),
            python=built.python,
            lock_hash=built.lock_hash,
            packages=built.packages,
            isolated=True,
            pythonpath=str(platform_code_folder(self.cache.root)),
            package=built.spec.package,
            constraints=built.spec.constraints,
        )


def usable_here(ref: RuntimeRef, home: Path | None = None) -> RuntimeRef:
    """`ref` as this machine can run it: a runtime missing here is built from its pin first.

    Built under `home`'s runtimes (default: the home this process would use from its current
    folder, as the CLI finds it) or BIOMARKERFLOW_RUNTIMES.
    """
    if not ref.isolated or Path(ref.python).exists() or ref.package is None:
        return ref
    if home is None and not os.environ.get(RUNTIMES_ENV, "").strip():
        home = find_home(None, os.environ, Path.cwd()).path
    return Runtimes.for_home(home or Path(HOME_FOLDER)).for_pin(ref.package, ref.constraints)


def platform_code_folder(cache_root: Path) -> Path:
    """A folder holding only `biomarkerflow` (a link to this platform's code), for PYTHONPATH.

    The platform's own folder cannot be used: an installed biomarkerflow sits in a
    site-packages full of other versions of NumPy, pandas, ... that the runtime must not see.
    """
    package_dir = Path(biomarkerflow.__file__).resolve().parent
    digest = hashlib.sha256(str(package_dir).encode()).hexdigest()[:12]
    folder = cache_root / ".platform" / digest
    link = folder / "biomarkerflow"
    if not (link.is_symlink() and Path(os.readlink(link)) == package_dir):
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".biomarkerflow.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(package_dir, target_is_directory=True)
        os.replace(temporary, link)  # atomic: concurrent platforms never see a missing link
    return folder
