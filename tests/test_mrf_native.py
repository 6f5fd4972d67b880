"""The C fast path of price-transparency flattening against the exact slow path.

`_native.c` does two jobs: the structural scan (`scan(..., native=True)`) and `in_network`
elements of the common shape straight into Arrow columns (`fastpath.py`), handing any
element it does not recognise back to msgspec, one at a time and in document order. These
tests hold the two paths to the same output: equal Parquet tables (or the same error) for
the CMS examples, generated files in every quirk, hand-written hard elements between normal
ones (lenient and strict), billing-code, NPI and TIN filters, batch and capacity boundaries
(columns filling, growing and refilled), and equal scan parts and errors at tiny block sizes.

A native run is checked to have loaded the C library, and to have taken each hard element
the way the case says (`FAST`, `BAIL`, `BATCH`), so a case cannot pass by never reaching
the code it is about.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biomarkerflow.plugins.price_transparency import fastpath, native
from biomarkerflow.plugins.price_transparency import scan as scanning
from biomarkerflow.plugins.price_transparency.extract import MrfError, extract
from biomarkerflow.plugins.price_transparency.flatten import EVERYTHING, STREAMED, Filters, Flattener
from biomarkerflow.plugins.price_transparency.generate import Shape, write
from biomarkerflow.plugins.price_transparency.scan import Element, JsonStructureError, Part, scan

CMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms-mrf"
TABLES = ("in_network", "prices", "provider_groups", "allowed_amounts", "problems", "table_of_contents", "files")

# How the native run takes the element under test: the C loop (FAST), back to msgspec on its
# own (BAIL), or its whole batch the slow way (BATCH: bytes that are not UTF-8, or an amount
# that is no exact decimal).
FAST, BAIL, BATCH = "fast", "bail", "batch"


# -- running extract both ways ----------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """How an extraction failed; compared in place of tables."""

    error: str
    offset: int | None
    message: str


@dataclass
class Run:
    """One extraction: its tables (or how it failed) and how many `in_network` elements
    went through `Flattener.decode_element`, the slow way."""

    tables: dict[str, pa.Table] | None
    failed: Failed | None
    slow_items: int


def no_fetch(url: str) -> bytes:
    raise OSError(f"no network in this test: {url}")


def require_native() -> None:
    """The C library is loaded; a skip only when there is no C compiler to build it."""
    if native.load() is not None:
        return
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (cc or gcc): the native path cannot be built here")
    pytest.fail("a C compiler exists but native.load() returned None: the C library was not built or loaded")


class Paths:
    """Runs `extract` with the C library on (`BIOMARKERFLOW_MRF_NATIVE=1`) or off (`=0`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.runs = 0
        self.slow_items = 0
        original = Flattener.decode_element

        def counting(flattener: Flattener, part: Element) -> None:
            self.slow_items += part.key == "in_network"
            original(flattener, part)

        monkeypatch.setattr(Flattener, "decode_element", counting)

    def switch(self, on: bool) -> None:
        self.monkeypatch.setenv(native.SWITCH, "1" if on else "0")
        native.load.cache_clear()
        if on:
            require_native()
        else:
            assert native.load() is None

    def extract(self, path: Path, *, on: bool, filters: Filters = EVERYTHING, strict: bool = False) -> Run:
        self.switch(on)
        self.runs += 1
        out = self.tmp_path / f"out-{self.runs}-{'native' if on else 'slow'}"
        out.mkdir()
        self.slow_items = 0
        try:
            result = extract(path, out, filters=filters, strict=strict, fetch=no_fetch)
        except MrfError as exc:
            return Run(None, Failed("MrfError", exc.offset, exc.message), self.slow_items)
        tables = {name: pq.read_table(result.tables[name]) for name in TABLES}
        return Run(tables, None, self.slow_items)

    def both(self, path: Path, *, filters: Filters = EVERYTHING, strict: bool = False) -> tuple[Run, Run]:
        """(native, slow) runs of the same file, asserted to give the same outcome."""
        fast = self.extract(path, on=True, filters=filters, strict=strict)
        slow = self.extract(path, on=False, filters=filters, strict=strict)
        assert_same(fast, slow)
        assert slow.failed is not None or slow.tables is not None
        return fast, slow

    def write(self, name: str, document: bytes) -> Path:
        path = self.tmp_path / name
        path.write_bytes(gzip.compress(document) if name.endswith(".gz") else document)
        return path


def assert_same(fast: Run, slow: Run) -> None:
    """The same failure, or every table equal (values, types, row order)."""
    assert fast.failed == slow.failed, f"\nnative: {fast.failed}\nslow:   {slow.failed}"
    if fast.tables is None or slow.tables is None:
        return
    for name in TABLES:
        a, b = fast.tables[name], slow.tables[name]
        assert a.schema.equals(b.schema), f"{name}: schemas differ\nnative: {a.schema}\nslow:   {b.schema}"
        assert a.equals(b), f"{name} differs: {first_difference(a, b)}"


def first_difference(a: pa.Table, b: pa.Table) -> str:
    rows_a, rows_b = a.to_pylist(), b.to_pylist()
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} rows (native) != {len(rows_b)} rows (slow)"
    for index, (row_a, row_b) in enumerate(zip(rows_a, rows_b, strict=True)):
        if row_a != row_b:
            changed = {k: (row_a[k], row_b[k]) for k in row_a if row_a[k] != row_b[k]}
            return f"row {index}: (native, slow) = {changed}"
    return "same values, different layout"


