"""Property-based API tests generated from the OpenAPI schema (schemathesis): whatever a
client sends that the schema allows, or nearly allows, the API never answers with a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from biomarkerflow.api import create_app
from tests.served import processed_study
from tests.test_second_workflow_type import FILES


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A processed csv-stats study behind the API, and an admin token (every endpoint is open to it)."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    platform, _ = processed_study(root, FILES)
    token = platform.create_token("fuzzer", "admin").token
    yield {"app": create_app(platform), "token": token}
    platform.close()


def test_no_request_gets_a_server_error(fuzzed: dict[str, Any]) -> None:
    """Every operation of the schema, 30 generated requests each (schemathesis' strategies
    driven by Hypothesis here: its pytest plugin does not run under this pytest)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed["app"])
    headers = {"Authorization": f"Bearer {fuzzed['token']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: Any) -> None:
            if case.method == "DELETE" and case.path_parameters.get("name") == "fuzzer":
                return  # revoking its own token would only turn every later request into a 401
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])

        no_server_error()
    assert len(statuses) >= 5 * len(operations)  # the strategies did generate requests
    assert {200, 404} <= set(statuses) and any(400 <= s < 500 and s != 404 for s in statuses)
