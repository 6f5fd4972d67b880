"""The REST API (issue 16): every endpoint behind a token of the right scope, the same
shapes as the CLI's --json, paging and CSV export, the audit log, and work requests that a
watch service performs. Against a real processed study (the csv-stats workflow type)."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from biomarkerflow.api import create_app
from biomarkerflow.service import Platform, Watcher
from biomarkerflow.service.access import token_hash
from tests.databases import BACKENDS, catalog_url
from tests.served import processed_study, tokens_per_scope
from tests.test_second_workflow_type import FILES, STUDY, _csv

BAD_FILE = "S01_broken.csv"


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A processed csv-stats study (succeeded, waiting and failed files) and a token per scope."""
    root = tmp_path_factory.mktemp("api")
    files = {**FILES, BAD_FILE: "a,b\n1,2\n"}
    with catalog_url(request.param, root / "home") as url:
        platform, configs = processed_study(root, files, url)  # S03 has no site: waits
        tokens = tokens_per_scope(platform)
        client = TestClient(create_app(platform))
        yield {"client": client, "platform": platform, "tokens": tokens, "configs": configs, "root": root}
        platform.close()


def _auth(served: dict[str, Any], scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served['tokens'][scope]}"}


def _get(served: dict[str, Any], url: str, scope: str = "read", **params: Any) -> Any:
    response = served["client"].get(url, headers=_auth(served, scope), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_needs_no_token_and_everything_else_does(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        if path == "/healthz":
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            response = client.request(method.upper(), concrete, json={})
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["error"]
            checked += 1
    assert checked >= 20
    wrong = client.get("/api/v1/studies", headers={"Authorization": "Bearer bmf_not-a-real-token"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "needed"),
    [
        ("POST", "/api/v1/work", {"kind": "scan"}, "operate"),
        ("GET", "/api/v1/tokens", None, "admin"),
        ("POST", "/api/v1/tokens", {"name": "x", "scope": "read"}, "admin"),
        ("GET", "/api/v1/audit", None, "admin"),
    ],
)
def test_too_little_scope_is_403_naming_the_scope_needed(
    served: dict[str, Any], method: str, path: str, body: Any, needed: str
) -> None:
    weaker = {"operate": ["read"], "admin": ["read", "operate"]}[needed]
    for scope in weaker:
        response = served["client"].request(method, path, json=body, headers=_auth(served, scope))
        assert response.status_code == 403, response.text
        assert f"this needs {needed}" in response.json()["error"]


def test_study_list_and_detail_count_the_files_by_state(served: dict[str, Any]) -> None:
    [study] = _get(served, "/api/v1/studies")
    assert study["study"] == STUDY
    assert study["counts"]["SUCCEEDED"] == 4  # S01 a/b, S02 a/b
    assert study["counts"]["WAITING"] == 2  # S03 has no site
    assert study["counts"]["FAILED"] == 1  # the CSV without column x
    assert study["files"] == len(FILES) + 1
    assert study["last_activity"] is not None
    detail = _get(served, f"/api/v1/studies/{STUDY}")
    assert detail["counts"] == study["counts"]
    assert detail["config"]["stats"]["columns"] == ["x"]
    [waiting] = detail["waiting_reasons"]
    assert waiting == {"files": 2, "reason": "no metadata row for subject 'S03'"}
    assert {p["state"] for p in detail["progress"]} == {"SUCCEEDED", "FAILED"}
    assert sum(p["files"] for p in detail["progress"] if p["state"] == "SUCCEEDED") == 4


def test_status_is_the_cli_json(served: dict[str, Any]) -> None:
    assert _get(served, "/api/v1/status") == served["platform"].status().as_json()


def test_files_filter_page_and_export(served: dict[str, Any]) -> None:
    failed = _get(served, "/api/v1/files", study=STUDY, state="FAILED")
    assert failed["total"] == 1
    [broken] = failed["items"]
    assert broken["path"] == BAD_FILE and "no column x" in broken["error"]
    assert _get(served, "/api/v1/files", error="NO COLUMN")["total"] == 1  # any case, a part
    assert _get(served, "/api/v1/files", reason="METADATA ROW", state="WAITING")["total"] == 2
    assert _get(served, "/api/v1/files", subject="S02")["total"] == 2
    both = _get(served, "/api/v1/files", state=["FAILED", "WAITING"])
    assert both["total"] == 3
    first = _get(served, "/api/v1/files", study=STUDY, limit=3, offset=0)
    second = _get(served, "/api/v1/files", study=STUDY, limit=3, offset=3)
    assert first["total"] == second["total"] == len(FILES) + 1
    assert not {f["id"] for f in first["items"]} & {f["id"] for f in second["items"]}
    # Paging by id (`after` = the previous page's next_after) walks the same list in the same order.
    walked, after = [], 0
    while after is not None:
        page = _get(served, "/api/v1/files", study=STUDY, limit=2, after=after)
        walked += [f["id"] for f in page["items"]]
        after = page.get("next_after")
    everything = _get(served, "/api/v1/files", study=STUDY, limit=100)
    assert walked == [f["id"] for f in everything["items"]] and "next_after" not in everything
    # `%` and `_` in a filter are literal characters, not LIKE wildcards.
    assert _get(served, "/api/v1/files", error="%")["total"] == 0
    exported = served["client"].get(
        "/api/v1/files", params={"study": STUDY, "format": "csv"}, headers=_auth(served, "read")
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(FILES) + 1
    assert {r["state"] for r in rows} == {"SUCCEEDED", "WAITING", "FAILED"}
    bad = served["client"].get("/api/v1/files", params={"state": "DONE"}, headers=_auth(served, "read"))
    assert bad.status_code == 422


def test_csv_export_reads_page_after_page(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from biomarkerflow.api import routes_catalog

    monkeypatch.setattr(routes_catalog, "MAX_PAGE", 2)  # the export's page size: several pages here
    exported = served["client"].get(
        "/api/v1/files", params={"study": STUDY, "format": "csv"}, headers=_auth(served, "read")
    )
    ids = [int(row["id"]) for row in csv.DictReader(io.StringIO(exported.text))]
    assert ids == [f["id"] for f in _get(served, "/api/v1/files", study=STUDY)["items"]]
    assert len(ids) == len(FILES) + 1


def test_unknown_things_are_404_with_a_hint(served: dict[str, Any]) -> None:
    for path in ("/api/v1/studies/nope", "/api/v1/runs/nope", "/api/v1/files/999999", "/api/v1/studies/nope/tables"):
        response = served["client"].get(path, headers=_auth(served, "read"))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]


def test_runs_and_a_run_in_full(served: dict[str, Any]) -> None:
    runs = _get(served, "/api/v1/runs", study=STUDY)
    assert runs["total"] == 5  # 4 succeeded, 1 failed (not retryable: a missing column)
    failed = _get(served, "/api/v1/runs", study=STUDY, outcome="failed")["items"]
    assert len(failed) == 1 and failed[0]["failed_step"]
    run = _get(served, f"/api/v1/runs/{failed[0]['id']}")
    assert run["file"]["path"] == BAD_FILE
    assert run["traceback"] and run["attempts"][0]["outcome"] == "failed"
    ok = _get(served, "/api/v1/runs", study=STUDY, outcome="succeeded")["items"][0]
    assert ok["wall_seconds"] > 0 and ok["bytes_read"] > 0
    chain = _get(served, f"/api/v1/runs/{ok['id']}/lineage")
    assert chain == served["platform"].lineage(ok["result_location"])
    assert _get(served, "/api/v1/lineage", target=ok["result_location"]) == chain
    no_results = served["client"].get(f"/api/v1/runs/{failed[0]['id']}/lineage", headers=_auth(served, "read"))
    assert no_results.status_code == 404 and "no results" in no_results.json()["error"]


def test_tables_rows_and_sql(served: dict[str, Any]) -> None:
    tables = _get(served, f"/api/v1/studies/{STUDY}/tables")
    assert tables
    table, columns = next(iter(tables.items()))
    page = _get(served, f"/api/v1/studies/{STUDY}/tables/{table}", limit=2)
    assert page["columns"] == columns and len(page["rows"]) <= 2
    answer = served["client"].post(
        f"/api/v1/studies/{STUDY}/sql",
        json={"sql": f'SELECT COUNT(*) AS n FROM "{table}"'},
        headers=_auth(served, "read"),
    )
    assert answer.status_code == 200, answer.text
    expected = len(served["platform"].query(STUDY, f'SELECT * FROM "{table}"'))
    assert answer.json()["rows"] == [[expected]]
    refused = served["client"].post(
        f"/api/v1/studies/{STUDY}/sql",
        json={"sql": "SELECT * FROM read_csv('/etc/passwd')"},
        headers=_auth(served, "read"),
    )
    assert refused.status_code == 400
    assert "root:" not in refused.text


def test_costs_and_estimates(served: dict[str, Any]) -> None:
    costs = _get(served, "/api/v1/costs", by="study")
    assert costs == served["platform"].costs(None, "study").as_json()
    report = _get(served, f"/api/v1/studies/{STUDY}/estimate")
    assert report == served["platform"].estimate_study(STUDY).as_json()
    pipeline = _get(served, "/api/v1/runs", study=STUDY)["items"][0]["pipeline"]
    one = _get(served, "/api/v1/estimate", pipeline=pipeline, input_size="2MB", duration="1h")
    [estimate] = one["estimates"]
    assert estimate["inputs"]["input_bytes"] == 2_000_000
    assert estimate["inputs"]["recording_seconds"] == 3600
    assert "estimates need 5 runs of its own" in estimate["refusal"]  # 4 runs: too few, said plainly
    bad = served["client"].get(
        "/api/v1/estimate", params={"pipeline": pipeline, "input_size": "lots"}, headers=_auth(served, "read")
    )
    assert bad.status_code == 400 and "input_size" in bad.json()["error"]
    assert _get(served, "/api/v1/models") == []


def test_tokens_are_kept_as_hashes_and_revoked_at_once(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    created = client.post("/api/v1/tokens", json={"name": "ci-bot", "scope": "read"}, headers=_auth(served, "admin"))
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert client.get("/api/v1/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = _get(served, "/api/v1/tokens", "admin")
    assert token not in str(listed)
    platform: Platform = served["platform"]
    assert [t for t in platform.tokens() if t.name == "ci-bot"]
    assert platform.catalog.token_by_hash(token_hash(token)) is not None
    again = client.post("/api/v1/tokens", json={"name": "ci-bot", "scope": "read"}, headers=_auth(served, "admin"))
    assert again.status_code == 409
    assert client.delete("/api/v1/tokens/ci-bot", headers=_auth(served, "admin")).status_code == 200
    assert client.get("/api/v1/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_changes_are_audited_with_who_and_outcome(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    client.post("/api/v1/work", json={"kind": "retrain"}, headers=_auth(served, "read"))  # refused
    client.post("/api/v1/work", json={"kind": "bogus"}, headers=_auth(served, "operate"))  # invalid
    entries = _get(served, "/api/v1/audit", "admin", limit=5)
    assert entries[0]["actor"] == "operate-token" and entries[0]["outcome"] == "422"
    assert entries[1]["actor"] == "read-token" and entries[1]["outcome"] == "403"
    assert all(e["action"] == "POST /api/v1/work" for e in entries[:2])


def test_a_watch_service_does_the_work_asked_for_over_http(served: dict[str, Any]) -> None:
    client: TestClient = served["client"]
    data = served["root"] / "data" / "csv"
    (data / "S02_c.csv").write_text(_csv(4, 99))
    asked = client.post("/api/v1/work", json={"kind": "scan"}, headers=_auth(served, "operate"))
    assert asked.status_code == 202 and asked.json()["state"] == "pending"
    watcher = Watcher(served["platform"], str(served["configs"]), interval=3600, workers=1)
    watcher.start()
    try:
        request = _wait_for(served, asked.json()["id"])
    finally:
        watcher.stop()
        watcher.join(60)
    assert request["state"] == "done", request
    assert request["taken_by"] == watcher.worker_id
    [new] = _get(served, "/api/v1/files", path="s02_c")["items"]
    assert new["path"] == "S02_c.csv" and new["subject"] == "S02"


def _wait_for(served: dict[str, Any], request_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request: dict[str, Any] = _get(served, f"/api/v1/work/{request_id}")
        if request["state"] in ("done", "failed"):
            return request
        time.sleep(0.2)
    raise AssertionError(f"work request {request_id} not done in {timeout} s")
