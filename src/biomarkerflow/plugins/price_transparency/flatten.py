"""One machine-readable file's parts (from `scan`) into rows of the tables (`tables.py`).

Each `in_network` item becomes one `in_network` row and one `prices` row per negotiated
price, each `provider_references` entry (and each inline v1 group) `provider_groups` rows,
one per NPI; each `out_of_network` item `allowed_amounts` rows, one per payment, provider
and NPI. Provider references may come before or after `in_network`: prices keep the
reference ids and the `rates` view joins them, so the order changes nothing.

An element that does not match the schema is a `problems` row with its byte offset
(lenient) or ends the file (strict). Nothing is dropped without a count: `FileSummary`
has what was read, written, filtered out and refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from biomarkerflow.plugins.price_transparency.fastpath import FastRows, fast_items
from biomarkerflow.plugins.price_transparency.records import (
    DECODERS,
    CodeRef,
    InNetworkItem,
    OutOfNetworkItem,
    PaymentProvider,
    ProviderGroup,
    ProviderReference,
    ReportingPlan,
    ReportingStructure,
    raw_text,
    raw_text_or_none,
)
from biomarkerflow.plugins.price_transparency.scan import ArrayEnd, Element, Member, Part
from biomarkerflow.plugins.price_transparency.tables import AMOUNT, ROW_SCHEMAS, TableSink

STREAMED = frozenset(DECODERS)
# The file kinds a study may ask for, and the arrays of a document that hold each.
KINDS: dict[str, frozenset[str]] = {
    "in-network": frozenset({"in_network"}),
    "allowed-amounts": frozenset({"out_of_network"}),
    "provider-references": frozenset({"provider_references", "provider_groups"}),
    "table-of-contents": frozenset({"reporting_structure"}),
}
HEADER_FIELDS = (
    "reporting_entity_name",
    "reporting_entity_type",
    "issuer_name",
    "plan_name",
    "plan_id_type",
    "plan_id",
    "plan_sponsor_name",
    "plan_market_type",
    "last_updated_on",
    "version",
)


class SchemaProblem(ValueError):
    """An element that does not match the schema, in strict mode: ends the file."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"byte {offset}: {message}")
        self.offset = offset
        self.message = message


@dataclass(frozen=True)
class Filters:
    """Keep only these (empty: everything). NPIs and TINs filter provider groups; the
    `rates` view then has only their rows."""

    billing_codes: frozenset[str] = frozenset()
    npis: frozenset[str] = frozenset()
    tins: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset(KINDS)  # the file kinds whose arrays become rows

    def sections(self) -> frozenset[str]:
        return frozenset().union(*(KINDS[kind] for kind in self.kinds))


@dataclass
class FileSummary:
    """What one file held and what became of it."""

    header: dict[str, Any] = field(default_factory=dict)
    filtered: int = 0  # items left out by the billing-code filter
    skipped: dict[str, int] = field(default_factory=dict)  # elements of arrays of kinds not asked for
    problems: int = 0
    json_bytes: int = 0  # of JSON text read (after decompression)
    remote_references: list[tuple[str, str]] = field(default_factory=list)  # (provider_group_id, URL)


EVERYTHING = Filters()
_IN_NETWORK_CODE = ROW_SCHEMAS["in_network"].get_field_index("billing_code")
_PRICES_CODE = ROW_SCHEMAS["prices"].get_field_index("billing_code")
_GROUPS_TIN = ROW_SCHEMAS["provider_groups"].get_field_index("tin_value")
_GROUPS_NPI = ROW_SCHEMAS["provider_groups"].get_field_index("npi")


