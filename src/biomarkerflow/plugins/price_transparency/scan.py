"""Cut a huge JSON document into its parts without parsing all of it: a structural scan.

A machine-readable file is one JSON object whose `in_network` (or `provider_references`,
`out_of_network`, `reporting_structure`) array can hold gigabytes. The scanner reads the
document block by block and, with numpy, finds per block the quotes that are not escaped,
which bytes lie inside strings, and how deep every bracket outside a string is. From that
it reports every member of the root object: small members whole (`Member`), and the
elements of the arrays asked for one at a time (`Element`, its raw bytes and byte offset),
so memory holds one element, never the array. Decoding an element is the caller's job (a
fast JSON decoder on a few kilobytes).

Broken input raises `JsonStructureError` with the byte offset and what was expected:
brackets that do not match, a document that ends early (a truncated download), text
after the root object, a root that is not an object.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from biomarkerflow.plugins.price_transparency import native

BLOCK_BYTES = 8 << 20
QUOTE, BACKSLASH = 0x22, 0x5C
OPENING = {ord("{"): ord("}"), ord("["): ord("]")}
_CLASS = np.zeros(256, dtype=np.int8)  # +1 opens, -1 closes, 2 separates (, :), 0 other
_CLASS[[ord("{"), ord("[")]] = 1
_CLASS[[ord("}"), ord("]")]] = -1
_CLASS[[ord(","), ord(":")]] = 2
_WHITESPACE = b" \t\r\n"


class JsonStructureError(ValueError):
    """The document is not well-formed JSON at `offset` (bytes from its start)."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"byte {offset}: {message}")
        self.offset = offset
        self.message = message


@dataclass(frozen=True)
class Member:
    """A member of the root object, its value whole: e.g. `plan_name`, `version`."""

    key: str
    raw: bytes
    offset: int


@dataclass(frozen=True)
class Element:
    """One element of a streamed array member (e.g. one `in_network` item), raw bytes."""

    key: str
    raw: bytes
    offset: int
    index: int


@dataclass(frozen=True)
class ArrayEnd:
    """A streamed array member ended, after `elements` elements (0: it was empty)."""

    key: str
    elements: int
    offset: int


@dataclass
class _Block:
    data: bytes
    start: int  # offset of data[0] in the document


class _State:
    """What the scan knows between blocks."""

    def __init__(self, native: bool) -> None:
        self.native = native
        self.in_string = False
        self.backslashes = 0  # trailing backslashes of the last block, inside a string
        self.depth = 0
        self.seen_root = False
        self.closed_root = False
        self.root_end = -1  # offset of the root's closing brace


Part = Member | Element | ArrayEnd


def scan(
    stream: BinaryIO, streamed: frozenset[str], block_bytes: int = BLOCK_BYTES, native: bool = True
) -> Iterator[Part]:
    """Every member of the root object, in document order; arrays named in `streamed` as
    one `Element` per array element, then an `ArrayEnd`. `native`: the C loop when it can
    be built (`native.py`), else numpy."""
    state = _State(native)
    cutter = _Cutter(streamed)
    offset = 0
    while block := stream.read(block_bytes):
        cutter.add(_Block(block, offset))
        for position, kind, depth in _events(block, offset, state):
            yield from cutter.event(position, kind, depth)
        if state.closed_root:
            _require_only_whitespace(block, offset, state.root_end)
        offset += len(block)
        cutter.trim()
    if not state.seen_root:
        raise JsonStructureError(offset, "expected a JSON object, found an empty document")
    if state.in_string:
        raise JsonStructureError(offset, "the document ends inside a string (truncated?)")
    if not state.closed_root:
        raise JsonStructureError(offset, f"the document ends at depth {state.depth}: expected more (truncated?)")


def _require_only_whitespace(block: bytes, start: int, root_end: int) -> None:
    """After the root object, only whitespace may follow."""
    after = block[max(0, root_end + 1 - start) :]
    extra = len(after) - len(after.lstrip(_WHITESPACE))
    if extra < len(after):
        raise JsonStructureError(
            start + max(0, root_end + 1 - start) + extra, "expected the end of the document after the root object"
        )


def _events(block: bytes, start: int, state: _State) -> Iterator[tuple[int, int, int]]:
    """(offset, byte, depth after it) of the structural bytes at depth <= 2 outside strings."""
    library = native.load() if state.native else None
    events = _native_events(library, block, start, state) if library else _numpy_events(block, start, state)
    for position, kind, depth in events:
        _check_root(state, start + position, kind, depth)
        yield start + position, kind, depth