def counts(run: Run) -> dict[str, Any]:
    assert run.tables is not None, run.failed
    [files] = run.tables["files"].to_pylist()
    return files


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Paths]:
    """Both paths; `native.load`'s cache is cleared before and after, so the switch is read
    again and the tests after this one see the environment as it was."""
    native.load.cache_clear()
    yield Paths(monkeypatch, tmp_path)
    native.load.cache_clear()


@pytest.fixture
def native_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The C library switched on and loaded (for `scan(..., native=True)`)."""
    monkeypatch.setenv(native.SWITCH, "1")
    native.load.cache_clear()
    require_native()
    yield
    native.load.cache_clear()


# -- hand-written documents -------------------------------------------------------------------


def obj(members: dict[str, bytes], extra: bytes = b"") -> bytes:
    """A JSON object from members' raw JSON text, in order; `extra` appended verbatim."""
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + v for k, v in members.items()) + extra + b"}"


PRICE = {
    "negotiated_type": b'"negotiated"',
    "negotiated_rate": b"12.5",
    "expiration_date": b'"9999-12-31"',
    "billing_class": b'"professional"',
}
RATE = {"provider_references": b"[1, 2]"}
ITEM = {
    "negotiation_arrangement": b'"ffs"',
    "name": b'"hard case"',
    "billing_code_type": b'"CPT"',
    "billing_code": b'"99213"',
}


def price(extra: bytes = b"", drop: tuple[str, ...] = (), **fields: bytes) -> bytes:
    return obj({k: v for k, v in {**PRICE, **fields}.items() if k not in drop}, extra)


def rate(*prices: bytes, extra: bytes = b"", drop: tuple[str, ...] = (), **fields: bytes) -> bytes:
    members = {**RATE, "negotiated_prices": b"[" + b", ".join(prices or (price(),)) + b"]", **fields}
    return obj({k: v for k, v in members.items() if k not in drop}, extra)


def item(*rates: bytes, extra: bytes = b"", drop: tuple[str, ...] = (), **fields: bytes) -> bytes:
    """An `in_network` element: `ITEM` with these fields replaced or added, `drop` left out."""
    members = {**ITEM, **fields}
    members.setdefault("negotiated_rates", b"[" + b", ".join(rates or (rate(),)) + b"]")
    return obj({k: v for k, v in members.items() if k not in drop}, extra)


def normal(index: int, code: str | None = None, prices: int = 2) -> bytes:
    """An ordinary element (the C loop takes it), different for every index."""
    return json.dumps(
        {
            "negotiation_arrangement": "ffs",
            "name": f"normal service {index}",
            "billing_code_type": "CPT",
            "billing_code_type_version": "2026",
            "billing_code": code or f"{10000 + index}",
            "description": f"normal {index}" if index % 2 else None,
            "negotiated_rates": [
                {
                    "provider_references": [1, "2"][: 1 + index % 2],
                    "negotiated_prices": [
                        {
                            "negotiated_type": "negotiated",
                            "negotiated_rate": f"{index}.{p}5" if p % 2 else index + p + 0.25,
                            "expiration_date": "9999-12-31",
                            "service_code": ["11", "22"][: p % 3],
                            "billing_class": "professional" if p % 2 else "institutional",
                            "setting": "outpatient" if p % 2 else None,
                            "billing_code_modifier": ["26"] if p == 1 else [],
                            **({"additional_information": f"note {p}"} if p == 2 else {}),
                        }
                        for p in range(prices)
                    ],
                }
            ],
        }
    ).encode()


HEAD = b'"reporting_entity_name": "Plan Co", "reporting_entity_type": "issuer", "version": "1.0.0"'
REFERENCES = (
    b'"provider_references": ['
    + b", ".join(
        json.dumps(
            {
                "provider_group_id": ref,
                "provider_groups": [{"npi": [1000000000 + n], "tin": {"type": "ein", "value": "1"}}],
            }
        ).encode()
        for n, ref in enumerate([1, "2"])
    )
    + b"]"
)


def document(elements: list[bytes], *, references_last: bool = False) -> bytes:
    in_network = b'"in_network": [' + b", ".join(elements) + b"]"
    body = [in_network, REFERENCES] if references_last else [REFERENCES, in_network]
    return b"{" + b", ".join([HEAD, *body, b'"last_updated_on": "2026-01-01"']) + b"}"


def surrounded(element: bytes) -> bytes:
    """The element third of five: two ordinary elements before it, two after, of different
    shapes (1 to 3 prices), so rows written before the element cannot pass for those after."""
    return document([normal(0, prices=1), normal(1, prices=2), element, normal(3, prices=3), normal(4, prices=1)])


def nested(depth: int) -> bytes:
    return b'"deep": ' + b'[{"a": ' * depth + b"1" + b"}]" * depth


PRETTY = (
    b'\r\n\t {\r\n\t  "negotiation_arrangement" :\t"ffs" ,\n  "name"\n:\n"pretty" , "billing_code_type": "CPT",'
    b' "billing_code" : "1" ,\n "negotiated_rates" : [ \n { "provider_references" : [ 1 , "2" ] ,'
    b' "negotiated_prices" : [ { "negotiated_type" : "negotiated" , "negotiated_rate" : 1.5 ,'
    b' "expiration_date" : "x" , "billing_class" : "p" , "service_code" : [ "11" , "22" ] ,'
    b' "billing_code_modifier" : [ ] } , {"negotiated_type":"n","negotiated_rate":"2","expiration_date":"x",'
    b'"billing_class":"p"}\t] \n} \n ] \n } \r\n '
)
MIXED_EXTRAS = b', "x": {"a": [true, false, null, {"b": [1.5e-3, "s\\"}", -0, 1E+2, []]}], "c": {}}, "t": true'
GROUPS = (
    b'[{"npi": [1234567890, "0987654321"], "tin": {"type": "ein", "value": "11-1111111", "business_name": "A"}},'
    b' {"npi": [], "tin": {"type": "npi", "value": "0987654321"}}]'
)

