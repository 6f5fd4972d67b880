"""Runtimes: the Python environment a study's jobs run in.

For now there is one, the current environment, used when it satisfies the study's
pin (validation refuses other pins). Isolated per-version environments plug in here:
an executor starts its workers with `runtime.python`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement

from biomarkerflow.errors import RuntimeUnavailableError


class Runtime(Protocol):
    """Where jobs for one pinned requirement run."""

    @property
    def python(self) -> str: ...

    def version_of(self, package: str) -> str | None: ...


@dataclass(frozen=True)
class CurrentEnvironment:
    """The environment biomarkerflow itself runs in."""

    python: str = sys.executable

    def version_of(self, package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None


def runtime_for(requirement: str) -> Runtime:
    """The runtime for a study's `pipeline.package` pin, e.g. scikit-digital-health==0.17.18."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        raise RuntimeUnavailableError(f"invalid package requirement {requirement!r}: {exc}") from exc
    current = CurrentEnvironment()
    installed = current.version_of(parsed.name)
    if installed is not None and parsed.specifier.contains(installed, prereleases=True):
        return current
    raise RuntimeUnavailableError(
        f"{requirement} is not installed here (installed: {parsed.name} {installed or 'none'})",
        hint="Isolated runtimes for other versions are not available yet: pin the installed version.",
    )