EVENTS_PER_CALL = 1 << 16


def _native_events(library: ctypes.CDLL, block: bytes, start: int, state: _State) -> Iterator[tuple[int, int, int]]:
    """The C loop's events; the same as `_numpy_events`, several times faster."""
    positions = np.empty(EVENTS_PER_CALL, np.int64)
    kinds = np.empty(EVENTS_PER_CALL, np.uint8)
    depths = np.empty(EVENTS_PER_CALL, np.int64)
    scan_state = native.ScanState(state.in_string, state.backslashes % 2, state.depth, -1)
    stop = ctypes.c_int64(0)
    at = 0
    while at < len(block):
        count = library.mrf_events(
            block,
            len(block),
            at,
            ctypes.byref(scan_state),
            native.pointer(positions, ctypes.c_int64),
            native.pointer(kinds, ctypes.c_uint8),
            native.pointer(depths, ctypes.c_int64),
            EVENTS_PER_CALL,
            ctypes.byref(stop),
        )
        state.in_string, state.backslashes, state.depth = (
            bool(scan_state.in_string),
            scan_state.escaped,
            scan_state.depth,
        )
        yield from zip(positions[:count].tolist(), kinds[:count].tolist(), depths[:count].tolist(), strict=True)
        if scan_state.error_at >= 0:
            bad = scan_state.error_at
            raise JsonStructureError(start + bad, f"unexpected '{chr(block[bad])}': nothing is open here")
        at = stop.value


def _numpy_events(block: bytes, start: int, state: _State) -> Iterator[tuple[int, int, int]]:
    data = np.frombuffer(block, dtype=np.uint8)
    quotes = _real_quotes(data, block, state)
    classes = _CLASS[data]
    candidates = np.flatnonzero(classes)
    # A byte is inside a string when an odd number of real quotes precede it, counted from
    # the string state this block started in.
    inside = (np.searchsorted(quotes, candidates) + state.in_string) % 2 == 1
    structural = candidates[~inside]
    state.in_string ^= bool(len(quotes) % 2)
    if len(structural) == 0:
        return
    steps = classes[structural].astype(np.int64)
    steps[steps == 2] = 0
    depths = state.depth + np.cumsum(steps)
    negative = np.flatnonzero(depths < 0)
    end = int(negative[0]) if len(negative) else len(depths)  # the events before a stray bracket come first
    state.depth = int(depths[-1])
    shallow = depths[:end] <= 2
    for position, depth in zip(structural[:end][shallow].tolist(), depths[:end][shallow].tolist(), strict=True):
        yield position, block[position], depth
    if len(negative):
        bad = int(structural[end])
        raise JsonStructureError(start + bad, f"unexpected '{chr(block[bad])}': nothing is open here")


def _check_root(state: _State, offset: int, kind: int, depth: int) -> None:
    if state.closed_root:
        raise JsonStructureError(offset, "expected the end of the document after the root object")
    if kind in OPENING and depth == 1:
        if state.seen_root:
            return
        if kind != ord("{"):
            raise JsonStructureError(offset, "expected a JSON object at the root, found an array")
        state.seen_root = True
    elif depth == 0:
        if kind != ord("}"):
            raise JsonStructureError(offset, f"expected '}}' to end the root object, found '{chr(kind)}'")
        state.closed_root = True
        state.root_end = offset


def _real_quotes(data: np.ndarray, block: bytes, state: _State) -> np.ndarray:
    """Offsets (in the block) of the quotes that open or close strings: those preceded by
    an even number of backslashes (counting the previous block's trailing ones)."""
    quotes = np.flatnonzero(data == QUOTE)
    carried, state.backslashes = state.backslashes, 0
    if BACKSLASH not in block:
        if carried % 2 and len(quotes) and quotes[0] == 0:
            return quotes[1:]
        return quotes
    index = np.arange(len(data))
    # For each byte, the offset of the last byte at or before it that is not a backslash.
    last_other = np.maximum.accumulate(np.where(data == BACKSLASH, -1, index))
    reach = np.where(quotes > 0, last_other[np.maximum(quotes - 1, 0)], -1)
    runs = np.where(quotes > 0, quotes - 1 - reach, 0) + np.where(reach == -1, carried, 0)
    end = int(last_other[-1])
    state.backslashes = len(data) - 1 - end + (carried if end == -1 else 0)
    return quotes[runs % 2 == 0]