INLINE_GROUPS = b'[{"npi": [1], "tin": {"type": "ein", "value": "9"}}]'


def group(extra: bytes = b"", drop: tuple[str, ...] = (), **fields: bytes) -> bytes:
    """Inline provider groups (v1): one group with these fields replaced, added or dropped."""
    members = {"npi": b'[1234567890, "0987654321"]', "tin": b'{"type": "ein", "value": "11-1111111"}', **fields}
    return b"[" + obj({k: v for k, v in members.items() if k not in drop}, extra) + b"]"


ESCAPES = b'"q \\"x\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u00e9 \\u20AC \\ud83d\\ude00 \\u0000 end"'

CASES = [
    # strings
    pytest.param(item(name=ESCAPES), FAST, id="escapes-in-name"),
    pytest.param(
        item(
            rate(
                price(
                    setting=b'"out\\/patient"',
                    additional_information=b'"line\\nbreak \\"quoted\\""',
                    service_code=b'["1\\u0031", "\\u0032\\u0032"]',
                    billing_code_modifier=b'["\\u0041S"]',
                    negotiated_type=b'"nego\\ttiated"',
                ),
                provider_references=b'["r\\\\1", 2]',
            ),
            billing_code=b'"99\\u00321\\u0033"',
            description=b'"caf\\u00e9 \\ud83d\\ude00"',
            billing_code_type_version=b'"\\"2026\\""',
            severity_of_illness=b'"\\\\"',
        ),
        FAST,
        id="escapes-in-every-text-field",
    ),
    pytest.param(item(drop=("name",), extra=b', "n\\u0061me": "escaped key"'), FAST, id="escaped-key"),
    pytest.param(item(name=b'"lone \\ud800 high"'), BAIL, id="lone-high-surrogate"),
    pytest.param(item(name=b'"lone \\udc00 low"'), BAIL, id="lone-low-surrogate"),
    pytest.param(item(name=b'"\\ud800\\u0041"'), BAIL, id="high-surrogate-then-not-low"),
    pytest.param(item(name=b'"\\ud800"', extra=b', "x": "\\ud800"'), BAIL, id="lone-surrogate-in-unknown-field"),
    pytest.param(item(name=b'"bad \\x escape"'), BAIL, id="unknown-escape"),
    pytest.param(item(name=b'"bad \\u12G4 escape"'), BAIL, id="bad-hex-escape"),
    pytest.param(item(name=b'"tab\there"'), BAIL, id="raw-control-character"),
    pytest.param(item(name=b'"del \x7f ok"'), FAST, id="raw-del-character"),
    pytest.param(item(name='"café – 東京 😀"'.encode()), FAST, id="utf8-text"),
    pytest.param(item(name=b'"bad \xff\xfe bytes"'), BATCH, id="invalid-utf8-name"),
    pytest.param(item(description=b'"surrogate \xed\xa0\x80 bytes"'), BATCH, id="utf8-encoded-surrogate"),
    pytest.param(item(description=b'"overlong \xc0\xaf"'), BATCH, id="overlong-utf8"),
    pytest.param(item(rate(price(setting=b'"\xf4\x90\x80\x80"'))), BATCH, id="utf8-above-unicode"),
    pytest.param(item(rate(provider_references=b'["\xff"]')), BATCH, id="invalid-utf8-reference"),
    pytest.param(item(billing_code=b'"\xff"'), BATCH, id="invalid-utf8-billing-code"),
    pytest.param(item(extra=b', "x": "\xff\xfe", "\xff": 1'), BATCH, id="invalid-utf8-in-unknown-field"),
    # identifiers and amounts
    pytest.param(item(billing_code=b"99213"), FAST, id="number-billing-code"),
    pytest.param(item(billing_code=b"-1.5e3"), FAST, id="exponent-billing-code"),
    pytest.param(item(billing_code=b'{"code": "99213"}'), BAIL, id="object-billing-code"),
    pytest.param(item(billing_code=b"true"), BAIL, id="true-billing-code"),
    pytest.param(item(billing_code=b"012"), BAIL, id="leading-zero-billing-code"),
    pytest.param(item(rate(price(negotiated_rate=b'"12.50"'))), FAST, id="string-rate"),
    pytest.param(item(rate(price(negotiated_rate=b'"1\\u0032.5"'))), FAST, id="escaped-string-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"1e3"))), FAST, id="exponent-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"-0.0E-2"))), FAST, id="negative-zero-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"12.500000000000000001"))), FAST, id="18-decimals-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"012.5"))), BAIL, id="leading-zero-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"NaN"))), BAIL, id="nan-rate"),
    pytest.param(item(rate(price(negotiated_rate=b"1."))), BAIL, id="no-digit-after-point"),
    pytest.param(item(rate(provider_references=b'[1, "2", 3.5, 40.0000000001, -7, "x"]')), FAST, id="mixed-refs"),
    pytest.param(item(rate(provider_references=b"[012]")), BAIL, id="leading-zero-ref"),
    pytest.param(item(rate(provider_references=b"[null]")), BAIL, id="null-ref"),
    pytest.param(item(rate(price(service_code=b'["11", 22]'))), BAIL, id="number-service-code"),
    # required and optional fields
    pytest.param(item(rate(price(drop=("billing_class",)))), BAIL, id="missing-billing-class"),
    pytest.param(item(drop=("negotiation_arrangement",)), BAIL, id="missing-arrangement"),
    pytest.param(item(negotiated_rates=b'[{"provider_references": [1]}]'), BAIL, id="missing-negotiated-prices"),
    pytest.param(item(drop=("negotiated_rates",)), BAIL, id="missing-negotiated-rates"),
    pytest.param(item(extra=b', "name": "again"'), BAIL, id="duplicate-key"),
    pytest.param(item(rate(price(extra=b', "negotiated_rate": 13'))), BAIL, id="duplicate-rate"),
    pytest.param(item(rate(extra=b', "provider_references": [3]')), BAIL, id="duplicate-references"),
    pytest.param(item(extra=b', "x": 1, "x": {"y": 2}'), FAST, id="duplicate-unknown-key"),
    pytest.param(item(rate(price(setting=b"null", additional_information=b"null"))), FAST, id="null-optional"),
    pytest.param(item(billing_code_type_version=b"null", description=b"null"), FAST, id="null-optional-item"),
    pytest.param(item(name=b"null"), BAIL, id="null-name"),
    pytest.param(item(rate(price(billing_class=b"null"))), BAIL, id="null-billing-class"),
    pytest.param(item(rate(price(negotiated_rate=b"null"))), BAIL, id="null-rate"),
    pytest.param(item(rate(price(service_code=b"null"))), BAIL, id="null-service-code"),
    pytest.param(item(bundled_codes=b"null"), BAIL, id="null-bundled-codes"),
    # unknown fields
    pytest.param(item(rate(price(extra=MIXED_EXTRAS), extra=MIXED_EXTRAS), extra=MIXED_EXTRAS), FAST, id="extras"),
    pytest.param(item(extra=b", " + nested(200)), FAST, id="deeply-nested-extra"),
    pytest.param(item(extra=b", " + nested(300)), BAIL, id="too-deep-for-the-c-loop"),
    # shapes
    pytest.param(item(negotiated_rates=b"[]"), FAST, id="empty-negotiated-rates"),
    pytest.param(item(negotiated_rates=b'[{"negotiated_prices": []}]'), FAST, id="empty-negotiated-prices"),
    pytest.param(item(rate(drop=("provider_references",))), FAST, id="no-references"),
    pytest.param(item(bundled_codes=b"[]", covered_services=b"[]"), FAST, id="empty-bundles"),
    pytest.param(
        item(bundled_codes=b'[{"billing_code_type": "CPT", "billing_code": 1, "description": "b\\u00e9"}]'),
        BAIL,
        id="bundled-codes",
    ),
    pytest.param(
        item(covered_services=b'[{"billing_code_type": "CPT", "billing_code": "2", "billing_code_type_version": "1"}]'),
        BAIL,
        id="covered-services",
    ),
    pytest.param(item(rate(provider_groups=b"[]")), FAST, id="empty-inline-groups"),
    # v1 inline provider groups
    pytest.param(item(rate(provider_groups=GROUPS, drop=("provider_references",))), FAST, id="inline-groups"),
    pytest.param(item(rate(provider_groups=GROUPS), rate()), FAST, id="inline-groups-and-references"),
    pytest.param(item(rate(provider_groups=group(tin=b'{"type": "ein", "value": 123456789}'))), FAST, id="number-tin"),
    pytest.param(item(rate(provider_groups=group(npi=b"[]"))), FAST, id="group-without-npis"),
    pytest.param(item(rate(provider_groups=group(drop=("npi",)))), FAST, id="group-without-npi-field"),
    pytest.param(
        item(
            rate(
                provider_groups=group(
                    tin=b'{"type": "e\\u0069n", "value": "1\\/2", "business_name": "\\u00c9 \\"x\\""}'
                )
            )
        ),
        FAST,
        id="escapes-in-tin",
    ),
    pytest.param(
        item(
            rate(provider_groups=group(tin=b'{"type": "ein", "value": "1", "business_name": null}', extra=MIXED_EXTRAS))
        ),
        FAST,
        id="group-extras-and-null-business-name",
    ),
    pytest.param(item(rate(provider_groups=group(drop=("tin",)))), BAIL, id="group-without-tin"),
    pytest.param(item(rate(provider_groups=group(tin=b'{"type": "ein"}'))), BAIL, id="tin-without-value"),
    pytest.param(item(rate(provider_groups=group(tin=b'{"type": "ein", "value": null}'))), BAIL, id="null-tin-value"),
    pytest.param(item(rate(provider_groups=group(npi=b"[null]"))), BAIL, id="null-npi"),
    pytest.param(item(rate(provider_groups=group(npi=b"[012]"))), BAIL, id="leading-zero-npi"),
    pytest.param(item(rate(provider_groups=group(extra=b', "npi": [2]'))), BAIL, id="duplicate-npi-field"),
    pytest.param(item(rate(provider_groups=b'{"npi": [1]}')), BAIL, id="groups-not-a-list"),
    pytest.param(
        item(rate(provider_groups=group(tin=b'{"type": "ein", "value": "1", "business_name": "\xc3\x28"}'))),
        BATCH,
        id="invalid-utf8-business-name",
    ),
    pytest.param(PRETTY, FAST, id="whitespace-everywhere"),
    # malformed JSON inside a balanced element
    pytest.param(item(extra=b', "x": tru'), BAIL, id="bad-literal"),
    pytest.param(item(extra=b', "x": nul'), BAIL, id="bad-null"),
    pytest.param(item(extra=b' "x": 1'), BAIL, id="missing-comma"),
    pytest.param(item(extra=b","), BAIL, id="trailing-comma"),
    pytest.param(item(extra=b', "x": [1, 2,]'), BAIL, id="trailing-comma-in-array"),
    pytest.param(item(extra=b', "x": [1 2]'), BAIL, id="missing-comma-in-array"),
    pytest.param(item(extra=b", x: 1"), BAIL, id="unquoted-key"),
    pytest.param(item(extra=b", 'x': 1"), BAIL, id="single-quotes"),
    pytest.param(item(extra=b', "x": +1'), BAIL, id="plus-sign"),
    pytest.param(item(extra=b', "x": 1 "y"'), BAIL, id="junk-after-value"),
    pytest.param(item(extra=b', "x" 1'), BAIL, id="missing-colon"),
    pytest.param(b"3", BAIL, id="number-element"),
    pytest.param(b'"text"', BAIL, id="string-element"),
    pytest.param(b"[]", BAIL, id="array-element"),
    pytest.param(b"{}", BAIL, id="empty-object"),
    pytest.param(b"null", BAIL, id="null-element"),
]


