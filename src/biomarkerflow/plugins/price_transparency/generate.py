"""Deterministic machine-readable files of any size, with the quirks real publishers have,
and the row counts they must give: for tests, the demo and benchmarks.

    python -m biomarkerflow.plugins.price_transparency.generate out.json --items 20000

Quirks (each a switch): provider references after `in_network`; provider group ids that
look like floats (`40.0000000001`, as Anthem publishes); v1 inline provider groups instead
of references; pretty-printed or minified; rates with many decimals. The file is written
item by item, so a 3 GB file takes no more memory than a small one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PLACEHOLDER = re.compile(r'"REF"|"RATE"')
CODES = ["27447", "99213", "99214", "70553", "J3490", "0001U", "G0463", "81001"]


@dataclass(frozen=True)
class Shape:
    items: int = 100
    rates_per_item: int = 20
    prices_per_rate: int = 2
    groups: int = 200  # provider references
    npis_per_group: int = 5
    references_last: bool = False
    float_ids: bool = False
    inline_groups: bool = False  # v1: groups inside each negotiated rate
    pretty: bool = False
    seed: int = 1


@dataclass(frozen=True)
class Expected:
    in_network_items: int
    prices: int
    provider_group_rows: int
    rates_rows: int


def write(path: Path, shape: Shape) -> Expected:
    """Write the file (gzip when the name ends in .gz); the rows flattening it must give."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as stream:
        return _document(stream, shape)


def _dumps(value: Any, pretty: bool) -> str:
    return json.dumps(value, indent=2) if pretty else json.dumps(value, separators=(",", ":"))


def _group_id(index: int, shape: Shape) -> str:
    return f"{index}.0000000001" if shape.float_ids else str(index)


def _document(stream: IO[str], shape: Shape) -> Expected:
    generator = random.Random(shape.seed)
    newline = "\n" if shape.pretty else ""
    head = {
        "reporting_entity_name": "Generated Health Plan",
        "reporting_entity_type": "health insurance issuer",
        "plan_name": "generated plan",
        "plan_id_type": "hios",
        "plan_id": "1234567890",
        "plan_market_type": "group",
        "last_updated_on": "2026-01-01",
        "version": "1.0.0" if shape.inline_groups else "2.0.0",
    }
    stream.write("{" + newline + _dumps(head, shape.pretty)[1:-1].strip() + "," + newline)
    group_rows = 0
    if not shape.references_last:
        group_rows = _references(stream, shape, newline)
        stream.write("," + newline)
    prices, rates_rows, inline_rows = _in_network(stream, shape, generator, newline)
    if shape.references_last:
        stream.write("," + newline)
        group_rows = _references(stream, shape, newline)
    stream.write(newline + "}" + newline)
    return Expected(shape.items, prices, group_rows + inline_rows, rates_rows)


def _npis(group: int, shape: Shape) -> list[int]:
    return [1_000_000_000 + group * shape.npis_per_group + n for n in range(shape.npis_per_group)]


def _references(stream: IO[str], shape: Shape, newline: str) -> int:
    stream.write('"provider_references":[' + newline)
    count = 0 if shape.inline_groups else shape.groups
    for group in range(count):
        reference = {
            "provider_group_id": "ID",
            "network_name": ["Generated PPO"],
            "provider_groups": [{"npi": _npis(group, shape), "tin": {"type": "ein", "value": f"{group:02d}-0000000"}}],
        }
        text = _dumps(reference, shape.pretty).replace('"ID"', _group_id(group, shape), 1)
        stream.write(("," + newline if group else "") + text)
    stream.write(newline + "]")
    return count * shape.npis_per_group


def _in_network(stream: IO[str], shape: Shape, generator: random.Random, newline: str) -> tuple[int, int, int]:
    stream.write('"in_network":[' + newline)
    prices = rates_rows = inline_rows = 0
    for index in range(shape.items):
        rates = []
        for _ in range(shape.rates_per_item):
            groups = generator.sample(range(shape.groups), k=min(2, shape.groups))
            rate: dict[str, Any] = {
                "negotiated_prices": [
                    {
                        "negotiated_type": "negotiated",
                        "negotiated_rate": "RATE",
                        "expiration_date": "9999-12-31",
                        "service_code": ["11", "22"],
                        "billing_class": "professional",
                        "setting": "outpatient",
                        "billing_code_modifier": [],
                    }
                    for _ in range(shape.prices_per_rate)
                ]
            }
            if shape.inline_groups:
                rate["provider_groups"] = [
                    {"npi": _npis(g, shape), "tin": {"type": "ein", "value": f"{g:02d}-0000000"}} for g in groups
                ]
                inline_rows += len(groups) * shape.npis_per_group
            else:
                rate["provider_references"] = ["REF"] * len(groups)
            rates.append((rate, groups))
            prices += shape.prices_per_rate
            rates_rows += shape.prices_per_rate * len(groups) * shape.npis_per_group
        item = {
            "negotiation_arrangement": "ffs",
            "name": f"service {index}",
            "billing_code_type": "CPT",
            "billing_code_type_version": "2026",
            # Codes repeat across items, as in published files (one item per code and arrangement).
            "billing_code": CODES[index] if index < len(CODES) else str(10000 + (index * 7919) % 500),
            "description": "generated service",
            "negotiated_rates": [rate for rate, _ in rates],
        }
        references = [_group_id(group, shape) for _, groups in rates for group in groups]
        amounts = [
            f"{generator.randint(1, 99999)}.{generator.randint(0, 10**12):012d}"
            for _ in range(shape.rates_per_item * shape.prices_per_rate)
        ]
        text = _filled(_dumps(item, shape.pretty), references, amounts)
        stream.write(("," + newline if index else "") + text)
    stream.write(newline + "]")
    return prices, rates_rows, inline_rows


def _filled(text: str, references: list[str], amounts: list[str]) -> str:
    """The placeholders replaced, in one pass: numbers written as published, never through a float."""
    values = {'"REF"': iter(references), '"RATE"': iter(amounts)}
    return PLACEHOLDER.sub(lambda match: next(values[match.group(0)]), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--items", type=int, default=Shape.items)
    parser.add_argument("--rates", type=int, default=Shape.rates_per_item)
    parser.add_argument("--references-last", action="store_true")
    parser.add_argument("--float-ids", action="store_true")
    parser.add_argument("--inline-groups", action="store_true")
    parser.add_argument("--pretty", action="store_true")
    args = parser.parse_args()
    shape = Shape(
        items=args.items,
        rates_per_item=args.rates,
        references_last=args.references_last,
        float_ids=args.float_ids,
        inline_groups=args.inline_groups,
        pretty=args.pretty,
    )
    print(json.dumps(write(args.path, shape).__dict__))


if __name__ == "__main__":
    main()
