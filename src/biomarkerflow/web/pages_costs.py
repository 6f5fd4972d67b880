"""What processing cost (by study, month, subject, pipeline), what the next runs will cost
(with 80% intervals, or plainly why not yet), and the cost models behind the estimates."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from biomarkerflow.cost.estimate import total
from biomarkerflow.cost.inputs import RunInputs
from biomarkerflow.errors import UsageError
from biomarkerflow.service import Platform
from biomarkerflow.service.costs import EstimateReport
from biomarkerflow.units import parse_duration, parse_size
from biomarkerflow.web.charts import cost_chart
from biomarkerflow.web.render import PageRoute, render
from biomarkerflow.web.session import SignedIn, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

GROUPINGS = ("study", "month", "subject", "pipeline")
MOST_GROUPS = 200  # groups shown (the most costly); the API and CLI give every one
ESTIMATES_SHOWN = 100  # a study's per-file estimates shown; the total covers them all
Text = Annotated[str, Query(max_length=200)]


@router.get("/costs")
def costs_page(
    request: Request, viewer: SignedIn, by: Literal["study", "month", "subject", "pipeline"] = "study"
) -> Response:
    report = platform_of(request).costs(None, by).as_json()
    groups = report["groups"]
    if by != "month":
        groups = sorted(groups, key=lambda g: g["cost"], reverse=True)
    shown = groups[:MOST_GROUPS]
    currency = report["total"]["currency"]
    return render(
        request,
        "costs.html",
        by=by,
        groupings=GROUPINGS,
        groups=shown,
        hidden=len(groups) - len(shown),
        total=report["total"],
        cost_spec=cost_chart(shown, by, currency),
    )


def _inputs(input_size: str, duration: str, sample_rate: str, device: str) -> RunInputs:
    """The form's fields as run inputs; UsageError naming the field that is not understood."""
    try:
        rate = float(sample_rate) if sample_rate.strip() else None
    except ValueError:
        raise UsageError(f"sample rate: '{sample_rate}' is not a number of Hz like 50") from None
    if rate is not None and not 0 < rate <= 1e6:
        raise UsageError(f"sample rate: {rate:g} Hz is out of range (0 to 1,000,000)")
    return RunInputs(
        input_bytes=parse_size(input_size, "input size"),
        recording_seconds=parse_duration(duration, "duration") if duration.strip() else None,
        sample_rate_hz=rate,
        device=device.strip().lower().lstrip(".") or None,
    )


def _answer(report: EstimateReport) -> dict[str, Any]:
    """What the page shows of an estimate report: why there is none, the rows, the total."""
    as_json = report.as_json()["estimates"]
    refusals = sorted({e["refusal"] for e in as_json if e["estimate"] is None and e["refusal"]})
    known = [e for e in as_json if e["estimate"] is not None]
    summed = total(report.estimates) if len(report.estimates) > 1 and known else None
    return {
        "heading": report.heading,
        "pipeline": report.pipeline,
        "nothing_left": report.nothing_left,
        "refusals": refusals,
        "rows": known[:ESTIMATES_SHOWN],
        "more": max(0, len(known) - ESTIMATES_SHOWN),
        "total": None
        if summed is None
        else {
            "runs": summed.runs,
            "estimated": summed.estimated,
            "quantities": {q: dict(zip(("low", "point", "high"), v, strict=True)) for q, v in summed.values.items()},
        },
    }


def _estimate(platform: Platform, form: dict[str, str]) -> dict[str, Any] | None:
    if form["study"]:
        return _answer(platform.estimate_study(form["study"]))
    if form["pipeline"]:
        inputs = _inputs(form["input_size"], form["duration"], form["sample_rate"], form["device"])
        return _answer(platform.estimate_run(form["pipeline"], inputs))
    return None


@router.get("/estimate")
def estimate_page(
    request: Request,
    viewer: SignedIn,
    study: Text = "",
    pipeline: Text = "",
    input_size: Text = "",
    duration: Text = "",
    sample_rate: Text = "",
    device: Text = "",
) -> Response:
    """A GET form (it changes nothing): a study's unprocessed files, or one run of a pipeline."""
    platform = platform_of(request)
    form = {
        "study": study.strip(),
        "pipeline": pipeline.strip(),
        "input_size": input_size,
        "duration": duration,
        "sample_rate": sample_rate,
        "device": device,
    }
    problem: str | None = None
    answer: dict[str, Any] | None = None
    try:
        if form["pipeline"] and not form["study"] and not input_size.strip():
            raise UsageError("input size: give the size of the file to estimate, e.g. 2GB")
        answer = _estimate(platform, form)
    except UsageError as exc:
        problem = exc.message
    return render(
        request,
        "estimate.html",
        400 if problem else 200,
        form=form,
        problem=problem,
        answer=answer,
        studies=[record.id for record in platform.catalog.studies()],
        pipelines=sorted({m.pipeline for m in platform.models()}),
    )


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """A model version's held-out metrics: one row per predictor and quantity."""
    challenger = metrics.get("challenger") or {}
    predictors = [
        ("model", challenger.get("model")),
        ("median baseline", challenger.get("median_baseline")),
        ("size-line baseline", challenger.get("size_line_baseline")),
        ("champion then", metrics.get("champion")),
    ]
    return [
        {"predictor": label, "quantity": quantity, **values}
        for label, by_quantity in predictors
        if by_quantity
        for quantity, values in by_quantity.items()
    ]


def _candidates(metrics: dict[str, Any]) -> dict[str, Any]:
    """Every candidate predictor's out-of-fold error side by side, per quantity, and which answers."""
    from biomarkerflow.cost.kinds import LABELS

    candidates = metrics.get("candidates") or {}
    kinds = list(dict.fromkeys(kind for c in candidates.values() for kind in c.get("errors", {})))
    rows = [
        {
            "quantity": quantity,
            "answered_by": LABELS.get(c.get("chosen"), c.get("chosen")),
            "cells": [{"error": c["errors"].get(kind), "chosen": kind == c.get("chosen")} for kind in kinds],
        }
        for quantity, c in candidates.items()
    ]
    return {"headers": [LABELS.get(kind, kind) for kind in kinds], "rows": rows}


@router.get("/models")
def models_page(request: Request, viewer: SignedIn) -> Response:
    from biomarkerflow.cost.pooled import POOLED

    platform = platform_of(request)
    by_pipeline: dict[str, list[dict[str, Any]]] = {}
    for model in platform.models():
        record = asdict(model)
        record["metric_rows"] = _metric_rows(model.metrics or {})
        record["candidates"] = _candidates(model.metrics or {})
        record["reason"] = (model.metrics or {}).get("reason")
        by_pipeline.setdefault(model.pipeline, []).append(record)
    return render(request, "models.html", pipelines=by_pipeline, pooled=POOLED, accuracy=platform.estimate_accuracy())
