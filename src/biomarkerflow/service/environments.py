"""Use cases about runtimes: the isolated environments pinned package versions run in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biomarkerflow.errors import BiomarkerflowError, UsageError
from biomarkerflow.service.base import PlatformBase

if TYPE_CHECKING:
    from biomarkerflow.runtimes.builder import RuntimeInfo, RuntimeSpec

__all__ = ["BuildOutcome", "RuntimeCases", "RuntimeListing"]


@dataclass(frozen=True)
class RuntimeListing:
    """Every cached runtime, and the studies in the catalog pinning each (by runtime key)."""

    root: Path
    entries: list[RuntimeInfo]
    users: dict[str, list[str]]

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "key": e.key,
                "requirement": e.requirement,
                "lock_hash": e.lock_hash,
                "size_bytes": e.size_bytes,
                "built_at": e.built_at,
                "last_used": e.last_used,
                "path": str(e.path),
                "studies": self.users.get(e.key, []),
            }
            for e in self.entries
        ]


@dataclass(frozen=True)
class BuildOutcome:
    """One pin's build: `current` (the installed environment satisfies it), `ready` or `failed`."""

    spec: RuntimeSpec
    state: str
    lock_hash: str | None = None
    path: Path | None = None
    error: BiomarkerflowError | None = None


class RuntimeCases(PlatformBase):
    def pinned_specs(self) -> dict[str, RuntimeSpec]:
        """The runtime spec of every study in the catalog, by study id."""
        from biomarkerflow.stages.types import runtime_spec

        specs: dict[str, RuntimeSpec] = {}
        for study in self.catalog.studies():
            spec = runtime_spec(study.config)
            if spec is not None:  # None: the study runs in the platform's own environment
                specs[study.id] = spec
        return specs

    def list_runtimes(self) -> RuntimeListing:
        users: dict[str, list[str]] = {}
        for study_id, spec in self.pinned_specs().items():
            users.setdefault(spec.key, []).append(study_id)
        return RuntimeListing(self.runtimes.cache.root, self.runtimes.cache.entries(), users)

    def specs_of(self, configs: list[str], package: str | None, constraints: list[str]) -> list[RuntimeSpec]:
        """The pins of these study configs (files or folders) and of `package`, each once."""
        from biomarkerflow.config.loader import load_study_config
        from biomarkerflow.config.validate import CONFIG_SUFFIXES
        from biomarkerflow.runtimes.environment import parse_spec
        from biomarkerflow.stages.types import runtime_spec

        specs = [parse_spec(package, constraints)] if package else []
        for path in configs:
            folder = Path(path)
            files = sorted(p for p in folder.iterdir() if p.suffix in CONFIG_SUFFIXES) if folder.is_dir() else [folder]
            for file in files:
                spec = runtime_spec(load_study_config(file).config)
                if spec is not None:
                    specs.append(spec)
        if not specs:
            raise UsageError("name study configs or --package", hint="e.g. `biomarkerflow runtimes build studies/`")
        return list({s.key: s for s in specs}.values())

    def build_runtime(self, spec: RuntimeSpec, *, force: bool = False) -> BuildOutcome:
        """Build (or find) the runtime of one pin; a failure is returned, not raised."""
        from biomarkerflow.runtimes.environment import current_environment, satisfies

        if satisfies(current_environment(), spec) and not force:
            return BuildOutcome(spec, "current")
        try:
            built = self.runtimes.cache.build(spec, force=force) if force else self.runtimes.cache.ensure(spec)
        except BiomarkerflowError as exc:
            return BuildOutcome(spec, "failed", error=exc)
        return BuildOutcome(spec, "ready", lock_hash=built.lock_hash, path=built.path)

    def prune_runtimes(self, *, unused_days: float = 0.0, dry_run: bool = False) -> list[RuntimeInfo]:
        """Remove runtimes no study in the catalog pins (and half-made builds); what was removed."""
        keep = {spec.key for spec in self.pinned_specs().values()}
        return self.runtimes.cache.prune(keep, unused_days=unused_days, dry_run=dry_run)
