"""What processing cost, what the next runs will cost, and the cost models behind it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from biomarkerflow.api.auth import PlatformDep, Reader
from biomarkerflow.cost.inputs import RunInputs
from biomarkerflow.units import parse_duration, parse_size

router = APIRouter(tags=["costs"])


@router.get("/costs")
def costs(
    platform: PlatformDep,
    _: Reader,
    by: Literal["study", "pipeline", "subject", "month"] = "study",
    study: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """What runs cost, grouped (as `costs --format json`)."""
    return platform.costs(study, by).as_json()


Machine = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="A machine past runs were made on (`models machines`), or a price table's name.",
    ),
]


@router.get("/studies/{study}/estimate")
def estimate_study(platform: PlatformDep, _: Reader, study: str, machine: Machine = None) -> dict[str, Any]:
    """Predicted cost, duration and memory of every file of the study not processed yet (80% intervals)."""
    return platform.estimate_study(study, machine).as_json()


@router.get("/estimate")
def estimate_run(
    platform: PlatformDep,
    _: Reader,
    pipeline: Annotated[str, Query(min_length=1, max_length=200, examples=["skdh-0.17.18-5c1e0a9b"])],
    input_size: Annotated[str, Query(max_length=40, examples=["2GB"])],
    output_size: Annotated[str | None, Query(max_length=40, examples=["50MB"])] = None,
    duration: Annotated[str | None, Query(max_length=40, examples=["7d"])] = None,
    sample_rate: Annotated[float | None, Query(gt=0, le=1e6)] = None,
    device: Annotated[str | None, Query(max_length=20, examples=["cwa"])] = None,
    machine: Machine = None,
) -> dict[str, Any]:
    """One run of a pipeline with these inputs (as `estimate --pipeline ... --json`)."""
    inputs = RunInputs(
        input_bytes=parse_size(input_size, "input_size"),
        output_bytes=parse_size(output_size, "output_size") if output_size else None,
        recording_seconds=parse_duration(duration, "duration") if duration else None,
        sample_rate_hz=sample_rate,
        device=device.lower().lstrip(".") if device else None,
    )
    return platform.estimate_run(pipeline, inputs, machine).as_json()


@router.get("/models")
def models(platform: PlatformDep, _: Reader, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Every trained cost model version: training window, held-out metrics, status."""
    return [_jsonable(asdict(model)) for model in platform.models(pipeline)]


@router.get("/models/report")
def models_report(platform: PlatformDep, _: Reader, pipeline: str | None = None) -> dict[str, Any]:
    """How good past estimates were, per pipeline and quantity."""
    return platform.estimate_accuracy(pipeline)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in record.items()}
