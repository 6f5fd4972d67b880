"""What a runtime holds: the requirement set asked for (`RuntimeSpec`), a built one, a cached one.

A `RuntimeSpec` is the study's pinned package plus its extra constraints; its `requirements`
add the libraries the job entrypoint imports, and its `key` (those requirements, the Python
minor version and the CPU architecture) names the one environment that satisfies it.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

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
    "pyinstrument>=5",  # per-run profiles (JobSpec.profile): no dependencies of its own
)
"""What biomarkerflow's job entrypoint imports inside a runtime, besides the pinned package."""

# Companion constraints for combinations pip metadata does not express: when a study's
# constraints rule out NumPy 2, pyarrow 26+ (which needs NumPy 2 but does not declare it)
# must be ruled out too.
_COMPANIONS: tuple[tuple[str, str, str], ...] = (("numpy", "2.0", "pyarrow<26"),)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def normalise_requirement(requirement: str) -> str:
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


@dataclass(frozen=True)
class RuntimeSpec:
    """What a runtime must hold: the study's pinned package plus optional extra constraints.

    Invalid requirement strings are refused at construction, so a bad pin fails before any build.
    """

    package: str
    constraints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        normalise_requirement(self.package)
        for constraint in self.constraints:
            normalise_requirement(constraint)

    @property
    def _pinned(self) -> Requirement:
        return Requirement(normalise_requirement(self.package))

    @property
    def pinned_name(self) -> str:
        """The pinned package's canonical name, e.g. scikit-digital-health."""
        return self._pinned.name

    def requirements(self) -> list[str]:
        """Package, then constraints (sorted: their order carries no meaning), then the job's libraries."""
        ordered = [normalise_requirement(self.package)]
        ordered += sorted({normalise_requirement(c) for c in self.constraints})
        ordered += self._companions()
        ordered += [normalise_requirement(r) for r in JOB_REQUIREMENTS]
        return list(dict.fromkeys(ordered))

    def _companions(self) -> list[str]:
        constrained = {Requirement(c).name.lower(): Requirement(c) for c in (self.package, *self.constraints)}
        extra = []
        for name, excluded_version, companion in _COMPANIONS:
            rule = constrained.get(name)
            companion_name = Requirement(companion).name.lower()
            if rule is not None and not rule.specifier.contains(excluded_version) and companion_name not in constrained:
                extra.append(normalise_requirement(companion))
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
        package = normalise_requirement(self.package)
        constraints = sorted({normalise_requirement(c) for c in self.constraints})
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
