"""The `gc` use case: remove what killed work left behind, never what a live job or the
tables in force use (see results/cleanup.py and the runtimes' prune)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.results import cleanup
from biomarkerflow.service.base import PlatformBase

__all__ = ["CleanupCases", "GcReport"]

# Outcomes of runs whose folders are results: superseded succeeded runs stay (earlier results
# are kept under their run ids); a folder of any other finished run (killed, interrupted, or
# failed after it published) is no result.
KEPT_OUTCOMES = ("succeeded", "running")


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    leftovers: list[cleanup.Leftover] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a study whose output could not be cleaned

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.leftovers)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed" if not self.dry_run else "would_remove": [
                {"kind": item.kind, "location": item.url, "bytes": item.bytes} for item in self.leftovers
            ],
            "bytes": self.bytes,
            "problems": self.problems,
        }


class CleanupCases(PlatformBase):
    def gc(self, *, dry_run: bool = False, now: float | None = None) -> GcReport:
        """Remove temporary publish folders, run folders without `_SUCCESS` or of abandoned
        runs, expired snapshots of every study's tables, and half-made runtime builds; what was
        (or would be) removed. `now` (unix seconds) is when ages are measured from."""
        runs = self.catalog.runs()
        current = {file.current_run_id for file in self.catalog.files()}
        running = {run.id for run in runs if run.outcome == "running"}
        abandoned = {run.id for run in runs if run.outcome not in KEPT_OUTCOMES and run.id not in current}
        found: list[cleanup.Leftover] = []
        problems: list[str] = []
        for study in self.catalog.studies():
            try:
                items = cleanup.leftovers(study.output_location, running, abandoned, now)
                if not dry_run:
                    cleanup.remove(items)
            except BiomarkerflowError as exc:  # one study's store being down never stops the others
                problems.append(f"{study.id}: {exc.message}")
                continue
            found += items
        # Half-made builds only: every complete runtime is kept (`runtimes prune` removes unused ones).
        for build in self.runtimes.cache.prune(set(), unused_days=math.inf, dry_run=dry_run):
            found.append(cleanup.Leftover("half-made runtime build", str(build.path), build.size_bytes or 0))
        return GcReport(dry_run=dry_run, leftovers=found, problems=problems)
