"""The studies, a study (live counts, progress, waiting and failed files, workers, rescan and
process buttons) and a run. Every list is a page or an aggregate: a catalog of 100k files
costs a page no more than one of ten."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from biomarkerflow.catalog.browse import FileFilter
from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.service import Platform
from biomarkerflow.service.access import work_request_json
from biomarkerflow.service.browse import StudyOverview, file_json
from biomarkerflow.service.reports import runner_json
from biomarkerflow.web.charts import STATE_COLOURS, progress_chart
from biomarkerflow.web.render import PageRoute, render, segment
from biomarkerflow.web.session import CsrfField, SignedIn, operator, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FAILED_PER_PAGE = 50
SUBJECTS_PER_PAGE = 100
# The order of the progress bar's parts.
BAR_STATES = (
    "SUCCEEDED",
    "EXCLUDED",
    "FAILED",
    "STALE",
    "REMOVED",
    "RUNNING",
    "CLAIMED",
    "READY",
    "WAITING",
    "DISCOVERED",
)
Page = Annotated[int, Query(ge=1, le=10**7)]


def bar(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The parts of a stacked progress bar: state, files, width in percent."""
    total = sum(counts.values())
    return [
        {"state": state, "files": counts[state], "width": round(100 * counts[state] / total, 2)}
        for state in BAR_STATES
        if total and counts.get(state)
    ]


def _overview(platform: Platform, study: str) -> StudyOverview:
    """One study's overview (NotFoundError naming it when there is no such study)."""
    [overview] = platform.study_overviews(study)
    return overview


@router.get("/")
def studies(request: Request, viewer: SignedIn) -> Response:
    overviews = platform_of(request).study_overviews()
    rows = [{"overview": o, "bar": bar(o.counts)} for o in overviews]
    return render(request, "studies.html", rows=rows, states=BAR_STATES, colours=STATE_COLOURS)


def _counts_context(platform: Platform, study: str, overview: dict[str, Any]) -> dict[str, Any]:
    """The live part of a study's page: `overview` is StudyOverview.as_json() (or study_detail)."""
    return {
        "study": study,
        "overview": overview,
        "bar": bar(overview["counts"]),
        "states": BAR_STATES,
        "workers": [runner_json(r) for r in platform.live_runners()],
    }


@router.get("/studies/{study}/counts")
def study_counts(request: Request, viewer: SignedIn, study: str) -> Response:
    """The live part of a study's page (htmx asks for it every 5 s)."""
    platform = platform_of(request)
    context = _counts_context(platform, study, _overview(platform, study).as_json())
    return render(request, "_study_counts.html", **context)


def _failed_files(platform: Platform, study: str, page: int) -> dict[str, Any]:
    """One page of the study's FAILED files with their error and their last run."""
    found = platform.files_page(
        FileFilter(study_id=study, states=("FAILED",)), (page - 1) * FAILED_PER_PAGE, FAILED_PER_PAGE
    )
    last_runs = platform.last_runs([record.id for record in found.items])
    items = [{**file_json(record), "last_run": last_runs.get(record.id)} for record in found.items]
    pages = max(1, -(-found.total // FAILED_PER_PAGE))
    return {"files": items, "total": found.total, "page": page, "pages": pages}


def _asked(platform: Platform, request_id: int | None) -> dict[str, Any] | None:
    if request_id is None:
        return None
    record = platform.work_request(request_id)
    return work_request_json(record) if record else None


@router.get("/studies/{study}")
def study_page(
    request: Request,
    viewer: SignedIn,
    study: str,
    page: Page = 1,
    subjects_page: Page = 1,
    asked: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    platform = platform_of(request)
    detail = platform.study_detail(study)
    subjects = platform.subjects(study)
    start = (subjects_page - 1) * SUBJECTS_PER_PAGE
    return render(
        request,
        "study.html",
        **_counts_context(platform, study, detail),
        detail=detail,
        progress_spec=progress_chart(detail["progress"]),
        failed=_failed_files(platform, study, page),
        subjects=subjects[start : start + SUBJECTS_PER_PAGE],
        subjects_total=len(subjects),
        subjects_page=subjects_page,
        subjects_pages=max(1, -(-len(subjects) // SUBJECTS_PER_PAGE)),
        asked=_asked(platform, asked),
        watching=bool(getattr(request.app.state, "watching", False)),
    )


@router.post("/studies/{study}/work")
def ask_for_work(
    request: Request,
    viewer: SignedIn,
    study: str,
    kind: Annotated[Literal["scan", "process"], Form()],
    csrf: CsrfField = None,
) -> Response:
    """Rescan (every study config) or process this study: recorded, done by a watch service."""
    operator(request, viewer, csrf)
    platform = platform_of(request)
    platform.require_studies([study])  # a rescan is asked for from a study's page: a real one
    record = platform.request_work(kind, study if kind == "process" else None, viewer.name)
    return RedirectResponse(f"/studies/{segment(study)}?asked={record.id}", status_code=303)


@router.get("/runs/{run_id}")
def run_page(request: Request, viewer: SignedIn, run_id: str) -> Response:
    platform = platform_of(request)
    run = platform.run_detail(run_id)
    lineage: dict[str, Any] | None = None
    lineage_problem: str | None = None
    quality: dict[str, Any] | None = None
    if run["outcome"] == "succeeded":
        try:
            lineage = platform.run_lineage(run_id)
            quality = platform.run_quality(run_id)
        except BiomarkerflowError as exc:  # e.g. its run folder is gone: say so, show the rest
            lineage_problem = exc.message
    return render(
        request,
        "run.html",
        run=run,
        estimate=_estimate_rows(run.get("estimate")),
        lineage=lineage,
        lineage_problem=lineage_problem,
        quality=quality,
    )


def _estimate_rows(estimate: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The estimate made before a run against what it took: quantity, low, point, high, actual."""
    if not estimate:
        return []
    actual = estimate.get("actual") or {}
    rows = []
    for quantity, predicted in (estimate.get("predicted") or {}).items():
        if not isinstance(predicted, list):
            continue  # which predictor answered, not a quantity
        low, point, high = (list(predicted) + [None, None, None])[:3]
        value = actual.get(quantity)
        inside = None if value is None or low is None or high is None else low <= value <= high
        rows.append({"quantity": quantity, "low": low, "point": point, "high": high, "actual": value, "inside": inside})
    return rows