@pytest.mark.parametrize(("element", "route"), CASES)
def test_a_hard_element_between_normal_ones_gives_the_same_tables(paths: Paths, element: bytes, route: str) -> None:
    """Lenient: the same rows and problems both ways (neighbours' rows included), and the
    native run took the element the way the case is meant to exercise: the C loop, a bail of
    that element alone (rows before it emitted, the C loop resumed after it), or the whole
    batch the slow way."""
    path = paths.write("hard.json", surrounded(element))
    fast, slow = paths.both(path)
    if slow.tables is not None:
        assert {0, 1, 3, 4} <= set(slow.tables["in_network"].column("item").to_pylist())
    if fast.failed is None:  # (a failure stops the count early)
        assert fast.slow_items == {FAST: 0, BAIL: 1, BATCH: 5}[route], f"expected the {route} route"


@pytest.mark.parametrize(("element", "route"), CASES)
def test_a_hard_element_in_strict_mode_fails_or_passes_alike(paths: Paths, element: bytes, route: str) -> None:
    """Strict: both fail with the same offset and message, or both give the same tables."""
    path = paths.write("hard.json", surrounded(element))
    fast, slow = paths.both(path, strict=True)
    if route == FAST:
        assert slow.failed is None, "an element the C loop takes must be valid for the slow path too"


