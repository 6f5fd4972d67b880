"""The web dashboard (issue 16, point 4): sign-in with a token into a signed session, CSRF on
every form that changes something, every page over a real processed csv-stats study (on
SQLite and PostgreSQL), user text always escaped, the vendored JavaScript served from the
package, and the charts' Vega-Lite specs carrying their data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from biomarkerflow.api import create_app
from biomarkerflow.catalog.browse import RunFilter
from biomarkerflow.results import snapshots
from biomarkerflow.service import Platform
from tests.databases import BACKENDS, catalog_url
from tests.served import processed_study, tokens_per_scope
from tests.test_second_workflow_type import FILES, STUDY

BAD_FILE = "S01_broken.csv"
# A file name that is markup: it fails (no column x), so it shows in the failed list and its error.
MARKUP = "<img src=x onerror=alert(1)>"
MARKUP_FILE = f"S02_{MARKUP}.csv"
VENDOR = ("htmx.min.js", "vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A processed csv-stats study (succeeded, waiting and failed files) and a token per scope."""
    root = tmp_path_factory.mktemp("dashboard")
    files = {**FILES, BAD_FILE: "a,b\n1,2\n", MARKUP_FILE: "a,b\n1,2\n"}
    with catalog_url(request.param, root / "home") as url:
        platform, _ = processed_study(root, files, url)  # S03 has no site: waits
        tokens = tokens_per_scope(platform)
        app = create_app(platform)
        yield {"app": app, "platform": platform, "tokens": tokens, "root": root}
        platform.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, follow_redirects=False)


