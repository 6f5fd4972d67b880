"""Price-transparency files into tables: every CMS example, exact identifiers and amounts,
references before or after `in_network`, remote references (one missing), zip and
multi-member gzip, and broken input failing with the byte offset."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from biomarkerflow.plugins.price_transparency.extract import MrfError, extract
from biomarkerflow.plugins.price_transparency.flatten import Filters

CMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms-mrf"


def expected_counts(document: dict[str, Any]) -> dict[str, int]:
    """The rows each table should get, counted straight from the parsed JSON."""
    prices = sum(len(r["negotiated_prices"]) for i in document.get("in_network", []) for r in i["negotiated_rates"])
    inline = sum(
        max(1, len(g.get("npi", [])))
        for i in document.get("in_network", [])
        for r in i["negotiated_rates"]
        for g in r.get("provider_groups", [])
    )
    referenced = sum(
        max(1, len(g.get("npi", [])))
        for ref in document.get("provider_references", [])
        for g in ref.get("provider_groups", [])
    )
    allowed = sum(
        max(1, sum(max(1, len(p.get("npi", []))) for p in pay.get("providers", [])) if pay.get("providers") else 1)
        for i in document.get("out_of_network", [])
        for a in i["allowed_amounts"]
        for pay in a["payments"]
    )
    return {
        "in_network_items": len(document.get("in_network", [])),
        "prices": prices,
        "provider_group_rows": inline + referenced,
        "allowed_amount_rows": allowed,
    }


def rows(tables: dict[str, Path], name: str) -> list[dict[str, Any]]:
    return pq.read_table(tables[name]).to_pylist()


def no_fetch(url: str) -> bytes:
    raise OSError(f"no network in this test: {url}")


EXAMPLES = sorted(p for p in CMS.glob("v*/*/*.json") if p.parent.name in ("in-network-rates", "allowed-amounts"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_cms_example_is_flattened_with_every_row_counted(path: Path, tmp_path: Path) -> None:
    result = extract(path, tmp_path, fetch=no_fetch)
    document = json.loads(path.read_bytes())
    [files] = rows(result.tables, "files")
    counts = expected_counts(document)
    assert {k: files[k] for k in counts} == counts
    assert len(rows(result.tables, "prices")) == counts["prices"]
    assert len(rows(result.tables, "provider_groups")) == counts["provider_group_rows"]
    assert (
        files["version"] == document["version"] and files["reporting_entity_name"] == document["reporting_entity_name"]
    )
    remote = [r for r in document.get("provider_references", []) if "location" in r and not r.get("provider_groups")]
    assert files["problems"] == len(remote)  # each unreachable remote reference is one problem row, nothing else


def test_the_fee_for_service_sample_by_hand(tmp_path: Path) -> None:
    """v1.6.2 fee-for-service: 2 items; the knee replacement has 2 rates with 2 + 1 prices."""
    path = CMS / "v1.6.2" / "in-network-rates" / "in-network-rates-fee-for-service-single-plan-sample.json"
    result = extract(path, tmp_path, fetch=no_fetch)
    knee = [p for p in rows(result.tables, "prices") if p["billing_code"] == "27447"]
    assert [(p["rate"], p["price"], p["negotiated_rate"]) for p in knee] == [
        (0, 0, Decimal("123.45")),
        (0, 1, Decimal("1230.45")),
        (1, 0, Decimal("120.45")),
    ]
    assert knee[0]["service_code"] == ["18", "19", "11"] and knee[0]["billing_code_modifier"] == ["AS"]
    assert knee[0]["provider_refs"] == ["inline:0.0"]
    groups = [g for g in rows(result.tables, "provider_groups") if g["provider_ref"] == "inline:0.0"]
    assert len(groups) == 10 and {g["tin_value"] for g in groups} == {"11-1111111", "22-2222222"}
    problems = rows(result.tables, "problems")
    assert [p["kind"] for p in problems] == ["remote reference"]
    assert "https://www.cms.gov/some_provider_group.json" in problems[0]["message"]


def mrf(in_network: list[Any], references: list[Any], *, references_first: bool, version: str = "1.0.0") -> bytes:
    head = {"reporting_entity_name": "Plan Co", "reporting_entity_type": "issuer", "version": version}
    body = [("provider_references", references), ("in_network", in_network)]
    if not references_first:
        body.reverse()
    return json.dumps({**head, **dict(body), "last_updated_on": "2026-01-01"}).encode()


def item(code: str, refs: list[Any], rate: str) -> dict[str, Any]:
    return {
        "negotiation_arrangement": "ffs",
        "name": f"service {code}",
        "billing_code_type": "CPT",
        "billing_code_type_version": "2026",
        "billing_code": code,
        "description": "d",
        "negotiated_rates": [
            {
                "provider_references": refs,
                "negotiated_prices": [
                    {
                        "negotiated_type": "negotiated",
                        "negotiated_rate": "RATE",
                        "expiration_date": "9999-12-31",
                        "billing_class": "professional",
                    }
                ],
            }
        ],
    }


def with_rates(document: bytes, rates: list[str]) -> bytes:
    for rate in rates:  # numbers written as published, not through a float
        document = document.replace(b'"RATE"', rate.encode(), 1)
    return document


REFERENCES = [
    {
        "provider_group_id": "FLOATID",
        "provider_groups": [{"npi": [1234567890, 1111111111], "tin": {"type": "ein", "value": "12-3456789"}}],
    },
    {
        "provider_group_id": 7,
        "provider_groups": [{"npi": ["0987654321"], "tin": {"type": "npi", "value": "0987654321"}}],
    },
]


def references_document(references_first: bool) -> bytes:
    document = mrf(
        [item("99213", ["FLOATID", 7], "RATE"), item("99214", [7], "RATE")],
        REFERENCES,
        references_first=references_first,
    )
    document = document.replace(b'"FLOATID"', b"40.0000000001")
    return with_rates(document, ["123.4500000000000001", "1e2"])


def table_rows(tables: dict[str, Path], name: str) -> list[dict[str, Any]]:
    return sorted(rows(tables, name), key=lambda r: json.dumps(r, sort_keys=True, default=str))


def test_references_before_or_after_in_network_give_the_same_tables(tmp_path: Path) -> None:
    results = []
    for first in (True, False):
        path = tmp_path / f"first-{first}.json"
        path.write_bytes(references_document(first))
        out = tmp_path / f"out-{first}"
        out.mkdir()
        tables = extract(path, out, fetch=no_fetch).tables
        results.append(
            {name: table_rows(tables, name) for name in ("in_network", "prices", "provider_groups", "problems")}
        )
    for table in results[0]:
        for row in results[0][table] + results[1][table]:
            row.pop("document")
    assert results[0] == results[1]
    prices = results[0]["prices"]
    assert [p["provider_refs"] for p in prices] == [["40.0000000001", "7"], ["7"]]  # the id exactly as published
    assert [p["negotiated_rate"] for p in prices] == [Decimal("123.4500000000000001"), Decimal("100")]
    assert {g["npi"] for g in results[0]["provider_groups"]} == {"1234567890", "1111111111", "0987654321"}


@pytest.fixture
def reference_server() -> Iterator[str]:
    """Remote provider references on loopback: /groups.json answers, anything else is 404."""
    body = json.dumps(
        {"provider_groups": [{"npi": [5555555555], "tin": {"type": "ein", "value": "55-5555555"}}]}
    ).encode()
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            if self.path == "/groups.json":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    assert requests.count("/groups.json") == 1  # fetched once, though two references name it


def test_remote_references_are_fetched_once_and_a_404_is_a_problem(tmp_path: Path, reference_server: str) -> None:
    references = [
        {"provider_group_id": 1, "location": f"{reference_server}/groups.json"},
        {"provider_group_id": 2, "location": f"{reference_server}/groups.json"},
        {"provider_group_id": 3, "location": f"{reference_server}/missing.json"},
    ]
    path = tmp_path / "remote.json"
    path.write_bytes(with_rates(mrf([item("1", [1, 2, 3], "RATE")], references, references_first=True), ["5"]))
    tables = extract(path, tmp_path).tables
    groups = rows(tables, "provider_groups")
    assert sorted((g["provider_ref"], g["npi"], g["source"]) for g in groups) == [
        ("1", "5555555555", "remote"),
        ("2", "5555555555", "remote"),
    ]
    [problem] = rows(tables, "problems")
    assert "3:" in problem["message"] and "missing.json" in problem["message"] and "404" in problem["message"]


def test_zip_members_and_multi_member_gzip(tmp_path: Path) -> None:
    one = with_rates(mrf([item("A", [1], "RATE")], REFERENCES[1:], references_first=True), ["1"])
    two = with_rates(
        mrf([item("B", [7], "RATE"), item("C", [7], "RATE")], REFERENCES[1:], references_first=False), ["2", "3"]
    )
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("first.json", one)
        zipped.writestr("notes.txt", "not a document")
        zipped.writestr("second.json", two)
    out = tmp_path / "zip"
    out.mkdir()
    files = rows(extract(archive, out, fetch=no_fetch).tables, "files")
    assert [(f["document"], f["in_network_items"], f["prices"]) for f in files] == [
        ("first.json", 1, 1),
        ("second.json", 2, 2),
    ]

    gz = tmp_path / "two-members.json.gz"
    half = len(two) // 2
    gz.write_bytes(gzip.compress(two[:half]) + gzip.compress(two[half:]))  # what `cat a.gz b.gz` gives
    out = tmp_path / "gz"
    out.mkdir()
    [file] = rows(extract(gz, out, fetch=no_fetch).tables, "files")
    assert (file["in_network_items"], file["prices"]) == (2, 2)


@pytest.mark.parametrize("indent", [None, 2])
def test_filters_keep_only_the_codes_and_providers_asked_for(tmp_path: Path, indent: int | None) -> None:
    document = json.loads(references_document(True).replace(b"40.0000000001", b'"40"'))
    path = tmp_path / "f.json"
    path.write_text(json.dumps(document, indent=indent))
    result = extract(
        path,
        tmp_path,
        filters=Filters(billing_codes=frozenset({"99214"}), npis=frozenset({"0987654321"})),
        fetch=no_fetch,
    )
    [files] = rows(result.tables, "files")
    assert (files["in_network_items"], files["filtered_items"], files["prices"]) == (1, 1, 1)
    assert [g["npi"] for g in rows(result.tables, "provider_groups")] == ["0987654321"]


def test_truncated_and_corrupt_inputs_fail_with_where(tmp_path: Path) -> None:
    whole = references_document(True)
    cut = tmp_path / "cut.json"
    cut.write_bytes(whole[:-40])
    with pytest.raises(MrfError) as caught:
        extract(cut, tmp_path / "a", fetch=no_fetch)
    assert caught.value.offset == len(whole) - 40 and "truncated" in caught.value.message

    truncated_gzip = tmp_path / "cut.json.gz"
    truncated_gzip.write_bytes(gzip.compress(whole)[:-30])
    with pytest.raises(MrfError) as caught:
        extract(truncated_gzip, tmp_path / "b", fetch=no_fetch)
    assert "ends early" in caught.value.message

    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(whole.replace(b'"in_network": [', b'"in_network": [}', 1))
    with pytest.raises(MrfError) as caught:
        extract(corrupt, tmp_path / "c", fetch=no_fetch)
    assert caught.value.offset is not None and caught.value.offset > 0


def test_a_schema_violation_is_a_problem_when_lenient_and_fails_when_strict(tmp_path: Path) -> None:
    bad = json.loads(references_document(True).replace(b"40.0000000001", b'"40"'))
    del bad["in_network"][0]["negotiated_rates"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    (tmp_path / "lenient").mkdir()
    tables = extract(path, tmp_path / "lenient", fetch=no_fetch).tables
    [problem] = rows(tables, "problems")
    assert problem["section"] == "in_network" and problem["element"] == 0 and "negotiated_rates" in problem["message"]
    assert problem["offset"] == path.read_bytes().index(b'{"negotiation_arrangement"')
    [files] = rows(tables, "files")
    assert (files["in_network_items"], files["problems"]) == (1, 1)  # 2 read: 1 written + 1 refused
    (tmp_path / "strict").mkdir()
    with pytest.raises(MrfError) as caught:
        extract(path, tmp_path / "strict", strict=True, fetch=no_fetch)
    assert "negotiated_rates" in caught.value.message


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"references_last": True, "float_ids": True, "pretty": True},
        {"inline_groups": True},
    ],
    ids=["plain", "references-last-float-ids-pretty", "v1-inline-groups"],
)
def test_generated_files_give_the_row_counts_they_promise(tmp_path: Path, shape: dict[str, Any]) -> None:
    from biomarkerflow.plugins.price_transparency.generate import Shape, write

    path = tmp_path / "generated.json.gz"
    expected = write(path, Shape(items=40, rates_per_item=5, groups=30, **shape))
    out = tmp_path / "out"
    out.mkdir()
    tables = extract(path, out, fetch=no_fetch).tables
    [files] = rows(tables, "files")
    assert (files["in_network_items"], files["prices"], files["provider_group_rows"], files["problems"]) == (
        expected.in_network_items,
        expected.prices,
        expected.provider_group_rows,
        0,
    )
    if shape.get("float_ids"):
        assert all(ref.endswith(".0000000001") for p in rows(tables, "prices") for ref in p["provider_refs"])


# Measured with the platform's own meter: the kernel's high-water mark, reset when the job
# starts. (ru_maxrss would not do: a child forked from a large pytest worker starts with the
# worker's size as its maximum, and exec keeps it.)
MEASURE_PEAK = """
import sys
from pathlib import Path
from biomarkerflow.plugins.price_transparency import tables
from biomarkerflow.plugins.price_transparency.extract import extract
tables.ROWS_PER_RUN = int(sys.argv[3])
from biomarkerflow.runtimes.meter import Meter
with Meter() as meter:
    extract(Path(sys.argv[1]), Path(sys.argv[2]), fetch=lambda url: b"")
