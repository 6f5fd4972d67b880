"""Studies, files, runs, lineage and live workers: what the catalog knows, page by page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from biomarkerflow.api.auth import MAX_ID, PathId, PlatformDep, QueryId, Reader
from biomarkerflow.catalog.browse import MAX_PAGE, FileFilter, RunFilter
from biomarkerflow.errors import NotFoundError
from biomarkerflow.service.browse import file_json, page_json, run_json
from biomarkerflow.service.reports import runner_json

router = APIRouter(tags=["catalog"])

Offset = Annotated[int, Query(ge=0, le=10**9, description="How many matching items to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page (at most {MAX_PAGE}).")]
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="The next page after this file id (the previous page's next_after); "
        "fast at any depth, where a large offset is slow. Replaces offset.",
    ),
]
StateName = Literal[
    "DISCOVERED", "WAITING", "READY", "CLAIMED", "RUNNING", "SUCCEEDED", "EXCLUDED", "FAILED", "STALE", "REMOVED"
]
FILE_CSV_COLUMNS = ("id", "study", "path", "subject", "size", "state", "reason", "error", "attempts", "current_run")


@router.get("/status")
def status(platform: PlatformDep, _: Reader, study: str | None = None) -> dict[str, Any]:
    """The same as `biomarkerflow status --json`: files per state, why they wait or failed, live workers."""
    return platform.status(study).as_json()


@router.get("/studies")
def studies(platform: PlatformDep, _: Reader) -> list[dict[str, Any]]:
    """Every study: files per state, cost so far, last activity."""
    return [overview.as_json() for overview in platform.study_overviews()]


@router.get("/studies/{study}")
def study(platform: PlatformDep, _: Reader, study: str) -> dict[str, Any]:
    """One study: its config, files per state, progress per day, why files wait."""
    return platform.study_detail(study)


@router.get("/studies/{study}/subjects")
def subjects(platform: PlatformDep, _: Reader, study: str) -> list[dict[str, Any]]:
    return platform.subjects(study)


@router.get("/files", response_model=None)
def files(
    platform: PlatformDep,
    _: Reader,
    study: str | None = None,
    state: Annotated[list[StateName] | None, Query(description="One or more states, e.g. state=FAILED")] = None,
    subject: str | None = None,
    reason: Annotated[str | None, Query(max_length=200, description="Part of the waiting reason")] = None,
    error: Annotated[str | None, Query(max_length=200, description="Part of the error")] = None,
    path: Annotated[str | None, Query(max_length=400, description="Part of the file's path")] = None,
    offset: Offset = 0,
    limit: Limit = 100,
    after: After = None,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | StreamingResponse:
    """Files with filters, in id order, paged by `offset` or (deep in a long list) by `after`;
    `format=csv` exports every matching file (not only one page)."""
    where = FileFilter(study, tuple(state or ()), subject, reason, error, path)
    if format == "csv":
        platform.files_page(where, 0, 1)  # unknown study: 404 before the stream starts
        name = f"{study or 'all'}-files.csv"
        return StreamingResponse(
            _files_csv(platform, where),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    page = platform.files_page(where, offset, limit, after)
    return page_json(page, [file_json(f) for f in page.items])


def _files_csv(platform: PlatformDep, where: FileFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FILE_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    after: int | None = 0
    while after is not None:  # pages by id: the last page of a 100k-file export costs what the first did
        page = platform.files_page(where, limit=MAX_PAGE, after=after)
        for record in page.items:
            writer.writerow(file_json(record))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        after = page.next_after


@router.get("/files/{file_id}")
def file(platform: PlatformDep, _: Reader, file_id: PathId) -> dict[str, Any]:
    """One file, its state changes (with why) and its runs."""
    record = platform.catalog.get_file(file_id)
    if record is None:
        from biomarkerflow.errors import NotFoundError

        raise NotFoundError(f"no file with id {file_id}", hint="Files are listed under /api/v1/files.")
    return {
        **file_json(record),
        "events": [
            {"at": at.isoformat(), "from": old, "to": new, "reason": why}
            for at, old, new, why in platform.catalog.events(file_id)
        ],
        "runs": [run_json(r) for r in platform.catalog.runs(file_id=file_id)],
    }


@router.get("/runs")
def runs(
    platform: PlatformDep,
    _: Reader,
    study: str | None = None,
    file_id: QueryId = None,
    subject: str | None = None,
    outcome: Literal["succeeded", "failed", "running", "interrupted", "lost"] | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Runs, newest first, with their metering and cost."""
    page = platform.runs_page(RunFilter(study, file_id, subject, outcome), offset, limit)
    return page_json(page, [run_json(r) for r in page.items])


@router.get("/runs/{run_id}")
def run(platform: PlatformDep, _: Reader, run_id: str) -> dict[str, Any]:
    """A run in full: metering, cost, the estimate made before it and the actual, its attempts."""
    return platform.run_detail(run_id)


@router.get("/runs/{run_id}/lineage")
def run_lineage(platform: PlatformDep, _: Reader, run_id: str) -> dict[str, Any]:
    """Where a run's results came from: input, config, pipeline, runtime, outputs."""
    return platform.run_lineage(run_id)


@router.get(
    "/runs/{run_id}/files/{name}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The file's bytes"}},
)
def run_file(platform: PlatformDep, _: Reader, run_id: str, name: str) -> Response:
    """A file a run wrote beside its tables, e.g. its activity plot `activity.png` (the files
    its lineage lists under result.run_files; nothing else in or outside its folder)."""
    from biomarkerflow.results import writer

    location = platform.run_detail(run_id).get("result_location")
    if not location:
        raise NotFoundError(f"run '{run_id}' has no results", hint="Only succeeded runs wrote files.")
    content, media_type = writer.read_run_file(location, name)
    return Response(content, media_type=media_type, headers=RUN_FILE_HEADERS)


# A page a run wrote (its profile.html) runs in a sandbox: an origin of its own, so its
# scripts can read neither the session cookie nor the dashboard; it loads nothing from
# elsewhere and cannot be framed. Images are unaffected.
RUN_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@router.get("/lineage")
def lineage(
    platform: PlatformDep,
    _: Reader,
    target: Annotated[
        str, Query(min_length=1, max_length=4000, description="A result file or run folder, a table, or an input file")
    ],
) -> dict[str, Any]:
    """Where a result file, a run folder, a table or an input file's results came from (as `lineage --json`)."""
    return platform.lineage(target)


@router.get("/workers")
def workers(platform: PlatformDep, _: Reader) -> list[dict[str, Any]]:
    """The live `process`/`watch` commands (as in `status --json`)."""
    return [runner_json(runner) for runner in platform.live_runners()]
