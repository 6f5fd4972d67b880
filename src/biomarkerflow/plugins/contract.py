"""The contract every workflow type meets: the few things the platform asks of a kind of data.

A workflow type (SKDH pipelines on wearable recordings, statistics of CSV files, ...) is
one object, found by name through the entry-point group `biomarkerflow.workflow_types`
(see `registry`). The platform never looks inside a type's config section or its results:
it validates the config through the type's model, asks the type for the runtime its jobs
need, for a hash of what decides its numbers, for a plain job plan, and runs that plan in
the runtime through `run_job`. In the spirit of scikit-learn's estimators and SKDH's
`BaseProcess`: a small uniform surface, declared parameters (the pydantic model), and one
shared check suite every type passes (`plugins.checks.check_workflow_type`).

Plugins know nothing of the catalog or the executor: everything here takes and returns
plain values, and a job plan crosses process boundaries as a pickle. A type's module must
import cheaply (no algorithm package, no pandas): the registry imports it to read a
config, and `biomarkerflow status` must start fast. Heavy imports go inside `warm_up`,
`check` and `run_job`, which run in the type's runtime.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from biomarkerflow.errors import JobError

if TYPE_CHECKING:  # pandas only where tables are made: inside the runtime
    import pandas as pd

    from biomarkerflow.config.schema import DataConfig, StudyConfig
    from biomarkerflow.storage.store import FileEntry

__all__ = [
    "QUALITY",
    "RECORDING_SECONDS",
    "SAMPLE_RATE_HZ",
    "Problem",
    "RunOutput",
    "RuntimeRequest",
    "StepError",
    "WorkflowType",
]

# A problem of a config: (dotted field path as written in the YAML, what is wrong and what to do).
Problem = tuple[str, str]

# Facts with these names are cost features (cost/model.py): a type that can tell how long a
# recording is and how densely it is sampled names them so, and one whose files are
# compressed how many bytes its algorithm reads once they are not (work grows with those,
# not with the bytes stored). Other facts are the type's own.
RECORDING_SECONDS = "recording_seconds"
SAMPLE_RATE_HZ = "sample_rate_hz"
UNCOMPRESSED_BYTES = "uncompressed_bytes"
# The fact holding a run's quality measures ({measure: number or None}); see `quality_measures`.
QUALITY = "quality"


def quality_measures_of(facts: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A run's quality measures from its facts; None when it recorded none."""
    measured = facts.get(QUALITY)
    return measured if isinstance(measured, Mapping) else None


@dataclass(frozen=True)
class RuntimeRequest:
    """The algorithm package (pinned) and extra requirements a type's jobs and checks run with.

    `field` is where the study config writes the pin, so a pin no runtime can be built for
    is reported there.
    """

    package: str
    constraints: tuple[str, ...] = ()
    field: str = ""

    @property
    def pinned_version(self) -> str | None:
        """The one exact version `package` pins, None if it allows several (or is not a requirement)."""
        try:
            specifiers = list(Requirement(self.package).specifier)
        except InvalidRequirement:
            return None
        if len(specifiers) != 1 or specifiers[0].operator not in ("==", "===") or "*" in specifiers[0].version:
            return None
        return specifiers[0].version


@dataclass
class RunOutput:
    """What one job produced on one file.

    `tables`: name -> rows; the platform adds study, subject, file and run id columns,
    writes them (Parquet, CSV on request) and consolidates them per study. Rows are a
    DataFrame, or, for a table too large for memory, the path of a Parquet file the job
    wrote (under `scratch`, a folder the platform deletes once the run is written).
    `facts`: small JSON values about the input the run learned (e.g. `recording_seconds`,
    `sample_rate_hz`), kept with the run in the catalog for cost models and reports.
    `steps`: what ran, each `{"step": name, "params": every parameter, defaults included}`,
    for provenance and lineage. `provenance`: further JSON entries for the run's
    provenance.json (e.g. a recording's start and end). `warnings`: every warning raised,
    as text; `notices`: those that changed the results, in words for the user.
    `files`: further files for the run folder (name such as `activity.png` -> a file the
    job wrote under `scratch`), copied in beside the tables and named in the provenance.
    """

    tables: dict[str, pd.DataFrame | Path]
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notices: tuple[str, ...] = ()
    scratch: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