print(meter.usage.peak_rss_bytes)
"""


def test_memory_stays_flat_as_files_grow(tmp_path: Path) -> None:
    """Peak memory of a spawned process (as the meter measures a job): a file 4 times larger
    (10 MB -> 40 MB, 40k -> 160k prices), references after in_network, needs about the same.
    Rows wait for a sorted run (`ROWS_PER_RUN`): set to one row group here so that both files
    hold several runs, as a large file does with the default; the default is checked alone."""
    import subprocess
    import sys

    from biomarkerflow.plugins.price_transparency.generate import Shape, write
    from biomarkerflow.plugins.price_transparency.tables import ROWS_PER_GROUP, ROWS_PER_RUN

    def peak(items: int, rows_per_run: int) -> int:
        path = tmp_path / f"{items}.json"
        if not path.exists():
            write(path, Shape(items=items, rates_per_item=20, references_last=True, groups=500))
        out = tmp_path / f"out-{items}-{rows_per_run}"
        out.mkdir()
        command = [sys.executable, "-c", MEASURE_PEAK, str(path), str(out), str(rows_per_run)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    small, large = peak(1000, ROWS_PER_GROUP), peak(4000, ROWS_PER_GROUP)
    assert peak(4000, ROWS_PER_RUN) < 512 * 2**20
    # Rows wait in memory for at most one row group per table (32k rows): 12 MiB more at 4x
    # the size when measured; reading whole items or arrays would add ~100 MiB here.
    assert large - small < 40 * 2**20, f"peak {small / 2**20:.0f} MiB -> {large / 2**20:.0f} MiB"


def test_header_facts_tell_the_json_size_for_estimates(tmp_path: Path) -> None:
    """Plain JSON: its size; a whole gzip (two members too): exact; a large gzip from its first
    64 kB: the compressed size times the first block's ratio, within 10%."""
    from biomarkerflow.plugins.price_transparency.generate import Shape, write
    from biomarkerflow.plugins.price_transparency.plugin import header_facts

    path = tmp_path / "rates.json"
    write(path, Shape(items=2000))
    raw = path.read_bytes()
    assert header_facts(raw[:65536], len(raw), "rates.json") == {
        "container": "json",
        "uncompressed_bytes": len(raw),
        "schema_version": "2.0.0",
    }
    packed = gzip.compress(raw)
    estimated = header_facts(packed[:65536], len(packed), "rates.json.gz")["uncompressed_bytes"]
    assert abs(estimated - len(raw)) < 0.1 * len(raw)
    two_members = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    assert header_facts(two_members, len(two_members), "rates.json.gz")["uncompressed_bytes"] == len(raw)
    assert header_facts(b"\x1f\x8bnot gzip at all", 17, "bad.json.gz") == {"container": "gzip"}