class _Cutter:
    """Turns the structural events into members and elements, keeping the bytes of only
    the part being cut (from its first byte to the end of the last block read)."""

    def __init__(self, streamed: frozenset[str]) -> None:
        self.streamed = streamed
        self.blocks: list[_Block] = []
        self.member_start: int | None = None  # after the '{' or ',' before a member
        self.key: str | None = None
        self.value_start: int | None = None  # after the member's ':'
        self.streaming = False  # the value is an array cut element by element
        self.slot_start: int | None = None  # after the '[' or ',' before an element
        self.elements = 0
        self.members = 0

    # -- bytes -----------------------------------------------------------------------------

    def add(self, block: _Block) -> None:
        self.blocks.append(block)

    def trim(self) -> None:
        """Drop the blocks before the first byte still needed."""
        needed = self.slot_start if self.streaming else self.member_start
        keep = self.blocks[-1].start if needed is None else needed
        while len(self.blocks) > 1 and self.blocks[1].start <= keep:
            self.blocks.pop(0)

    def slice(self, start: int, end: int) -> bytes:
        """Document bytes [start, end)."""
        parts = []
        for block in self.blocks:
            low, high = max(start, block.start), min(end, block.start + len(block.data))
            if low < high:
                parts.append(block.data[low - block.start : high - block.start])
        return b"".join(parts)

    # -- events ----------------------------------------------------------------------------

    def event(self, offset: int, kind: int, depth: int) -> Iterator[Part]:
        if depth == 1 and kind == ord("{") and self.member_start is None:
            self.member_start = offset + 1  # the root opens
        elif (depth == 1 and kind == ord(",")) or depth == 0:
            yield from self._end_member(offset, last=depth == 0)
            self.member_start = offset + 1
        elif depth == 1 and kind == ord(":"):
            self.key = self._key(offset)
            self.value_start = offset + 1
        elif depth == 2 and kind == ord("[") and self.key in self.streamed and self._value_opens(offset):
            self.streaming, self.slot_start, self.elements = True, offset + 1, 0
        elif (
            self.streaming
            and self.slot_start is not None
            and ((depth == 2 and kind == ord(",")) or (depth == 1 and kind == ord("]")))
        ):
            yield from self._end_element(offset, last=kind == ord("]"))
            self.slot_start = None if kind == ord("]") else offset + 1
            if kind == ord("]"):
                assert self.key is not None
                yield ArrayEnd(self.key, self.elements, offset)

    def _end_member(self, offset: int, last: bool) -> Iterator[Member]:
        assert self.member_start is not None
        if self.key is None:
            text = self.slice(self.member_start, offset).strip(_WHITESPACE)
            if text or not last or self.members:  # `{}` is an empty object; `{,`, `{"a": 1,}` are not JSON
                found = f"found {text[:40]!r}" if text else "found nothing"
                raise JsonStructureError(offset, f'expected a member ("name": value) before this, {found}')
        elif not self.streaming:
            assert self.value_start is not None
            raw = self.slice(self.value_start, offset).strip(_WHITESPACE)
            if not raw:
                raise JsonStructureError(offset, f"expected a value for member '{self.key}'")
            yield Member(self.key, raw, self.value_start)
        elif self.slot_start is not None:
            raise JsonStructureError(offset, f"expected ']' to end the array '{self.key}'")
        self.members += self.key is not None
        self.key, self.value_start, self.streaming = None, None, False

    def _end_element(self, offset: int, last: bool) -> Iterator[Element]:
        assert self.slot_start is not None and self.key is not None
        raw = self.slice(self.slot_start, offset)
        text = raw.strip(_WHITESPACE)
        if not text:
            if last and self.elements == 0:
                return  # an empty array
            raise JsonStructureError(offset, f"expected an element of '{self.key}' before this")
        start = self.slot_start + (len(raw) - len(raw.lstrip(_WHITESPACE)))
        yield Element(self.key, text, start, self.elements)
        self.elements += 1

    def _value_opens(self, offset: int) -> bool:
        """Whether the '[' at `offset` is the first byte of the current member's value."""
        assert self.value_start is not None
        return not self.slice(self.value_start, offset).strip(_WHITESPACE)

    def _key(self, colon: int) -> str:
        """The member name before the colon at `colon`."""
        if self.member_start is None or self.key is not None:
            raise JsonStructureError(colon, "expected ',' or '}' before this ':'")
        text = self.slice(self.member_start, colon).strip(_WHITESPACE)
        try:
            name = json.loads(text)
        except ValueError:
            name = None
        if not isinstance(name, str):
            raise JsonStructureError(colon, f"expected a member name in quotes before ':', found {text[:40]!r}")
        return name
