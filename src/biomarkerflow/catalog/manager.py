"""The catalog's old single module, kept so `from biomarkerflow.catalog.manager import ...` still works.

`Catalog` now lives in facade.py, its sections in one module per noun and the records in
records.py (see the package docstring); new code imports from `biomarkerflow.catalog`.
"""

from biomarkerflow.catalog.claims import CLAIM_ROUNDS
from biomarkerflow.catalog.connection import RECONNECT_DELAYS, sqlalchemy_url, utcnow
from biomarkerflow.catalog.facade import Catalog
from biomarkerflow.catalog.files import ACTIVE_STATES
from biomarkerflow.catalog.records import (
    CostModelRecord,
    EstimateRecord,
    FailureDetail,
    FileRecord,
    RegisterInfo,
    RunMetrics,
    RunnerRecord,
    RunRecord,
    StudyRecord,
    StudyStatus,
)

__all__ = [
    "ACTIVE_STATES",
    "CLAIM_ROUNDS",
    "RECONNECT_DELAYS",
    "Catalog",
    "CostModelRecord",
    "EstimateRecord",
    "FailureDetail",
    "FileRecord",
    "RegisterInfo",
    "RunMetrics",
    "RunRecord",
    "StudyRecord",
    "StudyStatus",
    "RunnerRecord",
    "sqlalchemy_url",
    "utcnow",
]