def _sign_in(served: dict[str, Any], scope: str = "read") -> TestClient:
    client = _client(served["app"])
    form = client.get("/login")
    answer = client.post("/login", data={"token": served["tokens"][scope], "csrf": _csrf(form.text), "next": "/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return client


def _page(client: TestClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _spec(html: str, chart_id: str) -> dict[str, Any]:
    """A chart's Vega-Lite spec, as the page embeds it for vega-embed."""
    found = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html, re.S)
    assert found, f"no chart {chart_id}"
    spec: dict[str, Any] = json.loads(found.group(1))
    assert spec["$schema"].endswith("vega-lite/v5.json")
    return spec


def _run_ids(platform: Platform) -> dict[str, str]:
    runs = platform.runs_page(RunFilter(STUDY), 0, 100).items
    return {
        "succeeded": next(r.id for r in runs if r.outcome == "succeeded"),
        "failed": next(r.id for r in runs if r.outcome == "failed" and r.error and BAD_FILE in r.error),
    }


def test_every_page_but_login_needs_a_session(served: dict[str, Any]) -> None:
    client = _client(served["app"])
    for url in ("/", f"/studies/{STUDY}", "/costs", "/estimate", "/models", "/runs/x", f"/studies/{STUDY}/counts"):
        response = client.get(url)
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/login?next=")
    assert client.get("/costs?by=month").headers["location"] == "/login?next=%2Fcosts%3Fby%3Dmonth"
    # htmx's refresh is told to go to the login page rather than swapping it into the study page.
    refresh = client.get(f"/studies/{STUDY}/counts", headers={"HX-Request": "true"})
    assert refresh.status_code == 200 and refresh.headers["hx-redirect"].startswith("/login")
    login = _page(client, "/login")
    assert 'name="token"' in login and 'type="password"' in login
    assert "Sign out" not in login


def test_a_wrong_token_shows_the_login_page_with_an_error(served: dict[str, Any]) -> None:
    client = _client(served["app"])
    form = client.get("/login")
    wrong = client.post("/login", data={"token": "bmf_not-a-real-token", "csrf": _csrf(form.text)})
    assert wrong.status_code == 401
    assert "the token is unknown or revoked" in wrong.text and 'name="token"' in wrong.text
    assert client.get("/").status_code == 303  # still not signed in
    # A sign-in form without its CSRF token (e.g. posted from another site) is refused.
    forged = _client(served["app"]).post("/login", data={"token": served["tokens"]["admin"]})
    assert forged.status_code == 403 and "CSRF" in forged.text


def test_the_session_cookie_is_httponly_strict_and_signed(served: dict[str, Any]) -> None:
    client = _client(served["app"])
    form = client.get("/login")
    cookie = form.headers["set-cookie"].lower()
    assert cookie.startswith("bmf_session=") and "httponly" in cookie and "samesite=strict" in cookie
    signed_in = client.post("/login", data={"token": served["tokens"]["read"], "csrf": _csrf(form.text)})
    assert signed_in.status_code == 303
    # A cookie changed by hand is not a session.
    forged = _client(served["app"])
    value = client.cookies["bmf_session"]
    forged.cookies.set("bmf_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
    assert forged.get("/").status_code == 303
    # Only a path of this site is a place to go after signing in.
    again = _client(served["app"])
    form = again.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in form.text
    answer = again.post("/login", data={"token": served["tokens"]["read"], "csrf": _csrf(form.text), "next": "//x.y"})
    assert answer.headers["location"] == "/"


def test_studies_page_lists_the_study_with_its_counts(served: dict[str, Any]) -> None:
    html = _page(_sign_in(served), "/")
    assert f'<a href="/studies/{STUDY}">{STUDY}</a>' in html
    row = html[html.index(f'<a href="/studies/{STUDY}">') :]
    row = row[: row.index("</tr>")]
    numbers = re.findall(r'<td class="num[^"]*">([^<]+)</td>', row)
    assert numbers[:3] == [str(len(FILES) + 2), "2", "2"]  # files, waiting (S03), failed
    assert "USD" in numbers[3]
    assert 'class="state-succeeded" style="width: 50.0%"' in row  # 4 of 8 files
    assert "signed in as" in html and "read-token" in html


def test_study_page_shows_errors_reasons_chart_and_subjects(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    html = _page(client, f"/studies/{STUDY}")
    assert "S01_broken.csv has no column x (its columns: a, b)" in html  # the error in the list itself
    assert "no metadata row for subject &#39;S03&#39;" in html  # the waiting reason, escaped
    assert f"/api/v1/files?study={STUDY}&amp;state=FAILED&amp;format=csv" in html
    assert f'hx-get="/studies/{STUDY}/counts" hx-trigger="every 5s"' in html
    for subject in ("S01", "S02", "S03"):
        assert f'href="/studies/{STUDY}/subjects/{subject}"' in html
    failed_run = _run_ids(served["platform"])["failed"]
    assert f'href="/runs/{failed_run}"' in html
    spec = _spec(html, "chart-progress")
    values = spec["data"]["values"]
    assert {v["state"] for v in values} == {"SUCCEEDED", "FAILED"}
    assert max(v["files"] for v in values if v["state"] == "SUCCEEDED") == 4  # cumulative
    assert spec["mark"]["type"] == "line" and spec["encoding"]["x"]["type"] == "temporal"
    # A read token sees why there are no buttons.
    assert 'value="process"' not in html and "need a token with operate scope" in html
    counts = _page(client, f"/studies/{STUDY}/counts")
    assert counts.lstrip().startswith('<section id="counts"') and "<html" not in counts
    assert 'class="count-failed">2<' in counts
    # The CSV export the page links to answers to the session too.
    exported = client.get("/api/v1/files", params={"study": STUDY, "state": "FAILED", "format": "csv"})
    assert exported.status_code == 200 and "no column x" in exported.text


def test_markup_from_outside_is_escaped(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    study = _page(client, f"/studies/{STUDY}")
    assert MARKUP not in study
    assert "&lt;img src=x onerror=alert(1)&gt;" in study  # the file name and its error, as text
    failed = served["platform"].runs_page(RunFilter(STUDY, outcome="failed"), 0, 10).items
    run_id = next(r.id for r in failed if r.error and MARKUP in r.error)
    run = _page(client, f"/runs/{run_id}")
    assert MARKUP not in run and "&lt;img src=x onerror=alert(1)&gt;" in run
    # Text in an address is text on the error page too.
    missing = _page(client, "/studies/%3Cb%3Ebold", 404)
    assert "<b>bold" not in missing and "no study &#39;&lt;b&gt;bold&#39; in the catalog" in missing


def test_rescan_and_process_need_csrf_and_operate_scope(served: dict[str, Any]) -> None:
    platform: Platform = served["platform"]
    before = {r.id for r in platform.work_requests(500)}
    operator = _sign_in(served, "operate")
    page = _page(operator, f"/studies/{STUDY}")
    assert 'value="scan"' in page and 'value="process"' in page
    csrf = _csrf(page)
    missing = operator.post(f"/studies/{STUDY}/work", data={"kind": "scan"})
    assert missing.status_code == 403 and "CSRF token is missing or wrong" in missing.text
    assert "text/html" in missing.headers["content-type"]
    wrong = operator.post(f"/studies/{STUDY}/work", data={"kind": "scan", "csrf": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    reader = _sign_in(served, "read")
    read_csrf = _csrf(_page(reader, f"/studies/{STUDY}"))
    refused = reader.post(f"/studies/{STUDY}/work", data={"kind": "scan", "csrf": read_csrf})
    assert refused.status_code == 403 and "this needs operate" in refused.text
    # Another session's token is not this session's.
    assert operator.post(f"/studies/{STUDY}/work", data={"kind": "scan", "csrf": read_csrf}).status_code == 403
    assert {r.id for r in platform.work_requests(500)} == before

    asked = operator.post(f"/studies/{STUDY}/work", data={"kind": "scan", "csrf": csrf})
    assert asked.status_code == 303
    [scan] = [r for r in platform.work_requests(500) if r.id not in before]
    assert (scan.kind, scan.study_id, scan.requested_by, scan.state) == ("scan", None, "operate-token", "pending")
    assert asked.headers["location"] == f"/studies/{STUDY}?asked={scan.id}"
    shown = _page(operator, asked.headers["location"])
    assert f"asked: request #{scan.id}" in shown and "a running watch service will do it" in shown
    process = operator.post(f"/studies/{STUDY}/work", data={"kind": "process", "csrf": csrf})
    [work] = [r for r in platform.work_requests(500) if r.id not in before | {scan.id}]
    assert (work.kind, work.study_id) == ("process", STUDY) and process.status_code == 303
    served["app"].state.watching = True
    try:
        assert "the watch service of this server does it" in _page(operator, process.headers["location"])
    finally:
        served["app"].state.watching = False
    # A form posted without a session goes to the login page (and not back to the POST after it).
    anonymous = _client(served["app"]).post(f"/studies/{STUDY}/work", data={"kind": "scan"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2F"
    unknown = operator.post("/studies/nope/work", data={"kind": "scan", "csrf": csrf})
    assert unknown.status_code == 404 and "no study" in unknown.text
    assert len(platform.work_requests(500)) == len(before) + 2
    # Audited like the API's changes: who, what, outcome.
    entries = [e for e in platform.audit_log(50) if e.action == f"POST /studies/{STUDY}/work"]
    assert {(e.actor, e.outcome) for e in entries} >= {("operate-token", "303"), ("read-token", "403")}


def test_run_page_shows_metering_lineage_and_the_error(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    runs = _run_ids(served["platform"])
    ok = _page(client, f"/runs/{runs['succeeded']}")
    for text in ("wall time", "CPU time", "peak memory", "USD", "aws-fargate-us-east-1", "facts: rows = "):
        assert text in ok, text
    chain = ok[ok.index('<ol class="lineage">') : ok.index("</ol>")]
    positions = [
        chain.index(f"<strong>{step}</strong>") for step in ("input", "config", "pipeline", "runtime", "outputs")
    ]
    assert positions == sorted(positions)
    assert "ColumnMeans" in chain and "biomarkerflow-csvstats 0.1.0" in chain and "csv_means.parquet" in chain
    assert "No estimate was made before this run" in ok
    failed = _page(client, f"/runs/{runs['failed']}")
    assert "Error in step ColumnMeans" in failed and "has no column x" in failed
    assert "<details><summary>Traceback</summary><pre>Traceback (most recent call last):" in failed
    assert "Only a succeeded run has results to trace." in failed
    assert '<tr class="current"><td class="num">1</td>' in failed  # its attempts, this one marked
    missing = _page(client, "/runs/no-such-run", 404)
    assert "no run &#39;no-such-run&#39; in the catalog" in missing and "Runs are listed under" in missing


def test_subject_page_charts_known_biomarkers_and_lists_other_tables(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    platform: Platform = served["platform"]
    html = _page(client, f"/studies/{STUDY}/subjects/S01")
    assert "Table csv_means" in html and "Table csv_rows" in html  # no chart for csv-stats' tables
    means = platform.query(STUDY, "SELECT run_id FROM csv_means WHERE subject = 'S01'")
    assert all(f'href="/runs/{run_id}"' in html for run_id in means["run_id"])
    # An SKDH-like sleep table: one point per night, each linking to its run.
    run_id = means["run_id"][0]
    output = platform.catalog.get_study(STUDY).output_location  # type: ignore[union-attr]
    in_force = snapshots.current(output)
    assert in_force is not None and in_force.id is not None
    tables = Path(snapshots.snapshot_location(output, in_force.id))
    pointer = Path(snapshots.tables_location(output)) / snapshots.POINTER
    saved = pointer.read_text()
    night = pd.DataFrame(
        {
            "study": STUDY,
            "subject": ["S01", "S01", "S02"],
            "file": ["S01_a.csv", "S01_a.csv", "S02_a.csv"],
            "run_id": run_id,
            "Date": ["2024-03-01", "2024-03-02", "2024-03-01"],
            "total sleep time": [420.0, 385.5, 300.0],
        }
    )
    night.to_parquet(tables / "sleep.parquet")
    pointer.write_text(json.dumps({**json.loads(saved), "tables": [*json.loads(saved)["tables"], "sleep"]}))
    try:
        html = _page(client, f"/studies/{STUDY}/subjects/S01")
    finally:
        pointer.write_text(saved)
        (tables / "sleep.parquet").unlink()
    spec = _spec(html, "chart-sleep")
    assert [(v["day"], v["value"]) for v in spec["data"]["values"]] == [("2024-03-01", 420.0), ("2024-03-02", 385.5)]
    assert {v["href"] for v in spec["data"]["values"]} == {f"/runs/{run_id}"}
    assert spec["encoding"]["href"] == {"field": "href"}
    assert "Sleep minutes per night" in html and "Table sleep" not in html
    missing = _page(client, f"/studies/{STUDY}/subjects/S99", 404)
    assert "has no subject &#39;S99&#39;" in missing


def test_costs_page_by_each_grouping(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    platform: Platform = served["platform"]
    for by in ("study", "month", "subject", "pipeline"):
        html = _page(client, f"/costs?by={by}")
        groups = platform.costs(None, by).as_json()["groups"]
        spec = _spec(html, "chart-costs")
        assert sorted(v["group"] for v in spec["data"]["values"]) == sorted(str(g[by]) for g in groups)
        assert sum(v["cost"] for v in spec["data"]["values"]) == pytest.approx(sum(g["cost"] for g in groups))
        assert f'href="/costs?by={by}" aria-current="page"' in html and f"<th>{by}</th>" in html
    assert "S01" in _page(client, "/costs?by=subject")
    assert _page(client, "/costs?by=colour", 400)


def test_estimate_page_says_plainly_when_history_is_too_short(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    form = _page(client, "/estimate")
    assert 'name="pipeline"' in form and 'name="input_size"' in form and f'<option value="{STUDY}">' in form
    pipeline = served["platform"].runs_page(RunFilter(STUDY), 0, 1).items[0].pipeline
    html = _page(client, f"/estimate?pipeline={pipeline}&input_size=2MB&duration=1h")
    assert "not enough history yet: only 4 past run(s)" in html and "estimates need 5 runs of its own" in html
    assert f"one run of {pipeline}" in html
    study = _page(client, f"/estimate?study={STUDY}")
    assert "file(s) not processed yet" in study and "not enough history yet" in study
    bad = _page(client, f"/estimate?pipeline={pipeline}&input_size=lots", 400)
    assert "input size: &#39;lots&#39; is not an amount like 2GB" in bad
    assert "sample rate" in _page(client, f"/estimate?pipeline={pipeline}&input_size=2MB&sample_rate=fast", 400)


def test_models_page_shows_every_candidate_and_the_baselines(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    assert "No cost model yet" in _page(client, "/models")
    scores = {"median_relative_error": 0.12, "p90_relative_error": 0.3, "coverage": 0.8}
    worse = {"median_relative_error": 0.4, "p90_relative_error": 0.9, "coverage": 0.5}
    platform: Platform = served["platform"]
    platform.catalog.record_cost_model(
        "dashboard-test-pipeline",
        version=1,
        promote=False,
        path="/nowhere/v1.pkl",
        trained_from=datetime(2024, 1, 1),
        trained_to=datetime(2024, 2, 1),
        train_runs=40,
        test_runs=10,
        metrics={
            "challenger": {
                "model": {"cost": scores},
                "median_baseline": {"cost": worse},
                "size_line_baseline": {"cost": worse},
                "test_runs": 10,
                "beats_baselines": True,
            },
            "champion": None,
            "candidates": {
                "wall_seconds": {"chosen": "size-line", "errors": {"loglinear": 0.2, "size-line": 0.05, "median": 0.5}}
            },
            "reason": "it beats both baselines",
        },
        note="kept for the dashboard test",
    )
    html = _page(client, "/models")
    assert "dashboard-test-pipeline" in html and "version 1" in html and "kept for the dashboard test" in html
    assert "12.0%" in html and "40.0%" in html and "median baseline" in html and "size-line baseline" in html
    assert "How good past estimates were" in html
    # Every candidate side by side, the one that answers in bold and named.
    assert "power law" in html and "median of past runs (baseline)" in html and "<strong>5.0%</strong>" in html
    assert "<td>size line (baseline)</td>" in html


def test_static_files_are_served_from_the_package(served: dict[str, Any]) -> None:
    client = _client(served["app"])  # no session needed: nothing secret in them
    folder = Path(__file__).resolve().parents[1] / "src" / "biomarkerflow" / "web" / "static"
    for name in VENDOR:
        response = client.get(f"/static/vendor/{name}")
        assert response.status_code == 200, name
        assert "javascript" in response.headers["content-type"]
        assert len(response.content) > 10_000 and response.content == (folder / "vendor" / name).read_bytes()
        licence = name.removesuffix(".min.js") + ".LICENSE"
        assert (folder / "vendor" / licence).read_text().strip(), licence
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css") and css.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../session.py").status_code == 404


def test_pages_are_html_with_guarding_headers_and_the_api_stays_json(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for url in ("/models", "/costs", "/estimate", f"/studies/{STUDY}"):
        assert "http://" not in _page(client, url).replace("https://vega.github.io/schema", "")
    assert client.get("/api/v1/studies/nope").json()["error"] == "no study 'nope' in the catalog"
    assert "no page at /no/such/page" in _page(client, "/no/such/page", 404)
    assert client.get("/api/v1/no-such-endpoint").json() == {"detail": "Not Found"}
    assert "/login" not in client.get("/openapi.json").json()["paths"]  # pages are not API endpoints


def test_sign_out_ends_the_session(served: dict[str, Any]) -> None:
    client = _sign_in(served)
    csrf = _csrf(_page(client, "/"))
    assert client.post("/logout").status_code == 403  # no CSRF token: not signed out
    assert client.get("/").status_code == 200
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert client.get("/").status_code == 303
    assert client.get("/api/v1/studies").status_code == 401  # the API no longer takes it either


def test_a_revoked_token_ends_its_sessions_at_once(served: dict[str, Any]) -> None:
    platform: Platform = served["platform"]
    token = platform.create_token("soon-revoked", "read").token
    client = _client(served["app"])
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": _csrf(form.text)}).status_code == 303
    assert client.get("/").status_code == 200
    platform.revoke_token("soon-revoked")
    gone = client.get(f"/studies/{STUDY}")
    assert gone.status_code == 303 and gone.headers["location"].endswith("&expired=1")
    assert "unknown or was revoked" in _page(client, gone.headers["location"])


def test_the_dashboard_repeats_the_api_session_keys() -> None:
    from biomarkerflow.api.auth import CSRF_HEADER, SESSION_CSRF_KEY, SESSION_TOKEN_KEY
    from biomarkerflow.web import session

    assert session.TOKEN_KEY == SESSION_TOKEN_KEY
    assert session.CSRF_KEY == SESSION_CSRF_KEY and session.CSRF_HEADER == CSRF_HEADER


def test_the_api_takes_a_signed_in_session_but_changes_nothing_without_its_csrf_token(
    served: dict[str, Any],
) -> None:
    platform: Platform = served["platform"]
    browser = _sign_in(served, "operate")
    assert browser.get("/api/v1/studies").status_code == 200  # reading: the session is enough
    before = len(platform.work_requests(500))
    forged = browser.post("/api/v1/work", json={"kind": "scan"})  # what a cross-site form could send
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    assert len(platform.work_requests(500)) == before
    csrf = _csrf(_page(browser, f"/studies/{STUDY}"))
    asked = browser.post("/api/v1/work", json={"kind": "scan"}, headers={"X-CSRF-Token": csrf})
    assert asked.status_code == 202 and asked.json()["requested_by"] == "operate-token"


def test_secure_cookies_are_sent_over_https_only(served: dict[str, Any]) -> None:
    client = _client(create_app(served["platform"], secure_cookies=True))
    form = client.get("/login")
    cookie = form.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    plain = _client(served["app"]).get("/login").headers["set-cookie"].lower()
    assert "secure" not in plain.replace("samesite", "")