def test_a_provider_reference_file_on_its_own_gives_its_groups(tmp_path: Path) -> None:
    """The file a v1 `location` points at, as a data file: one row per NPI of each group,
    referred to by the file's name (the in-network files that point at it do not say)."""
    path = CMS / "v1.6.2" / "provider-reference" / "provider-reference.json"
    document = json.loads(path.read_text())
    groups = rows(extract(path, tmp_path, fetch=no_fetch).tables, "provider_groups")
    expected = [(str(n), g["tin"]["value"]) for g in document["provider_groups"] for n in g["npi"]]
    assert [(g["npi"], g["tin_value"]) for g in groups] == expected
    assert {(g["provider_ref"], g["source"]) for g in groups} == {(path.name, "file")}


def test_kinds_not_asked_for_are_counted_as_skipped(tmp_path: Path) -> None:
    """A study that reads only allowed amounts: an in-network file gives no rates, and its
    items and provider references are counted as skipped, not dropped silently."""
    from typing import get_args

    from biomarkerflow.plugins.price_transparency.flatten import KINDS
    from biomarkerflow.plugins.price_transparency.plugin import Kind

    assert set(KINDS) == set(get_args(Kind))  # every kind a config may name has its arrays
    path = CMS / "v2.2.0" / "in-network-rates" / "in-network-rates-multiple-plans-sample.json"
    document = json.loads(path.read_text())
    result = extract(path, tmp_path, filters=Filters(kinds=frozenset({"allowed-amounts"})), fetch=no_fetch)
    assert rows(result.tables, "in_network") == rows(result.tables, "prices") == []
    assert rows(result.tables, "provider_groups") == []
    [files] = rows(result.tables, "files")
    assert files["skipped_elements"] == len(document["in_network"]) + len(document.get("provider_references", []))
    [summary] = result.documents.values()
    assert summary.skipped == {
        "in_network": len(document["in_network"]),
        "provider_references": len(document["provider_references"]),
    }
