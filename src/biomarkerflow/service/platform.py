"""The composition root: one `Platform` per command, API process or demo.

It is built from where the home is, which catalog database to use and how to announce
runtime builds (`PlatformBase`). Every use case is a method, grouped in mixins by what
it serves: processing (`WorkCases`), reports (`ReportCases`), costs and estimates
(`CostCases`), runtimes (`RuntimeCases`), cleanup (`CleanupCases`), paged browsing (`BrowseCases`) and API access
(`AccessCases`: tokens, audit log, work requests). The CLI, the REST API and the demo call these
methods and render what they return; no front door holds logic another one needs.
"""

from __future__ import annotations

from biomarkerflow.service.access import AccessCases
from biomarkerflow.service.browse import BrowseCases
from biomarkerflow.service.cleanup import CleanupCases
from biomarkerflow.service.costs import CostCases
from biomarkerflow.service.environments import RuntimeCases
from biomarkerflow.service.reports import ReportCases
from biomarkerflow.service.work import WorkCases

__all__ = ["Platform"]


class Platform(WorkCases, ReportCases, CostCases, RuntimeCases, CleanupCases, BrowseCases, AccessCases):
    """biomarkerflow as one object: its home, catalog, runtimes and settings, and every use case.

    Example:
        platform = Platform(home="trial/.biomarkerflow")
        platform.scan("trial/studies")
        platform.process()
        print(platform.status().as_json())
    """
