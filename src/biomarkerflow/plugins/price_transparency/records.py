"""The shapes of the elements a machine-readable file is cut into, schema v1.x and v2.x.

Decoded with msgspec (C speed, a few kB at a time). Identifiers and amounts are kept as
published: `Raw` holds a value's exact JSON text (`40.0000000001` stays that, never a
float), turned into text by `raw_text`. Fields the schema lists as optional default to
empty; fields this platform does not know are ignored, as the schema allows additions.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec import Raw, Struct

__all__ = [
    "AllowedAmount",
    "CodeRef",
    "InNetworkItem",
    "NegotiatedPrice",
    "NegotiatedRate",
    "OutOfNetworkItem",
    "Payment",
    "PaymentProvider",
    "ProviderGroup",
    "ProviderReference",
    "ReportingStructure",
    "Tin",
    "raw_text",
    "raw_text_or_none",
]


class Tin(Struct):
    type: str
    value: Raw
    business_name: str | None = None


class ProviderGroup(Struct):
    tin: Tin
    npi: list[Raw] = []


class ProviderReference(Struct):
    """An entry of the top-level `provider_references`: v1 may give a remote `location` instead of groups."""

    provider_group_id: Raw
    provider_groups: list[ProviderGroup] = []
    network_name: list[str] = []
    location: str | None = None


class NegotiatedPrice(Struct):
    negotiated_type: str
    negotiated_rate: Raw
    expiration_date: str
    billing_class: str
    service_code: list[str] = []
    setting: str | None = None
    billing_code_modifier: list[str] = []
    additional_information: str | None = None


class NegotiatedRate(Struct):
    negotiated_prices: list[NegotiatedPrice]
    provider_references: list[Raw] = []
    provider_groups: list[ProviderGroup] = []  # v1: inline, instead of references


class CodeRef(Struct):
    """A code contained in a bundle (`bundled_codes`) or a capitation (`covered_services`)."""

    billing_code_type: str
    billing_code: Raw
    billing_code_type_version: str | None = None
    description: str | None = None


class InNetworkItem(Struct):
    negotiation_arrangement: str
    name: str
    billing_code_type: str
    billing_code: Raw
    negotiated_rates: list[NegotiatedRate]
    billing_code_type_version: str | None = None
    description: str | None = None
    severity_of_illness: str | None = None
    bundled_codes: list[CodeRef] = []
    covered_services: list[CodeRef] = []


class PaymentProvider(Struct):
    billed_charge: Raw
    npi: list[Raw] = []


class Payment(Struct):
    allowed_amount: Raw
    providers: list[PaymentProvider] = []
    billing_code_modifier: list[str] = []


class AllowedAmount(Struct):
    tin: Tin
    payments: list[Payment]
    billing_class: str
    service_code: list[str] = []
    setting: str | None = None


class OutOfNetworkItem(Struct):
    name: str
    billing_code_type: str
    billing_code: Raw
    allowed_amounts: list[AllowedAmount]
    billing_code_type_version: str | None = None
    description: str | None = None


class FileLocation(Struct):
    location: str
    description: str | None = None


class ReportingPlan(Struct):
    plan_name: str | None = None
    plan_id_type: str | None = None
    plan_id: Raw = msgspec.field(default_factory=lambda: Raw(b"null"))
    plan_market_type: str | None = None
    plan_sponsor_name: str | None = None


class ReportingStructure(Struct):
    """An entry of a table of contents: plans, and the files that hold their rates."""

    reporting_plans: list[ReportingPlan] = []
    in_network_files: list[FileLocation] = []
    allowed_amount_file: FileLocation | None = None


DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "in_network": msgspec.json.Decoder(InNetworkItem),
    "reporting_structure": msgspec.json.Decoder(ReportingStructure),
    "provider_references": msgspec.json.Decoder(ProviderReference),
    "provider_groups": msgspec.json.Decoder(ProviderGroup),  # a provider reference file's own
    "out_of_network": msgspec.json.Decoder(OutOfNetworkItem),
}


def raw_text_or_none(raw: Raw) -> str | None:
    """`raw_text`, or None for a JSON null (an optional field left out)."""
    return None if bytes(raw) == b"null" else raw_text(raw)


def raw_text(raw: Raw) -> str:
    """A published value as text: a string's characters, or a number's exact digits."""
    text = bytes(raw)
    if text[:1] == b'"':
        return str(json.loads(text))
    return text.decode("ascii")
