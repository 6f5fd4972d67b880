"""The structural scanner of price-transparency files: members whole, arrays element by
element, at any block size, and broken documents refused with the byte offset."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from biomarkerflow.plugins.price_transparency.scan import ArrayEnd, Element, JsonStructureError, Member, scan

CMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms-mrf"
STREAMED = frozenset({"in_network", "provider_references"})


def parts(document: bytes, block: int, streamed: frozenset[str] = STREAMED) -> dict[str, Any]:
    """The document put back together from the scan: members decoded, arrays as lists."""
    rebuilt: dict[str, Any] = {}
    offsets_ok = True
    for part in scan(io.BytesIO(document), streamed, block_bytes=block):
        if isinstance(part, Member):
            rebuilt[part.key] = json.loads(part.raw)
            offsets_ok &= document[part.offset :].lstrip().startswith(part.raw)
        elif isinstance(part, ArrayEnd):
            assert len(rebuilt.setdefault(part.key, [])) == part.elements
            assert document[part.offset : part.offset + 1] == b"]"
        else:
            assert isinstance(part, Element)
            items = rebuilt.setdefault(part.key, [])
            assert part.index == len(items)
            items.append(json.loads(part.raw))
            offsets_ok &= document[part.offset : part.offset + len(part.raw)] == part.raw
    assert offsets_ok
    return rebuilt


def cms_files() -> list[Path]:
    return sorted(CMS.glob("v*/*/*.json"))


@pytest.mark.parametrize("path", cms_files(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_every_cms_example_comes_back_whole(path: Path, block: int) -> None:
    document = path.read_bytes()
    assert parts(document, block) == json.loads(document)


def test_strings_with_brackets_quotes_and_backslashes_do_not_confuse_it() -> None:
    tricky = {
        "name": 'a "quoted" {name} [with] , : and \\ backslash \\"',
        "in_network": [{"d": "}]", "e": "\\\\"}, {"x": [1, {"y": '\\\\\\"'}]}, {}, [], "text", 3],
        "provider_references": [],
        "nested": {"in_network": [1, 2]},
        "tail": "\\",
    }
    document = json.dumps(tricky).encode()
    for block in (1, 2, 3, 5, 11, 4096):
        assert parts(document, block) == tricky


def test_random_documents_at_random_block_sizes() -> None:
    generator = random.Random(7)

    def value(depth: int) -> Any:
        kind = generator.choice("sndlo" if depth < 4 else "sn")
        if kind == "s":
            return "".join(generator.choice('ab"\\{}[],: \n\té') for _ in range(generator.randint(0, 6)))
        if kind == "n":
            return generator.choice([0, -1.5, 1e300, 40.0000000001, 12345678901234567890])
        if kind == "d":
            return {value(9): value(depth + 1) for _ in range(generator.randint(0, 3))}
        if kind == "l":
            return [value(depth + 1) for _ in range(generator.randint(0, 4))]
        return None

    for _ in range(200):
        document_value = {"in_network": [value(1) for _ in range(generator.randint(0, 5))], "k": value(1)}
        document_value.update({value(9): value(1) for _ in range(generator.randint(0, 3))})
        indent = generator.choice([None, 2])
        document = json.dumps(document_value, indent=indent, ensure_ascii=generator.random() < 0.5).encode()
        assert parts(document, generator.randint(1, 50)) == json.loads(document)


@pytest.mark.parametrize(
    ("document", "offset", "words"),
    [
        (b"", 0, "empty document"),
        (b'{"a": [1, 2', 11, "truncated"),
        (b'{"a": "unterminated', 19, "inside a string"),
        (b'[{"a": 1}]', 0, "found an array"),
        (b'{"a": 1}}', 8, "nothing is open"),
        (b'{"a": 1} {"b": 2}', 9, "end of the document"),
        (b'{"a" 1}', 6, "expected a member"),
        (b'{"a": 1,}', 8, "expected a member"),
        (b'{"in_network": [1,,2]}', 18, "expected an element"),
        (b'{"a": }', 6, "expected a value"),
        (b"{a: 1}", 2, "member name in quotes"),
    ],
)
def test_broken_documents_say_where_and_what(document: bytes, offset: int, words: str) -> None:
    for block in (1, 3, 1 << 20):
        with pytest.raises(JsonStructureError) as caught:
            list(scan(io.BytesIO(document), STREAMED, block_bytes=block))
        assert caught.value.offset == offset and words in caught.value.message, caught.value


def test_memory_holds_one_element_not_the_array() -> None:
    """Blocks behind the element being cut are let go: 2,000 elements of 1 kB in 4 kB blocks."""
    item = json.dumps({"billing_code": "x" * 1000})
    document = ('{"in_network": [' + ",".join([item] * 2000) + '], "version": "1.0.0"}').encode()
    from biomarkerflow.plugins.price_transparency import scan as scanning

    held: list[int] = []
    original = scanning._Cutter.trim

    def trim(self: Any) -> None:
        original(self)
        held.append(sum(len(b.data) for b in self.blocks))

    scanning._Cutter.trim = trim  # type: ignore[method-assign]
    try:
        found = list(scan(io.BytesIO(document), STREAMED, block_bytes=4096))
    finally:
        scanning._Cutter.trim = original  # type: ignore[method-assign]
    assert len(found) == 2002  # the elements, their array's end and the version
    assert max(held) <= 2 * 4096
