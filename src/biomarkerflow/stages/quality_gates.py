"""Quality gates: whether a processed file's quality keeps it in its study.

A study's `requirements.quality` names limits on the measures its workflow type reports
for every run (`min_valid_days: 4`, `max_clipping_fraction: 0.01`). They are decided after
the run, on what it measured, as GGIR decides inclusion from its part-2 report: a file
outside a limit is EXCLUDED (not FAILED), keeps its quality report in the study's tables,
and leaves the others. Changing the limits decides again from the stored measures: no file
is recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.catalog.models import FileState
from biomarkerflow.plugins.contract import quality_measures_of as measures_of

# Said of a run that has no measures at all (it ran before they were recorded).
NOT_MEASURED = "no quality measures were recorded for its run; process it again to measure them"


@dataclass(frozen=True)
class Gate:
    bound: str  # "min" or "max"
    measure: str
    limit: float

    @property
    def name(self) -> str:
        return f"{self.bound}_{self.measure}"


def gates(written: Mapping[str, float]) -> list[Gate]:
    """`requirements.quality` as gates (names already checked by the config schema)."""
    return [Gate(name[:3], name[4:], float(limit)) for name, limit in written.items()]


def _number(value: float) -> str:
    return f"{value:.4g}"


def exclusion_reason(written: Mapping[str, float], measured: Mapping[str, Any] | None) -> str | None:
    """Why a file with these measures is outside the gates (every gate it fails), None when inside."""
    if not written:
        return None
    if measured is None:
        return f"excluded by quality gates: {NOT_MEASURED}"
    failed: list[str] = []
    for gate in gates(written):
        value = measured.get(gate.measure)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            failed.append(f"{gate.measure} was not measured for this file ({gate.name} {_number(gate.limit)})")
        elif gate.bound == "min" and value < gate.limit:
            failed.append(f"{gate.measure} {_number(value)} is below {gate.name} {_number(gate.limit)}")
        elif gate.bound == "max" and value > gate.limit:
            failed.append(f"{gate.measure} {_number(value)} is above {gate.name} {_number(gate.limit)}")
    return f"excluded by quality gates: {'; '.join(failed)}" if failed else None


@dataclass(frozen=True)
class Regated:
    excluded: int = 0  # files moved out of the study's tables
    included: int = 0  # files moved back in

    @property
    def changed(self) -> int:
        return self.excluded + self.included


def regate(catalog: Catalog, study_id: str, written: Mapping[str, float]) -> Regated:
    """Decide again, from the stored measures, every processed file of a study whose gates
    changed; only files whose verdict changes move (SUCCEEDED <-> EXCLUDED)."""
    excluded = included = 0
    for file, run in catalog.current_results(study_id, excluded=True):
        reason = exclusion_reason(written, measures_of(run.facts))
        was_excluded = file.state == FileState.EXCLUDED.value
        if reason == (file.reason if was_excluded else None):
            continue
        if catalog.set_exclusion(file.id, reason):
            if reason is None:
                included += 1
            elif not was_excluded:
                excluded += 1
    return Regated(excluded=excluded, included=included)
