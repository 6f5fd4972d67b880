"""Use cases about money: estimates before processing and the cost models behind them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biomarkerflow.errors import Category, NotFoundError, UsageError
from biomarkerflow.service.base import PlatformBase

if TYPE_CHECKING:
    from biomarkerflow.catalog.manager import CostModelRecord
    from biomarkerflow.catalog.records import MachineRecord
    from biomarkerflow.cost.estimate import Estimate
    from biomarkerflow.cost.history import RowProblem
    from biomarkerflow.cost.inputs import Machine, WorkflowDescription
    from biomarkerflow.cost.model import RunInputs
    from biomarkerflow.cost.prices import PriceTable
    from biomarkerflow.cost.registry import TrainingResult

__all__ = ["CostCases", "EstimateReport", "ImportReport"]


@dataclass(frozen=True)
class EstimateReport:
    """Estimates for runs not made yet, or why there are none.

    `nothing_left` is set when a study has no file left to estimate (it names the pipeline
    so a caller can offer `estimate --pipeline`).
    """

    heading: str
    pipeline: str
    estimates: list[Estimate]
    nothing_left: int | None = None  # the study's file count when every file is processed or running

    @property
    def category(self) -> Category | None:
        """Not found when no estimate could be made (no model for the pipeline yet)."""
        if self.estimates and all(e.prediction is None for e in self.estimates):
            return Category.NOT_FOUND
        return None

    def as_json(self) -> dict[str, Any]:
        return {"estimates": [_estimate_json(e) for e in self.estimates]}


def _estimate_json(estimate: Estimate) -> dict[str, Any]:
    prediction = estimate.prediction
    return {
        "file": estimate.file,
        "pipeline": estimate.pipeline,
        "inputs": _inputs_json(estimate.inputs),
        "model_version": estimate.model_version,
        "refusal": estimate.refusal,
        "answered_by": prediction.answered_by if prediction else None,
        "borrowed": prediction.basis != "model" if prediction else None,
        "extrapolating": prediction.extrapolating if prediction else None,
        "estimate": None
        if prediction is None
        else {q: dict(zip(("low", "point", "high"), v, strict=True)) for q, v in prediction.values.items()},
    }


def _inputs_json(inputs: RunInputs) -> dict[str, Any]:
    """The inputs as JSON gives them back (the pipeline's steps a list, not a tuple)."""
    plain = asdict(inputs)
    plain["workflow"]["steps"] = list(plain["workflow"]["steps"])
    return plain


@dataclass(frozen=True)
class ImportReport:
    imported: int
    pipelines: int
    problems: list[RowProblem]

    @property
    def category(self) -> Category | None:
        return Category.FAILED if self.problems else None  # the README: exit 1 when rows were skipped


class CostCases(PlatformBase):
    def estimate_study(self, study: str, machine: str | None = None) -> EstimateReport:
        """Cost, duration and peak memory of every file of `study` not processed yet
        (on `machine`: a machine runs were made on, or a price table's name)."""
        from biomarkerflow.cost import estimate as estimating

        self.require_studies([study])
        on, table, where = self._machine(machine)
        name, inputs, file_ids, files = estimating.study_inputs(self.catalog, study)
        if not inputs:
            done = len(self.catalog.files(study))
            return EstimateReport(f"{study}: nothing left", name, [], nothing_left=done)
        inputs = [item.on(on) for item in inputs]
        results = estimating.estimate(self.catalog, name, inputs, table, file_ids=file_ids, files=files)
        heading = f"{study}: {len(inputs)} file(s) not processed yet, pipeline {name}{where}"
        return EstimateReport(heading, name, results)

    def estimate_run(self, pipeline: str, inputs: RunInputs, machine: str | None = None) -> EstimateReport:
        """Cost, duration and peak memory of one run of `pipeline` with these inputs."""
        from biomarkerflow.cost import estimate as estimating

        on, table, where = self._machine(machine)
        results = estimating.estimate(self.catalog, pipeline, [inputs.on(on)], table)
        return EstimateReport(f"one run of {pipeline}{where}", pipeline, results)

    def machines(self) -> list[MachineRecord]:
        """The machines runs were made on, ours and imported (what `estimate --machine` takes)."""
        return self.catalog.machines()

    def _machine(self, name: str | None) -> tuple[Machine | None, PriceTable, str]:
        """(the machine, the price table, words for the heading) that `--machine NAME` means:
        a machine runs were made on (its cores, memory and CPU are features; prices as
        configured), or a price table (priced under it, on the usual machine)."""
        from biomarkerflow.cost.inputs import Machine

        table = self.settings.prices.table()
        if name is None:
            return None, table, ""
        known = {m.name: m for m in self.catalog.machines()}
        if name in known:
            found = known[name]
            return Machine(found.name, found.cores, found.memory_bytes, found.cpu), table, f", on machine {name}"
        tables = self.settings.prices.all_tables()
        if name in tables:
            return None, tables[name], f", priced as {name}"
        listed = ", ".join(sorted(known)[:10]) or "none yet"
        raise NotFoundError(
            f"no machine or price table called '{name}'",
            hint=f"Machines runs were made on: {listed}. Price tables: {', '.join(sorted(tables))}.",
        )

    def train_models(self, pipeline: str | None = None) -> list[TrainingResult]:
        """Train a challenger per pipeline (promoted only if it beats the champion), then
        the pooled model that pipelines with little history borrow from."""
        from biomarkerflow.cost.registry import train_all

        settings = self.settings
        return train_all(
            self.catalog,
            self.home,
            settings.prices.table(),
            settings.notifications.webhook_url,
            pipeline=pipeline,
            descriptions=self._descriptions(),
        )

    def _descriptions(self) -> dict[str, WorkflowDescription]:
        """What each study's current pipeline is (type, steps, package), by pipeline id."""
        from biomarkerflow.cost.identity import study_descriptions

        return study_descriptions(record.config for record in self.catalog.studies())

    def retrain_if_due(self) -> list[TrainingResult]:
        """`watch`'s scheduled retraining (models.retrain_every_hours); [] when not due."""
        from biomarkerflow.catalog.manager import utcnow
        from biomarkerflow.cost.registry import training_due

        every = self.settings.models.retrain_every_hours
        if not training_due(self.catalog.last_training_at(), every, utcnow()):
            return []
        return self.train_models()

    def models(self, pipeline: str | None = None) -> list[CostModelRecord]:
        return self.catalog.cost_models(pipeline)

    def model(self, pipeline: str, version: int | None = None) -> CostModelRecord:
        """One model version (default: the champion, else the newest)."""
        models = self.catalog.cost_models(pipeline)
        if not models:
            raise NotFoundError(
                f"no cost model of pipeline '{pipeline}' in the catalog at {self.catalog_name()}",
                hint="`biomarkerflow models list` shows the pipelines that have models; "
                "`biomarkerflow models train` makes them once a pipeline has 5 runs.",
            )
        if version is None:
            return next((m for m in models if m.status == "champion"), models[-1])
        chosen = [m for m in models if m.version == version]
        if not chosen:
            versions = ", ".join(str(m.version) for m in models)
            raise NotFoundError(
                f"pipeline '{pipeline}' has no model version {version}", hint=f"Its versions: {versions}."
            )
        return chosen[0]

    def estimate_accuracy(self, pipeline: str | None = None) -> dict[str, Any]:
        """How good past estimates were, once their runs finished."""
        from biomarkerflow.cost.reports import estimate_accuracy

        return estimate_accuracy(self.catalog.estimates(pipeline, with_actual=True))

    def import_history(self, csv_file: Path) -> ImportReport:
        """Past runs from other platforms, as history for the cost models; bad rows skipped."""
        from biomarkerflow.cost.history import HistoryFormatError, parse_history_csv

        try:
            parsed = parse_history_csv(csv_file.read_text(encoding="utf-8-sig"))
        except HistoryFormatError as exc:
            raise UsageError(f"{csv_file}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{csv_file}: not UTF-8 text (byte {exc.start})", hint="Save it as UTF-8 CSV.") from exc
        imported = self.catalog.add_imported_runs([(f"{csv_file.name}:{line}", row) for line, row in parsed.rows])
        pipelines = len({row.pipeline for _, row in parsed.rows})
        return ImportReport(imported, pipelines, parsed.problems)