@pytest.mark.parametrize(
    ("rate_text", "slow_items"),
    [("12.5000000000000000001", 5), ("1e40", 5), ('"twelve"', 5), ("null", 1)],
    ids=["19-decimals", "too-large", "not-a-number", "null"],
)
def test_an_amount_no_exact_decimal_holds_is_a_problem_of_its_item(
    paths: Paths, rate_text: str, slow_items: int
) -> None:
    """An amount no decimal128(38, 18) holds exactly: a problems row naming it, the item left
    out whole, its neighbours kept; strict mode fails there. (Arrow refuses the first three in
    the C loop's batch, which then goes the slow way whole; the C loop hands a null back alone.)"""
    elements = surrounded(item(rate(price(negotiated_rate=rate_text.encode()))))
    path = paths.write("amount.json", elements)
    fast, slow = paths.both(path)
    assert fast.slow_items == slow_items
    assert slow.tables is not None
    [problem] = slow.tables["problems"].to_pylist()
    assert problem["kind"] == "amount" and problem["element"] == 2
    assert rate_text.strip('"') in problem["message"]
    assert 2 not in slow.tables["in_network"].column("item").to_pylist()
    assert 2 not in slow.tables["prices"].column("item").to_pylist()
    fast, slow = paths.both(path, strict=True)
    assert slow.failed is not None and "negotiated_rate" in slow.failed.message


def test_bytes_that_are_not_utf8_are_a_problem_with_their_offset(paths: Paths) -> None:
    """Invalid UTF-8 in a value kept as published (a billing code): a problems row with the
    byte, not a crash."""
    path = paths.write("bytes.json", surrounded(item(billing_code=b'"99\xff"')))
    fast, slow = paths.both(path)
    assert slow.tables is not None
    [problem] = slow.tables["problems"].to_pylist()
    where = path.read_bytes().index(b"\xff")
    assert problem["kind"] == "encoding" and f"byte {where}" in problem["message"]


def test_references_after_in_network(paths: Paths) -> None:
    """Provider references after `in_network` (and hard elements in it): the same tables."""
    elements = [normal(0), item(name=ESCAPES), item(drop=("name",)), item(rate(provider_groups=GROUPS)), normal(4)]
    paths.both(paths.write("last.json", document(elements, references_last=True)))


# -- CMS examples and generated files ----------------------------------------------------------


def cms_examples() -> list[Path]:
    found = [p for version in ("v1.6.2", "v2.2.0") for p in (CMS / version).rglob("*.json")]
    return sorted(p for p in found if not p.name.startswith("schemas_"))


def test_the_cms_examples_are_there() -> None:
    """The comparisons below are not vacuous: ../shared holds the CMS examples."""
    if not CMS.exists() and not os.environ.get("CI"):
        pytest.skip(f"CMS examples not found at {CMS}")
    assert len(cms_examples()) >= 10