class Flattener:
    """Parts of one document in (`feed`, then `finish`), rows out to the sink. With
    `native`, `in_network` elements go through the C loop (`fastpath.py`) in batches."""

    def __init__(
        self, sink: TableSink, filters: Filters = EVERYTHING, strict: bool = False, native: bool = True
    ) -> None:
        self.sink = sink
        self.filters = filters
        self.strict = strict
        self.summary = FileSummary()
        self._columns = sink.columns
        self._fast = fast_items(write=self._fast_rows, slow=self.decode_element) if native else None
        self._keep_codes = pa.array(sorted(filters.billing_codes), pa.string())
        self._keep_groups = [  # the NPI and TIN filters on provider-group columns, as Arrow sets
            (column, pa.array(sorted(wanted), pa.string()))
            for wanted, column in ((filters.tins, _GROUPS_TIN), (filters.npis, _GROUPS_NPI))
            if wanted
        ]
        self._sections = filters.sections()
        self._handlers: dict[str, Callable[[Any, Element], None]] = {
            "in_network": self._in_network,
            "provider_references": self._provider_reference,
            "provider_groups": self._standalone_group,
            "out_of_network": self._out_of_network,
            "reporting_structure": self._reporting_structure,
        }

    def feed(self, part: Part) -> None:
        if isinstance(part, Element) and part.key not in self._sections:
            self.summary.skipped[part.key] = self.summary.skipped.get(part.key, 0) + 1
            return
        if self._fast is not None:
            if isinstance(part, Element) and part.key == "in_network":
                self._fast.add(part)
                return
            self._fast.flush()  # rows stay in document order
        if isinstance(part, Member):
            if part.key in HEADER_FIELDS:
                self.summary.header[part.key] = self._header_value(part)
            return
        if isinstance(part, ArrayEnd):
            return
        self.decode_element(part)

    def finish(self) -> None:
        """The document ended: the rows still held in a batch."""
        if self._fast is not None:
            self._fast.flush()

    def decode_element(self, part: Element) -> None:
        """One element the exact (slow) way: msgspec into the schema's shapes, then rows."""
        try:
            part.raw.decode("utf-8")  # msgspec checks the fields it decodes, not Raw ones
        except UnicodeDecodeError as exc:
            where = part.offset + exc.start
            self.problem(part.offset, part.key, part.index, "encoding", f"invalid UTF-8 at byte {where}")
            return
        try:
            element = DECODERS[part.key].decode(part.raw)
        except msgspec.DecodeError as exc:  # ValidationError (schema) or malformed JSON
            self.problem(part.offset, part.key, part.index, "schema", _described(exc))
            return
        self._handlers[part.key](element, part)

    def problem(self, offset: int, section: str, element: int | None, kind: str, message: str) -> None:
        if self.strict:
            raise SchemaProblem(offset, f"{section}[{element}]: {message}")
        problems = self._columns["problems"]
        problems["offset"].append(offset)
        problems["section"].append(section)
        problems["element"].append(element)
        problems["kind"].append(kind)
        problems["message"].append(message)
        self.summary.problems += 1
        self.sink.added("problems")

    def _header_value(self, part: Member) -> Any:
        try:
            value = json.loads(part.raw)
        except ValueError as exc:
            self.problem(part.offset, part.key, None, "json", str(exc))
            return None
        return value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value)

    def _exact_amounts(self, texts: list[str], part: Element, field: str) -> bool:
        """Whether every amount is an exact decimal(38, 18), by Arrow's own rule (the one the
        column is built with); if not, the element is a problem, before any of its rows."""
        bad = _inexact_amount(texts)
        if bad is None:
            return True
        message = f"{field} {bad} is not an exact decimal of at most 20 digits before the point and 18 after"
        self.problem(part.offset, part.key, part.index, "amount", message)
        return False

    # -- in_network ---------------------------------------------------------------------------

    def _fast_rows(self, rows: FastRows) -> None:
        """Rows from the C loop, filtered as `_in_network` and `_groups` filter theirs."""
        items, prices, groups = rows.in_network, rows.prices, rows.provider_groups
        if self.filters.billing_codes:
            keep = pc.is_in(items[_IN_NETWORK_CODE], value_set=self._keep_codes)
            self.summary.filtered += len(keep) - pc.sum(keep).as_py() if len(keep) else 0
            items = [column.filter(keep) for column in items]
            keep = pc.is_in(prices[_PRICES_CODE], value_set=self._keep_codes)
            prices = [column.filter(keep) for column in prices]
            keep = pc.is_in(rows.group_codes, value_set=self._keep_codes)  # an item left out, its groups too
            groups = [column.filter(keep) for column in groups]
        for column, wanted in self._keep_groups:
            keep = pc.is_in(groups[column], value_set=wanted)
            groups = [array.filter(keep) for array in groups]
        self.sink.append("in_network", items)
        self.sink.append("prices", prices)
        if len(groups[0]):
            self.sink.append("provider_groups", groups)

    def _in_network(self, item: InNetworkItem, part: Element) -> None:
        code = raw_text(item.billing_code)
        if self.filters.billing_codes and code not in self.filters.billing_codes:
            self.summary.filtered += 1
            return
        amounts = [raw_text(p.negotiated_rate) for rate in item.negotiated_rates for p in rate.negotiated_prices]
        if not self._exact_amounts(amounts, part, "negotiated_rate"):
            return
        prices = self._prices(item, part.index, code)
        row = self._columns["in_network"]
        row["item"].append(part.index)
        row["negotiation_arrangement"].append(item.negotiation_arrangement)
        row["name"].append(item.name)
        row["billing_code_type"].append(item.billing_code_type)
        row["billing_code_type_version"].append(item.billing_code_type_version)
        row["billing_code"].append(code)
        row["description"].append(item.description)
        row["severity_of_illness"].append(item.severity_of_illness)
        row["bundled_codes"].append(_codes_json(item.bundled_codes))
        row["covered_services"].append(_codes_json(item.covered_services))
        row["negotiated_rates"].append(len(item.negotiated_rates))
        row["prices"].append(prices)
        self.sink.added("in_network")

    def _prices(self, item: InNetworkItem, index: int, code: str) -> int:
        """Append the item's prices (and its rates' inline provider groups); how many prices."""
        columns = self._columns["prices"]
        count = 0
        for rate_index, rate in enumerate(item.negotiated_rates):
            if rate.provider_groups:
                ref = f"inline:{index}.{rate_index}"
                self._groups(ref, "inline", rate.provider_groups, [])
                refs = [ref]
            else:
                refs = [raw_text(r) for r in rate.provider_references]
            for price_index, price in enumerate(rate.negotiated_prices):
                columns["item"].append(index)
                columns["rate"].append(rate_index)
                columns["price"].append(price_index)
                columns["billing_code_type"].append(item.billing_code_type)
                columns["billing_code"].append(code)
                columns["provider_refs"].append(refs)
                columns["negotiated_type"].append(price.negotiated_type)
                columns["negotiated_rate"].append(_amount(price.negotiated_rate))
                columns["expiration_date"].append(price.expiration_date)
                columns["billing_class"].append(price.billing_class)
                columns["setting"].append(price.setting)
                columns["service_code"].append(price.service_code)
                columns["billing_code_modifier"].append(price.billing_code_modifier)
                columns["additional_information"].append(price.additional_information)
            count += len(rate.negotiated_prices)
        self.sink.added("prices", count)
        return count

    # -- provider groups ------------------------------------------------------------------------

    def _provider_reference(self, reference: ProviderReference, part: Element) -> None:
        ref = raw_text(reference.provider_group_id)
        if reference.location and not reference.provider_groups:
            self.summary.remote_references.append((ref, reference.location))
            return
        self._groups(ref, "references", reference.provider_groups, reference.network_name)

    def _groups(self, ref: str, source: str, groups: list[ProviderGroup], networks: list[str]) -> None:
        columns = self._columns["provider_groups"]
        added = 0
        for group_index, group in enumerate(groups):
            tin = raw_text(group.tin.value)
            if self.filters.tins and tin not in self.filters.tins:
                continue
            npis: list[str | None] = [raw_text(n) for n in group.npi] or [None]
            if self.filters.npis:
                npis = [n for n in npis if n in self.filters.npis]
            for npi in npis:
                columns["provider_ref"].append(ref)
                columns["source"].append(source)
                columns["group"].append(group_index)
                columns["npi"].append(npi)
                columns["tin_type"].append(group.tin.type)
                columns["tin_value"].append(tin)
                columns["business_name"].append(group.tin.business_name)
                columns["network_name"].append(networks)
            added += len(npis)
        self.sink.added("provider_groups", added)

    def _standalone_group(self, group: ProviderGroup, part: Element) -> None:
        """A group of a provider reference file on its own (what a v1 `location` points at):
        referred to by the file's name, as the in-network files that point at it do not say."""
        self._groups(self.sink.document, "file", [group], [])

    def add_remote_groups(self, ref: str, groups: list[ProviderGroup]) -> None:
        """The groups of a reference fetched from its `location` (v1)."""
        self._groups(ref, "remote", groups, [])

    # -- table of contents ------------------------------------------------------------------------

    def _reporting_structure(self, entry: ReportingStructure, part: Element) -> None:
        columns = self._columns["table_of_contents"]
        added = 0
        plans: list[ReportingPlan | None] = list(entry.reporting_plans) or [None]
        for plan in plans:
            for kind, location, description in listed_files(entry):
                columns["entry"].append(part.index)
                columns["plan_name"].append(plan.plan_name if plan else None)
                columns["plan_id_type"].append(plan.plan_id_type if plan else None)
                columns["plan_id"].append(raw_text_or_none(plan.plan_id) if plan else None)
                columns["plan_market_type"].append(plan.plan_market_type if plan else None)
                columns["plan_sponsor_name"].append(plan.plan_sponsor_name if plan else None)
                columns["file_kind"].append(kind)
                columns["description"].append(description)
                columns["location"].append(location)
                added += 1
        self.sink.added("table_of_contents", added)

    # -- out_of_network (allowed amounts) -----------------------------------------------------------

    def _out_of_network(self, item: OutOfNetworkItem, part: Element) -> None:
        code = raw_text(item.billing_code)
        if self.filters.billing_codes and code not in self.filters.billing_codes:
            self.summary.filtered += 1
            return
        payments = [payment for amount in item.allowed_amounts for payment in amount.payments]
        if not self._exact_amounts([raw_text(p.allowed_amount) for p in payments], part, "allowed_amount"):
            return
        charges = [raw_text(provider.billed_charge) for p in payments for provider in p.providers]
        if not self._exact_amounts(charges, part, "billed_charge"):
            return
        columns = self._columns["allowed_amounts"]
        added = 0
        for amount in item.allowed_amounts:
            tin = raw_text(amount.tin.value)
            for payment in amount.payments:
                providers: list[PaymentProvider | None] = list(payment.providers) or [None]
                for provider in providers:
                    npis: list[str | None] = [raw_text(n) for n in provider.npi] if provider else []
                    for npi in npis or [None]:
                        columns["item"].append(part.index)
                        columns["name"].append(item.name)
                        columns["billing_code_type"].append(item.billing_code_type)
                        columns["billing_code_type_version"].append(item.billing_code_type_version)
                        columns["billing_code"].append(code)
                        columns["description"].append(item.description)
                        columns["tin_type"].append(amount.tin.type)
                        columns["tin_value"].append(tin)
                        columns["billing_class"].append(amount.billing_class)
                        columns["setting"].append(amount.setting)
                        columns["service_code"].append(amount.service_code)
                        columns["allowed_amount"].append(_amount(payment.allowed_amount))
                        columns["billing_code_modifier"].append(payment.billing_code_modifier)
                        columns["billed_charge"].append(_amount(provider.billed_charge) if provider else None)
                        columns["npi"].append(npi)
                        added += 1
        self.sink.added("allowed_amounts", added)