class StepError(JobError):
    """One step of a job failed on this file; `step` names it as the config does.

    The message says in words what is wrong and what to do; the original exception is
    chained as `__cause__` (its traceback is what the run keeps). `notices` are the
    result-changing warnings raised before the failure.
    """

    def __init__(
        self, step: str | None, message: str, *, notices: tuple[str, ...] = (), retryable: bool = False
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.step = step
        self.notices = notices


class WorkflowType(abc.ABC):
    """One kind of processing; subclass it and publish an instance through the entry point.

    Required: `name`, `config_model`, `plan_job`, `run_job`. Everything else has a default
    that suits a type with no pinned package, no header facts and no in-runtime checks.
    """

    #: The value of `workflow:` in a study config, e.g. "skdh".
    name: str
    #: The distribution whose version each run records (provenance, the cost model's key),
    #: e.g. "scikit-digital-health"; None: the type's own code is all that runs.
    package: str | None = None
    #: The top-level config sections `check` reads (the type's own and the core ones it
    #: checks); only these are sent to the runtime, and only their change is checked again.
    checked_sections: tuple[str, ...] = ("data",)
    #: Quality measures a run reports in `RunOutput.facts[QUALITY]` (name -> what it is, with
    #: its unit), which `requirements.quality` gates may name (`min_valid_days: 4`).
    quality_measures: Mapping[str, str] = MappingProxyType({})
    #: The tables a file excluded by a quality gate keeps in the study's consolidated tables
    #: (its quality report); its other tables leave them.
    quality_tables: tuple[str, ...] = ()

    # -- configuration ----------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def config_model(self) -> type[StudyConfig]:
        """The whole study config of this type: a subclass of the core `StudyConfig` adding the
        type's own sections and overriding `data` with a subclass of `DataConfig` (its own data
        keys, its default `include` patterns and `subject` pattern). Strict (unknown keys are
        problems) and frozen, like the core model."""

    def runtime_request(self, config: Mapping[str, Any]) -> tuple[RuntimeRequest | None, list[Problem]]:
        """(the runtime the type's jobs need, problems of the pin itself) for a config as written.

        `config` may be invalid elsewhere; read only what is well-formed. None means no pinned
        package: jobs and checks run in the platform's own environment. Cheap: no package
        imported (it runs before the runtime is looked for).
        """
        return None, []

    def check(self, sections: Mapping[str, Any]) -> list[Problem]:
        """Problems of the `checked_sections` of a config (each as written; None when absent),
        run inside the type's runtime, where its package is importable. Check each section that
        is well-formed on its own, so problems elsewhere do not hide these. Field paths are
        those of the whole config (`pipeline.steps[2].Sleep`)."""
        return []

    def check_files(self, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        """Problems of the study's matched files against its `data` section (e.g. formats by their
        first bytes); runs in the validating process, so it imports no package."""
        return []

    def subject_inputs(self, config: StudyConfig, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        """A subject's metadata (CSV column -> value; None when it has no row) as the job's inputs.

        A corrected value that changes these inputs marks the subject's finished files STALE;
        a column that reaches no input (used only by requirements) does not.
        """
        return {}

    def results_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """JSON values of a stored config (a dict, maybe from an older version) that decide the
        numbers; a change marks the study's finished files STALE. Keys other than `workflow` and
        `metadata_columns`, which the platform adds."""
        return {}

    def cost_identity(self, config: StudyConfig) -> Any:
        """JSON value of what decides the work per file (e.g. the steps and their parameters): with
        the type's name and package version, the pipeline cost models learn per (`cost.identity`)."""
        return None

    # -- files ------------------------------------------------------------------------------

    def header_bytes(self, relative_path: str) -> int:
        """How many first bytes of a file `header_facts` needs; 0: its header tells nothing."""
        return 0

    def header_facts(self, head: bytes, size: int, relative_path: str) -> dict[str, Any]:
        """Facts read cheaply from a file's first `header_bytes` (of `size` bytes in all), before it
        is processed: for cost estimates (`recording_seconds`, `sample_rate_hz`). Empty when the
        header does not say."""
        return {}

    def expand_files(self, config: Mapping[str, Any], entries: list[FileEntry]) -> list[FileEntry]:
        """Stage 1: the study's data files from what its location lists; a type whose files
        name further files (e.g. a table of contents listing downloads) adds them here."""
        return entries

    def views(self) -> dict[str, str]:
        """Views over the study's consolidated tables, for queries: name -> a SELECT (DuckDB).
        A view whose tables a study does not have yet is left out."""
        return {}

    # -- jobs -------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Import what jobs need, once per worker process and before any job is metered."""
        return None  # nothing to import ahead for a type whose jobs are cheap to start

    @abc.abstractmethod
    def plan_job(self, config: StudyConfig) -> Any:
        """Everything a job of this study needs from its config, as plain picklable values (it
        crosses into the runtime's process, possibly another Python and package versions)."""

    @abc.abstractmethod
    def run_job(self, path: Path, plan: Any, inputs: dict[str, Any], *, subject: str | None) -> RunOutput:
        """Process one local file with a plan from `plan_job` and the subject's `subject_inputs`.

        Runs inside the runtime. Raise `StepError` naming the step that failed, or `JobError`
        (retryable or not); any other exception is recorded as final with its traceback.
        """

    def __repr__(self) -> str:
        return f"<workflow type {self.name!r}>"
