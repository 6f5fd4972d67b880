"""A processed csv-stats study behind a Platform: what the API, dashboard and fuzz tests serve."""

from __future__ import annotations

from pathlib import Path

from biomarkerflow.service import Platform
from tests.test_second_workflow_type import _workspace

SCOPES = ("read", "operate", "admin")


def processed_study(root: Path, files: dict[str, str], catalog_url: str | None = None) -> tuple[Platform, Path]:
    """Scan and process `files` (S01 and S02 have a site, S03 waits for one); (platform, configs)."""
    configs = _workspace(root, {"S01": "north", "S02": "south"}, files)
    platform = Platform(home=root / ".biomarkerflow", catalog_url=catalog_url)
    platform.scan(str(configs))
    executor = platform.executor("local", 1)
    try:
        platform.process(executor)
    finally:
        executor.close()
    return platform, configs


def tokens_per_scope(platform: Platform) -> dict[str, str]:
    """A token of each scope, named `<scope>-token`."""
    return {scope: platform.create_token(f"{scope}-token", scope).token for scope in SCOPES}
