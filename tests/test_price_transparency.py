"""The price-transparency workflow type end to end on the platform (SQLite and PostgreSQL):
CMS example files scanned, processed, written with provenance and queried through the
`rates` view; a truncated file fails with its byte offset and leaves no tables."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import statistics
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from biomarkerflow.service import Platform
from tests.databases import BACKENDS, catalog_url

CMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms-mrf"
FILES = {
    "v1-ffs.json": CMS / "v1.6.2" / "in-network-rates" / "in-network-rates-fee-for-service-single-plan-sample.json",
    "v2-plans.json": CMS / "v2.2.0" / "in-network-rates" / "in-network-rates-multiple-plans-sample.json",
}
CONFIG = """\
study: plan-rates
workflow: price-transparency
data:
  location: ../data
"""


def expected_rates(path: Path) -> dict[str, list[Decimal]]:
    """billing code -> every negotiated rate x NPI of the groups it refers to, from the JSON."""
    document = json.loads(path.read_text(), parse_float=Decimal)
    groups = {
        str(r["provider_group_id"]): r.get("provider_groups", []) for r in document.get("provider_references", [])
    }
    rates: dict[str, list[Decimal]] = {}
    for item in document["in_network"]:
        for rate in item["negotiated_rates"]:
            referenced = rate.get("provider_groups") or [
                g for ref in rate.get("provider_references", []) for g in groups.get(str(ref), [])
            ]
            npis = sum(max(1, len(g.get("npi", []))) for g in referenced)
            for price in rate["negotiated_prices"]:
                rates.setdefault(str(item["billing_code"]), []).extend([Decimal(price["negotiated_rate"])] * npis)
    return rates


@pytest.mark.parametrize("backend", BACKENDS)
def test_cms_files_become_queryable_rates(tmp_path: Path, backend: str) -> None:
    (tmp_path / "data").mkdir()
    for name, source in FILES.items():
        shutil.copyfile(source, tmp_path / "data" / name)
    whole = FILES["v1-ffs.json"].read_bytes()
    (tmp_path / "data" / "cut.json").write_bytes(whole[:1000])  # a download that stopped
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "rates.yaml").write_text(CONFIG)
    with catalog_url(backend, tmp_path / "home") as url:
        platform = Platform(home=tmp_path / "home", catalog_url=url)
        scanned = platform.scan(str(tmp_path / "studies"))
        assert scanned.category is None, scanned.info.studies
        executor = platform.executor("local", 1)
        try:
            platform.process(executor)
        finally:
            executor.close()
        states = {f.relative_path: (f.state, f.last_error) for f in platform.catalog.files("plan-rates")}
        assert states["v1-ffs.json"][0] == states["v2-plans.json"][0] == "SUCCEEDED"
        state, error = states["cut.json"]
        assert state == "FAILED" and "byte 1000" in (error or "") and "truncated" in (error or "")

        answer = platform.query(
            "plan-rates",
            "SELECT file, billing_code, count(*) AS n, min(negotiated_rate) AS low, max(negotiated_rate) AS high "
            "FROM rates GROUP BY 1, 2 ORDER BY 1, 2",
        )
        for name, source in FILES.items():
            expected = expected_rates(source)
            found = answer[answer["file"] == name]
            assert {row.billing_code: row.n for row in found.itertuples()} == {
                c: len(v) for c, v in expected.items() if v
            }
            for row in found.itertuples():
                assert Decimal(str(row.low)) == min(expected[row.billing_code])
                assert Decimal(str(row.high)) == max(expected[row.billing_code])
        medians = platform.query(
            "plan-rates", "SELECT billing_code, median(negotiated_rate) AS m FROM rates GROUP BY 1"
        )
        expected_by_code: dict[str, list[Decimal]] = {}
        for source in FILES.values():
            for code, rates in expected_rates(source).items():
                expected_by_code.setdefault(code, []).extend(rates)
        assert {row.billing_code: Decimal(str(row.m)) for row in medians.itertuples()} == {
            code: statistics.median(rates) for code, rates in expected_by_code.items() if rates
        }

        sizes = {f.id: f.size for f in platform.catalog.files("plan-rates")}
        for run in platform.catalog.runs("plan-rates"):
            if run.outcome == "succeeded":  # the JSON read, a cost feature for the next estimates
                assert (run.facts or {})["uncompressed_bytes"] == sizes[run.file_id]
        [cut_run] = [r for r in platform.catalog.runs("plan-rates") if r.outcome == "failed"]
        assert cut_run.result_location is None  # nothing published for the broken file
        tables = platform.tables("plan-rates")
        assert {"files", "in_network", "prices", "provider_groups", "problems", "rates"} <= set(tables)
        files = platform.query("plan-rates", "SELECT file, version, in_network_items, prices FROM files ORDER BY 1")
        assert list(files["file"]) == sorted(FILES)
        _dashboard_pages(platform)
        platform.close()


def _dashboard_pages(platform: Platform) -> None:
    """The dashboard's study, run and cost pages show a price-transparency study too."""
    from biomarkerflow.api import create_app
    from tests.test_dashboard import _client, _csrf, _page

    client = _client(create_app(platform))
    token = platform.create_token("pages", "read").token
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": _csrf(form.text), "next": "/"}).status_code == 303
    study = _page(client, "/studies/plan-rates")
    assert "cut.json" in study and "truncated" in study  # the failed file with its reason, in the list
    [run] = [r for r in platform.catalog.runs("plan-rates") if r.outcome == "succeeded"][:1]
    assert "FlattenMachineReadableFile" in _page(client, f"/runs/{run.id}")
    assert "plan-rates" in _page(client, "/costs")


