"""A study's result tables: their columns, paged rows, and read-only SQL over them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from biomarkerflow.api.auth import PlatformDep, Reader
from biomarkerflow.catalog.browse import MAX_PAGE

router = APIRouter(tags=["results"])


class SqlRequest(BaseModel):
    sql: str = Field(
        min_length=1, max_length=20_000, examples=['SELECT subject, AVG("wear time") FROM wear GROUP BY 1']
    )


@router.get("/studies/{study}/tables")
def tables(platform: PlatformDep, _: Reader, study: str) -> dict[str, list[str]]:
    """The study's consolidated tables, each with its columns."""
    return platform.tables(study)


@router.get("/studies/{study}/tables/{table}")
def table_rows(
    platform: PlatformDep,
    _: Reader,
    study: str,
    table: str,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """A page of a table's rows."""
    return platform.table_rows(study, table, offset, limit).as_json()


@router.post("/studies/{study}/sql")
def sql(platform: PlatformDep, _: Reader, study: str, body: SqlRequest) -> dict[str, Any]:
    """One read-only SELECT over the study's own tables (nothing else is readable), at most
    10,000 rows and 30 s. Column names with spaces need double quotes."""
    return platform.sql(study, body.sql).as_json()