@pytest.mark.parametrize("path", cms_examples(), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_every_cms_example_gives_the_same_tables(paths: Paths, path: Path) -> None:
    """Every table equal, native or not, for each CMS example (all schema versions and kinds)."""
    fast, _ = paths.both(path)
    assert fast.tables is not None


QUIRKS = {
    "pretty": {"pretty": True},
    "minified": {},
    "references-last": {"references_last": True},
    "float-ids": {"float_ids": True},
    "inline-groups": {"inline_groups": True},
}


@pytest.mark.parametrize("name", ["generated.json", "generated.json.gz"])
@pytest.mark.parametrize("quirk", list(QUIRKS))
def test_generated_files_give_the_same_tables_and_the_promised_counts(paths: Paths, quirk: str, name: str) -> None:
    """Each publisher quirk of the generator, plain and gzip: equal tables, and the row counts
    `generate.write` promises."""
    path = paths.tmp_path / name
    expected = write(path, Shape(items=40, rates_per_item=5, groups=30, **QUIRKS[quirk]))
    fast, slow = paths.both(path)
    for run in (fast, slow):
        files = counts(run)
        assert (files["in_network_items"], files["prices"], files["provider_group_rows"], files["problems"]) == (
            expected.in_network_items,
            expected.prices,
            expected.provider_group_rows,
            0,
        )
        assert run.tables is not None and run.tables["prices"].num_rows == expected.prices
    assert fast.slow_items == 0  # inline groups (v1) too: the C loop takes them


def test_a_generated_file_of_several_default_batches(paths: Paths) -> None:
    """9.7 MB, 40,000 prices: more than one 4 MB batch and more than the 16,384 starting rows,
    at the production settings."""
    path = paths.tmp_path / "large.json"
    expected = write(path, Shape(items=1000, references_last=True))
    assert path.stat().st_size > 2 * fastpath.BATCH_BYTES and expected.prices > fastpath.STARTING_ROWS
    fast, _ = paths.both(path)
    assert counts(fast)["prices"] == expected.prices and fast.slow_items == 0


# -- filters --------------------------------------------------------------------------------------


FILTERED_ELEMENTS = [
    normal(0, code="A"),
    normal(1, code="B"),
    item(billing_code=b"99213"),  # a number code: filtered as its text
    item(rate(provider_groups=INLINE_GROUPS, drop=("provider_references",)), billing_code=b'"B"'),
    item(drop=("name",), billing_code=b'"A"'),  # a problem, not counted as filtered
    normal(5, code="C"),
    item(bundled_codes=b'[{"billing_code_type": "CPT", "billing_code": 1}]', billing_code=b'"A"'),  # bails
    item(rate(provider_groups=GROUPS), billing_code=b'"C"'),
]


@pytest.mark.parametrize(
    ("filters", "filtered"),
    [
        (Filters(billing_codes=frozenset({"A"})), 5),
        (Filters(billing_codes=frozenset({"B", "99213"})), 4),
        (Filters(billing_codes=frozenset({"C", "nothing"})), 5),
        (Filters(billing_codes=frozenset({"nothing"})), 7),
        (Filters(billing_codes=frozenset({"A", "B", "C", "99213"})), 0),
        (Filters(npis=frozenset({"0987654321", "1000000000"})), 0),
        (Filters(tins=frozenset({"0987654321", "9"})), 0),
        (Filters(billing_codes=frozenset({"C"}), npis=frozenset({"1234567890"}), tins=frozenset({"11-1111111"})), 5),
    ],
    ids=["A", "B-and-number", "C", "none", "all", "npis", "tins", "code-npi-tin"],
)
def test_filters_agree(paths: Paths, filters: Filters, filtered: int) -> None:
    """Billing-code (and NPI, TIN) filters: equal tables, and the same `filtered_items`
    (items left out; a problem is not one)."""
    path = paths.write("filtered.json", document(FILTERED_ELEMENTS))
    fast, slow = paths.both(path, filters=filters)
    assert counts(fast)["filtered_items"] == counts(slow)["filtered_items"] == filtered
    assert counts(fast)["problems"] == 1
    assert fast.tables is not None
    if filters.billing_codes:
        assert set(fast.tables["in_network"].column("billing_code").to_pylist()) <= filters.billing_codes
        assert set(fast.tables["prices"].column("billing_code").to_pylist()) <= filters.billing_codes
    if filters.npis:
        assert set(fast.tables["provider_groups"].column("npi").to_pylist()) <= filters.npis


# -- batches and capacity -------------------------------------------------------------------------

BATCH_BYTES = 3000
ELEMENT_BYTES = 700  # every element padded to this: a batch holds exactly 5
BAILS = {4: "bundle", 5: "problem", 14: "duplicate", 15: "covered", 19: "problem"}
INLINE_AT = 10  # v1 inline groups: the C loop's, between the bails


def padded(element: bytes) -> bytes:
    assert len(element) <= ELEMENT_BYTES - 10, len(element)
    return element[:-1] + b', "pad": "' + b"x" * (ELEMENT_BYTES - len(element) - 11) + b'"}'


def sized_element(index: int) -> tuple[bytes, int]:
    """Element `index` of the batch test, and its price count (0 when it is a problem)."""
    kind = BAILS.get(index)
    if kind == "bundle":
        return padded(item(bundled_codes=b'[{"billing_code_type": "CPT", "billing_code": 1}]')), 1
    if kind == "problem":
        return padded(item(drop=("billing_code_type",))), 0
    if kind == "duplicate":
        return padded(item(extra=b', "name": "again"')), 1
    if kind == "covered":
        return padded(item(covered_services=b'[{"billing_code_type": "CPT", "billing_code": 2}]')), 1
    if index == INLINE_AT:
        return padded(item(rate(provider_groups=INLINE_GROUPS, drop=("provider_references",)))), 1
    if index % 4 == 1:  # 10 service codes: columns grow 4 -> 8 -> 16 for one element
        services = b"[" + b", ".join(b'"%d"' % n for n in range(10)) + b"]"
        return padded(item(rate(price(service_code=services)), name=b'"services %d"' % index)), 1
    prices = 1 + index % 3
    return padded(item(rate(*[price(negotiated_rate=b"%d.%d" % (index, p)) for p in range(prices)]))), prices


def test_batch_and_capacity_boundaries(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 kB batches of exactly 5 elements and room for 4 rows: bailing elements last and first
    in a batch (4, 5 and 14, 15), last of the document (19); columns growing several times and
    filling mid-batch. Equal tables, counts right."""
    monkeypatch.setattr(fastpath, "BATCH_BYTES", BATCH_BYTES)
    monkeypatch.setattr(fastpath, "STARTING_ROWS", 4)
    batches: list[list[int]] = []
    grown: list[int] = []
    original_flush, original_grow = fastpath.FastItems.flush, fastpath._Columns.grow

    def flush(self: fastpath.FastItems) -> None:
        if self.parts:
            batches.append([p.index for p in self.parts])
        original_flush(self)

    def grow(self: fastpath._Columns) -> None:
        grown.append(self.rows)
        original_grow(self)

    monkeypatch.setattr(fastpath.FastItems, "flush", flush)
    monkeypatch.setattr(fastpath._Columns, "grow", grow)
    elements = [sized_element(index) for index in range(20)]
    assert {len(e) for e, _ in elements} == {ELEMENT_BYTES}
    path = paths.write("batches.json", document([e for e, _ in elements]))
    fast, _ = paths.both(path)

    assert batches == [list(range(start, start + 5)) for start in range(0, 20, 5)]
    assert len(grown) >= 2, f"the columns grew {grown}"
    files = counts(fast)
    problems = sum(kind == "problem" for kind in BAILS.values())
    assert (files["in_network_items"], files["problems"]) == (20 - problems, problems)
    assert files["prices"] == sum(n for _, n in elements)
    assert fast.slow_items == len(BAILS)
    assert files["provider_group_rows"] == 2 + 1  # the two references, the inline group's NPI
    assert fast.tables is not None
    assert fast.tables["in_network"].column("item").to_pylist() == [i for i in range(20) if BAILS.get(i) != "problem"]


def varied(count: int) -> list[bytes]:
    """Ordinary elements of 1 to 3 prices and 1 or 2 references: every batch a different shape."""
    return [normal(index, prices=1 + index % 3) for index in range(count)]


def test_rows_of_an_earlier_batch_survive_the_next(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink holds a batch's rows until a run is written; filling the C columns for the
    next batch must not change them (rate and price counts, rate and price numbers)."""
    monkeypatch.setattr(fastpath, "BATCH_BYTES", 4096)
    path = paths.write("batches.json", document(varied(40)))
    fast, _ = paths.both(path)
    assert fast.slow_items == 0


def test_rows_of_an_earlier_batch_survive_the_next_at_production_settings(paths: Paths) -> None:
    """The same with real 4 MB batches: a 5 MB file of ordinary, varied elements."""
    body = document(varied(7500))
    assert len(body) > fastpath.BATCH_BYTES
    fast, _ = paths.both(paths.write("large.json", body))
    assert counts(fast)["in_network_items"] == 7500


def test_two_in_network_arrays_number_their_elements_alike(paths: Paths) -> None:
    """A second `in_network` array (its own batch): element numbers restart, rows hold."""
    elements = [normal(0, prices=1), item(name=ESCAPES), item(drop=("name",)), normal(3, prices=3)]
    single = document(elements, references_last=True)
    paths.both(paths.write("twice.json", single[:-1] + b', "in_network": [' + b", ".join(elements[::-1]) + b"]}"))


# An element filling the columns is parsed again after they are emitted or grown (status
# FULL): its strings must be read as published, not as the first attempt left them.
RETRIED_NAMES = [
    pytest.param(b'"a\\/b"', "a/b", id="solidus"),
    pytest.param(b'"\\u00e9t\\u00e9"', "été", id="unicode"),
    pytest.param(b'"x\\\\y"', "x\\y", id="backslash"),
    pytest.param(b'"say \\"hi\\""', 'say "hi"', id="quote"),
]


@pytest.mark.parametrize(("name", "text"), RETRIED_NAMES)
def test_an_element_retried_after_the_columns_fill_keeps_its_escapes(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, name: bytes, text: str
) -> None:
    """Room for 4 rows; the escaped element has 10 prices: FULL, grown twice, parsed again."""
    monkeypatch.setattr(fastpath, "STARTING_ROWS", 4)
    many = item(rate(*[price(negotiated_rate=b"%d" % p) for p in range(10)]), name=name, description=name)
    path = paths.write("retried.json", document([normal(0), many, normal(2)]))
    fast, slow = paths.both(path)
    assert slow.tables is not None
    assert {r["item"]: r["name"] for r in slow.tables["in_network"].to_pylist()}[1] == text


def test_an_element_retried_at_the_default_capacity_keeps_its_escapes(paths: Paths) -> None:
    """The same at the production capacity: one element of 16,385 prices fills the columns."""
    prices = b"[" + b", ".join([price(negotiated_rate=b"1")] * (fastpath.STARTING_ROWS + 1)) + b"]"
    many = item(negotiated_rates=b'[{"negotiated_prices": ' + prices + b"}]", name=b'"a\\/b"')
    paths.both(paths.write("retried.json", document([normal(0), many])))


def test_strict_reports_the_first_problem_in_document_order(paths: Paths) -> None:
    """Strict, an invalid element and then, in the same batch, a truncated document: the slow
    path stops at the element; the native one must too, not at the truncation after it."""
    whole = document([normal(0), item(drop=("name",)), normal(2), normal(3)])
    path = paths.write("truncated.json", whole[: whole.index(b"normal service 3")])
    fast, slow = paths.both(path, strict=True)
    assert slow.failed is not None and "name" in slow.failed.message


# -- the structural scan ----------------------------------------------------------------------------


def parts(document: bytes, native_scan: bool, block: int) -> list[Part] | tuple[int, str]:
    """The scan's parts, or (offset, message) of the JsonStructureError it raised."""
    try:
        return list(scan(io.BytesIO(document), STREAMED, block_bytes=block, native=native_scan))
    except JsonStructureError as exc:
        return exc.offset, exc.message


def scanned_documents() -> list[Any]:
    documents = [pytest.param(surrounded(cast(bytes, case.values[0])), id=case.id) for case in CASES]
    documents += [pytest.param(document(FILTERED_ELEMENTS), id="filters")]
    return documents + [pytest.param(p.read_bytes(), id=f"{p.parent.parent.name}/{p.name}") for p in cms_examples()]


@pytest.mark.parametrize("block", [7, 64, scanning.BLOCK_BYTES])
@pytest.mark.parametrize("body", scanned_documents())
def test_the_native_scan_gives_the_same_parts(native_on: None, body: bytes, block: int) -> None:
    """Members, elements, array ends (bytes and offsets) equal, with strings, escapes and
    quotes straddling blocks."""
    fast = parts(body, True, block)
    assert isinstance(fast, list) and fast == parts(body, False, block)


@pytest.mark.parametrize("block", [7, 64])
@pytest.mark.parametrize("quirk", list(QUIRKS))
def test_the_native_scan_gives_the_same_parts_for_generated_files(
    native_on: None, tmp_path: Path, quirk: str, block: int
) -> None:
    """The generator's quirks (pretty, float ids, references last, inline groups) scanned in
    small blocks: the same parts."""
    path = tmp_path / "generated.json"
    write(path, Shape(items=4, rates_per_item=2, groups=5, **QUIRKS[quirk]))
    body = path.read_bytes()
    fast = parts(body, True, block)
    assert isinstance(fast, list) and fast == parts(body, False, block)


STRADDLING = [
    {"in_network": [{"a": "\\\\"}, {"b": '\\\\\\"'}, "\\", '"', '\\"]}', "]}\\"], "z": '\\\\"\\\\"'},
    {"k": "x" * 5 + "\\" * 7 + '"' + "]" * 3, "in_network": ["\\" * n + '"' for n in range(12)]},
]


@pytest.mark.parametrize("value", STRADDLING, ids=["mixed", "runs"])
def test_backslash_runs_split_at_every_block_size(native_on: None, value: dict[str, Any]) -> None:
    """A string ending in `\\\\"` (and every run of backslashes before a quote) cut at each
    position: the C scan carries its escape state across blocks as numpy does."""
    body = json.dumps(value).encode()
    for block in range(1, 24):
        fast = parts(body, True, block)
        assert fast == parts(body, False, block), block
        assert isinstance(fast, list) and len(fast) > 2


@pytest.mark.parametrize("events", [1, 2, 3])
def test_the_native_scan_resumes_after_a_full_event_buffer(
    native_on: None, monkeypatch: pytest.MonkeyPatch, events: int
) -> None:
    """More structural bytes in a block than the event buffer holds: the C loop resumes."""
    monkeypatch.setattr(scanning, "EVENTS_PER_CALL", events)
    body = surrounded(item(name=ESCAPES))
    for block in (5, 64, scanning.BLOCK_BYTES):
        assert parts(body, True, block) == parts(body, False, block)


BROKEN = [
    pytest.param(b"", id="empty"),
    pytest.param(b"   \n", id="only-whitespace"),
    pytest.param(surrounded(normal(2))[:-25], id="truncated"),
    pytest.param(surrounded(normal(2))[:300], id="truncated-in-element"),
    pytest.param(b'{"in_network": [{"a": "unterminated', id="truncated-in-string"),
    pytest.param(b'{"in_network": [{"a": "\\', id="truncated-after-backslash"),
    pytest.param(surrounded(normal(2)) + b"}", id="extra-closing-brace"),
    pytest.param(surrounded(normal(2)) + b"]", id="extra-closing-bracket"),
    pytest.param(b'{"in_network": [{"a": 1}]]}', id="extra-bracket-inside"),
    pytest.param(b'{"a": 1,}}', id="trailing-comma-then-extra-brace"),
    pytest.param(b"[]]", id="array-root-then-extra-bracket"),
    pytest.param(surrounded(normal(2)) + b" x", id="text-after-root"),
    pytest.param(surrounded(normal(2)) + b' {"b": 2}', id="object-after-root"),
    pytest.param(b'[{"a": 1}]', id="array-root"),
    pytest.param(b'{"a": 1} "tail"', id="string-after-root"),
    pytest.param(b'{"in_network": [1,,2]}', id="empty-element"),
    pytest.param(b'{"in_network": [\\"x"], "b": 1}', id="backslash-outside-a-string"),
    pytest.param(b'{"a": 1 "b": 2}', id="missing-comma-between-members"),
    pytest.param(b"{a: 1}", id="unquoted-member-name"),
]


@pytest.mark.parametrize("block", [1, 7, 64, scanning.BLOCK_BYTES])
@pytest.mark.parametrize("body", BROKEN)
def test_broken_documents_fail_alike(native_on: None, body: bytes, block: int) -> None:
    """A document that is not JSON: the same JsonStructureError (offset, message) both ways."""
    slow = parts(body, False, block)
    assert isinstance(slow, tuple), f"the slow scan accepted it: {slow}"
    assert parts(body, True, block) == slow