@pytest.fixture
def mrf_server(tmp_path: Path) -> Iterator[str]:
    """The in-network files a table of contents lists, served on loopback (what a publisher's
    CDN would do); it counts each file's downloads."""
    served = tmp_path / "served"
    served.mkdir()
    for name, source in FILES.items():
        shutil.copyfile(source, served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def table_of_contents(base: str) -> dict[str, object]:
    def plan(plan_id: str) -> dict[str, str]:
        return {"plan_name": f"plan {plan_id}", "plan_id_type": "hios", "plan_id": plan_id, "plan_market_type": "group"}

    def files(*names: str) -> list[dict[str, str]]:
        return [{"description": "in-network file", "location": f"{base}/{name}"} for name in names]

    return {
        "reporting_entity_name": "Plan Co",
        "reporting_entity_type": "health insurance issuer",
        "reporting_structure": [
            {"reporting_plans": [plan("111"), plan("222")], "in_network_files": files("v1-ffs.json")},
            {"reporting_plans": [plan("333")], "in_network_files": files("v1-ffs.json", "v2-plans.json")},
            {"reporting_plans": [plan("444")], "in_network_files": files("not-for-us.json")},
        ],
        "version": "1.1.0",
    }


def test_a_table_of_contents_registers_the_files_it_lists_for_the_plans_asked(tmp_path: Path, mrf_server: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "2026-01_index.json").write_text(json.dumps(table_of_contents(mrf_server)))
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "rates.yaml").write_text(CONFIG + "price_transparency:\n  plans: ['111', '333']\n")
    platform = Platform(home=tmp_path / "home")
    platform.scan(str(tmp_path / "studies"))
    urls = sorted(f.url for f in platform.catalog.files("plan-rates"))
    # Listed twice (plans 111 and 333), registered once; plan 444's file is not asked for.
    assert urls == sorted([str(tmp_path / "data" / "2026-01_index.json"), *(f"{mrf_server}/{n}" for n in FILES)])
    executor = platform.executor("local", 1)
    try:
        platform.process(executor)
    finally:
        executor.close()
    states = {f.relative_path: f.state for f in platform.catalog.files("plan-rates")}
    assert set(states.values()) == {"SUCCEEDED"}, states
    contents = platform.query("plan-rates", "SELECT plan_id, location FROM table_of_contents ORDER BY 1, 2")
    assert list(contents["plan_id"]) == ["111", "222", "333", "333", "444"]
    counted = platform.query("plan-rates", "SELECT file, count(*) AS n FROM rates GROUP BY 1 ORDER BY 1")
    assert list(counted["file"]) == sorted(f"listed/{mrf_server.removeprefix('http://')}/{n}" for n in FILES)
    platform.scan(str(tmp_path / "studies"))  # a rescan finds nothing new: the listed files are unchanged
    assert {f.state for f in platform.catalog.files("plan-rates")} == {"SUCCEEDED"}
    platform.close()


def test_the_price_transparency_demo_runs_end_to_end(tmp_path: Path) -> None:
    from tests.test_cli import cli

    done = cli(
        tmp_path / "unused-home",
        "demo",
        "--kind",
        "price-transparency",
        "--workspace",
        str(tmp_path / "rates-demo"),
        "--items",
        "40",
        "--workers",
        "1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED acme-epo_in-network.json" in done.stdout and "truncated" in done.stdout
    assert "negotiated rates per billing code" in done.stdout
    assert "3 succeeded, 1 failed" in done.stdout
