"""The catalog: ORM models, migrations, and the only code that changes study, file and run state.

`Catalog` (facade.py) is the one entry point; behind it, one module per noun, all over
the shared database plumbing of connection.py:

    records.py     the frozen records every section returns (and cost/ reads)
    connection.py  engine, one transaction per operation, reconnecting after a lost connection
    studies.py     studies and their configs; marking results STALE
    files.py       files and their states: registering, gating, lookups, the compare-and-set
    claims.py      claims, leases and heartbeats on files; giving files back
    runs.py        starting and finishing runs; a run's metrics <-> its row
    metadata.py    subject metadata
    runners.py     the rows of running `process` / `watch` commands (runners) and their heartbeats
    coststore.py   run history, cost models and estimates for cost/
    status.py      what `status` shows
    models.py, schema.py, migrations/   the tables and how a database gets to them

The catalog never imports `cost` or anything above it (tests/test_layers.py).
"""

from biomarkerflow.catalog.connection import sqlalchemy_url, utcnow
from biomarkerflow.catalog.facade import Catalog
from biomarkerflow.catalog.records import (
    Charge,
    CostModelRecord,
    CostRow,
    EstimateRecord,
    FailureDetail,
    FileRecord,
    Observation,
    RegisterInfo,
    RunMetrics,
    RunnerRecord,
    RunRecord,
    StudyRecord,
    StudyStatus,
)

__all__ = [
    "Catalog",
    "Charge",
    "CostModelRecord",
    "CostRow",
    "EstimateRecord",
    "FailureDetail",
    "FileRecord",
    "Observation",
    "RegisterInfo",
    "RunMetrics",
    "RunRecord",
    "StudyRecord",
    "StudyStatus",
    "RunnerRecord",
    "sqlalchemy_url",
    "utcnow",
]
