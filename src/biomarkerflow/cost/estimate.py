"""Estimates before processing: per run, and the total of a study's files still to run.

An estimate comes from the pipeline's champion model. A pipeline with no model yet (fewer
than 5 runs, or not trained since) borrows from the pooled model, which learned across
pipelines, if pipelines like it (the same workflow type) have history: the estimate says
so, and its interval is wider. Only when neither can answer does it say why instead.
For a catalogued file it knows the size, the file type, and what the workflow type reads
from the file's header (`WorkflowType.header_facts`: e.g. sample rate and recording
length of a device file, from its first few KB: one ranged GET on S3). An estimate can be
asked for a given machine (`--machine`): its cores, memory and CPU model are features.
Inputs outside what the model was trained on are flagged as extrapolation, with wider
intervals. Every estimate given is logged in the catalog with its inputs and which
predictor answered, so that `models report` can later compare it with the real run.

The total's interval adds up the runs' interval ends: errors of one model on one
study's files tend to go the same way, so the total is at least as uncertain as that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from biomarkerflow.catalog.manager import Catalog, FileRecord
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.cost import registry
from biomarkerflow.cost.identity import describe_from_id, study_descriptions, workflow_description
from biomarkerflow.cost.inputs import WorkflowDescription
from biomarkerflow.cost.model import MIN_RUNS, REPORTED, CostModel, Prediction, RunInputs
from biomarkerflow.cost.prices import PriceTable
from biomarkerflow.errors import NotFoundError, StorageError
from biomarkerflow.plugins import registry as workflow_types
from biomarkerflow.plugins.contract import WorkflowType
from biomarkerflow.storage import store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    pipeline: str
    inputs: RunInputs
    prediction: Prediction | None
    refusal: str | None = None
    model_version: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class Total:
    runs: int
    estimated: int
    values: dict[str, tuple[float, float, float]]
    extrapolating: int


def _refusal(catalog: Catalog, pipeline: str) -> str:
    runs = catalog.observation_count(pipeline)
    if runs < MIN_RUNS:
        return (
            f"only {runs} past run(s) of pipeline {pipeline}, and no pipeline like it (same workflow type) "
            f"has history to borrow from; estimates need {MIN_RUNS} runs of its own, or `biomarkerflow models "
            "train` once similar pipelines have run"
        )
    return f"no model of pipeline {pipeline} yet: run `biomarkerflow models train --pipeline {pipeline}`"


def pipeline_description(catalog: Catalog, pipeline: str) -> WorkflowDescription | None:
    """What `pipeline` is: as its runs say (imported histories may), else as the study that
    runs it says, else as its id says (type and package version)."""
    for run in reversed(catalog.observations(pipeline)):
        described = RunInputs.of(run).workflow
        if described.known:
            return described
    current = study_descriptions(record.config for record in catalog.studies())
    return current.get(pipeline) or describe_from_id(pipeline)


def _predict(
    catalog: Catalog, pipeline: str, inputs: Sequence[RunInputs], table: PriceTable
) -> tuple[int, int, list[Prediction]] | None:
    """(model id, version, predictions) from the pipeline's champion, else borrowed; None: neither answers."""
    found = registry.champion(catalog, pipeline)
    if found is not None:
        record, model = found
        return record.id, record.version, model.predict(inputs, table)
    pooled = registry.pooled_champion(catalog)
    if pooled is None or not inputs:
        return None
    record, borrowing = pooled
    workflow = inputs[0].workflow if inputs[0].workflow.known else pipeline_description(catalog, pipeline)
    if workflow is None or not borrowing.similar(workflow, leaving_out=pipeline):
        return None
    described = [item.of_workflow(workflow) for item in inputs]
    return record.id, record.version, borrowing.predict(described, table, pipeline=pipeline)


def estimate(
    catalog: Catalog,
    pipeline: str,
    inputs: Sequence[RunInputs],
    table: PriceTable,
    *,
    file_ids: Sequence[int | None] | None = None,
    files: Sequence[str | None] | None = None,
) -> list[Estimate]:
    """Estimates for runs of `pipeline` with these inputs; each one logged in the catalog."""
    answered = _predict(catalog, pipeline, inputs, table)
    names = list(files) if files is not None else [None] * len(inputs)
    if answered is None:
        reason = _refusal(catalog, pipeline)
        return [Estimate(pipeline, item, None, reason, file=name) for item, name in zip(inputs, names, strict=True)]
    model_id, version, predictions = answered
    ids = list(file_ids) if file_ids is not None else [None] * len(inputs)
    catalog.log_estimates(
        [
            {
                "pipeline": pipeline,
                "model_id": model_id,
                "file_id": file_id,
                "inputs": asdict(item),
                "predicted": {q: list(p.values[q]) + [p.extrapolating] for q in REPORTED}
                | {"answered_by": p.answered_by},
            }
            for item, p, file_id in zip(inputs, predictions, ids, strict=True)
        ]
    )
    return [
        Estimate(pipeline, item, p, model_version=version, file=name)
        for item, p, name in zip(inputs, predictions, names, strict=True)
    ]