def listed_files(entry: ReportingStructure) -> list[tuple[str, str, str | None]]:
    """A table-of-contents entry's files: (kind, URL, description), in-network ones first."""
    files = [("in-network", f.location, f.description) for f in entry.in_network_files]
    if entry.allowed_amount_file is not None:
        files.append(("allowed-amount", entry.allowed_amount_file.location, entry.allowed_amount_file.description))
    return files


def plan_ids(entry: ReportingStructure) -> set[str]:
    """The ids a plan filter may name: each plan's id (HIOS or EIN) and its name."""
    ids = {raw_text_or_none(p.plan_id) for p in entry.reporting_plans}
    return {i for i in ids if i} | {p.plan_name for p in entry.reporting_plans if p.plan_name}


def _amount(raw: msgspec.Raw) -> str:
    """An amount's published digits (Arrow turns them into an exact decimal)."""
    return raw_text(raw)


def _inexact_amount(texts: list[str]) -> str | None:
    """The first text Arrow cannot make an exact AMOUNT, if any."""
    refused = (pa.ArrowInvalid, pa.ArrowNotImplementedError)
    try:
        pa.array(texts, pa.string()).cast(AMOUNT)
        return None
    except refused:
        for text in texts:
            try:
                pa.array([text], pa.string()).cast(AMOUNT)
            except refused:
                return text
    return None


def _codes_json(codes: list[CodeRef]) -> str | None:
    if not codes:
        return None
    return json.dumps(
        [
            {
                "billing_code_type": c.billing_code_type,
                "billing_code_type_version": c.billing_code_type_version,
                "billing_code": raw_text(c.billing_code),
                "description": c.description,
            }
            for c in codes
        ]
    )


def _described(exc: msgspec.DecodeError) -> str:
    """msgspec's message, with its `$` path read as the element's own."""
    return str(exc).replace("`$.", "`").replace("`$`", "the element")