def total(estimates: Sequence[Estimate]) -> Total:
    """Sum of the estimated runs (low, point, high) per quantity; peak memory is the largest."""
    known = [e.prediction for e in estimates if e.prediction is not None]
    values: dict[str, tuple[float, float, float]] = {}
    for quantity in REPORTED:
        parts = [p.values[quantity] for p in known] or [(0.0, 0.0, 0.0)]
        # Runs add up in cost and time; peak memory is that of the largest one.
        combine = max if quantity == "peak_rss_bytes" else sum
        low, point, high = (combine(part[i] for part in parts) for i in range(3))
        values[quantity] = (low, point, high)
    return Total(
        runs=len(estimates),
        estimated=len(known),
        values=values,
        extrapolating=sum(p.extrapolating for p in known),
    )


def file_inputs(file: FileRecord, workflow_type: WorkflowType | None = None) -> RunInputs:
    """What is known of a catalogued file before it runs: its size and file type, and the facts
    its workflow type reads from its header (e.g. sample rate and recording length).

    `workflow_type` defaults to the default type (callers from before there were types).
    """
    workflow_type = workflow_type or workflow_types.get(workflow_types.DEFAULT)
    device = PurePosixPath(file.relative_path).suffix.lower().lstrip(".") or None
    facts: dict[str, Any] = {}
    wanted = workflow_type.header_bytes(file.relative_path)
    if wanted > 0:
        try:
            facts = workflow_type.header_facts(store.read_head(file.url, wanted), file.size, file.relative_path)
        except StorageError as exc:
            # An unreadable header costs the estimate some precision, not the estimate.
            logger.info("estimating %s from its size alone: %s", file.url, exc)
    return RunInputs.of_facts(input_bytes=file.size, device=device, facts=facts)


def files_inputs(files: Sequence[FileRecord], workflow_type: WorkflowType | None = None) -> list[RunInputs]:
    """`file_inputs` of many files; their headers are read side by side (one GET each on S3)."""
    if len(files) < 2:
        return [file_inputs(f, workflow_type) for f in files]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda f: file_inputs(f, workflow_type), files))


def study_inputs(catalog: Catalog, study_id: str) -> tuple[str, list[RunInputs], list[int | None], list[str | None]]:
    """(the study's pipeline, the inputs of its files not processed yet, their ids, their paths).

    What `estimate --study` prices; raises NotFoundError for a study the catalog lacks.
    """
    record = catalog.get_study(study_id)
    if record is None:
        raise NotFoundError(f"no study '{study_id}' in the catalog", hint="See `biomarkerflow status`.")
    config = StudyConfig.model_validate(record.config)
    files = [f for f in catalog.files(study_id) if f.state not in ("SUCCEEDED", "EXCLUDED", "RUNNING")]
    pipeline, workflow = workflow_description(config)
    inputs = [item.of_workflow(workflow) for item in files_inputs(files, workflow_types.get(config.workflow))]
    return pipeline, inputs, [f.id for f in files], [f.relative_path for f in files]


class MemoryRequests:
    """What the scheduler reserves per job: the upper end of the champion model's 80% interval
    of peak memory, for pipelines that have a champion; None (the size rule) otherwise, and
    for files outside what the model learned from, where a job killed for want of memory
    costs more than a generous reservation."""

    def __init__(self, catalog: Catalog, pipelines: Sequence[str], table: PriceTable) -> None:
        self._table = table
        self._models: dict[str, CostModel] = {}
        for pipeline in set(pipelines):
            found = registry.champion(catalog, pipeline)
            if found is not None:
                self._models[pipeline] = found[1]

    def request(self, pipeline: str, file: FileRecord, workflow_type: WorkflowType | None = None) -> int | None:
        model = self._models.get(pipeline)
        if model is None:
            return None  # and no header read: nothing to spend on jobs without a model
        (prediction,) = model.predict([file_inputs(file, workflow_type)], self._table)
        return None if prediction.extrapolating else int(prediction.values["peak_rss_bytes"][2])
