"""`in_network` elements flattened a batch at a time by the C loop (`_native.c`), straight
into Arrow columns: no Python object per price.

The C loop takes the common shape only; an element it does not recognise (bundles, a type
or field the schema does not allow, malformed JSON) is handed back and
decoded the exact slow way (`Flattener.decode_element`), in document order. A batch that is
not all valid UTF-8 (checked before the C loop, which then writes only whole characters), or
an amount Arrow cannot make an exact decimal, goes the slow way whole, which decides what it
is. So both paths give the same tables, and tests compare them.
"""

from __future__ import annotations

import codecs
import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from biomarkerflow.plugins.price_transparency import native
from biomarkerflow.plugins.price_transparency.scan import Element
from biomarkerflow.plugins.price_transparency.tables import AMOUNT

BATCH_BYTES = 4 << 20
STARTING_ROWS = 1 << 14


@dataclass
class FastRows:
    """Rows of a batch, each table's columns in ROW_SCHEMAS order."""

    in_network: list[pa.Array]
    prices: list[pa.Array]
    provider_groups: list[pa.Array]  # inline (v1) groups
    group_codes: pa.Array  # the billing code of each group row's item (for the code filter)


class _Columns:
    """numpy arrays behind the C `Items` struct, grown when an element does not fit."""

    def __init__(self, rows: int) -> None:
        self.struct = native.CItems()
        self.arrays: dict[str, tuple[np.ndarray, ...]] = {}
        self._allocate(rows)

    def _allocate(self, rows: int) -> None:
        for name in native.SPAN_COLUMNS:
            start, length = np.empty(rows, np.int64), np.empty(rows, np.int32)
            self.arrays[name] = (start, length)
            setattr(
                self.struct,
                name,
                native.CSpans(native.pointer(start, ctypes.c_int64), native.pointer(length, ctypes.c_int32), 0, rows),
            )
        for name in native.INT_COLUMNS:
            values = np.empty(rows, np.int64)
            self.arrays[name] = (values,)
            setattr(self.struct, name, native.CInts(native.pointer(values, ctypes.c_int64), 0, rows))
        self.rows = rows

    def grow(self) -> None:
        """Room for twice as many rows (only called when empty: nothing to copy)."""
        self._allocate(self.rows * 2)

    def count(self, name: str) -> int:
        return int(getattr(self.struct, name).count)

    def empty(self) -> bool:
        return self.count("item_element") == 0

    def ints(self, name: str) -> np.ndarray:
        """A copy: Arrow arrays made from it outlive this batch (the sink holds rows for a run)."""
        return self.arrays[name][0][: self.count(name)].copy()

    def spans(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        start, length = self.arrays[name]
        count = self.count(name)
        return start[:count], length[:count]

    def clear(self) -> None:
        for name in (*native.SPAN_COLUMNS, *native.INT_COLUMNS):
            getattr(self.struct, name).count = 0


class FastItems:
    """Collects `in_network` elements; `flush()` turns them into rows through `write`."""

    def __init__(
        self,
        library: ctypes.CDLL,
        write: Callable[[FastRows], None],
        slow: Callable[[Element], None],
    ) -> None:
        self.library = library
        self.write = write
        self.slow = slow
        self.columns = _Columns(STARTING_ROWS)
        self.parts: list[Element] = []
        self.size = 0

    def add(self, part: Element) -> None:
        self.parts.append(part)
        self.size += len(part.raw)
        if self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        parts, self.parts, self.size = self.parts, [], 0
        lengths = np.fromiter((len(p.raw) for p in parts), np.int64, len(parts))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buffer = bytearray(b"".join(p.raw for p in parts))  # C unescapes strings in place
        if not _utf8(buffer):  # the slow path says which element, and where
            for part in parts:
                self.slow(part)
            return
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer)) if buffer else 0
        status = ctypes.c_int64()
        first = 0  # first element whose rows are in the columns
        at = 0
        while at < len(parts):
            stop = self.library.mrf_items(
                address,
                native.pointer(starts, ctypes.c_int64),
                native.pointer(ends, ctypes.c_int64),
                at,
                len(parts),
                ctypes.byref(self.columns.struct),
                ctypes.byref(status),
            )
            if status.value == native.FULL:
                # The element is read again: undo the unescaping it got in place.
                buffer[starts[stop] : ends[stop]] = parts[stop].raw
                if stop == at and self.columns.empty():
                    self.columns.grow()
                    continue
            self._emit(address, parts, first, stop)
            if status.value == native.BAIL:
                self.slow(parts[stop])
                stop += 1
            first = at = stop

    def _emit(self, address: int, parts: list[Element], first: int, stop: int) -> None:
        """Rows of elements [first, stop) from the columns; or, when Arrow refuses a value,
        those elements the slow way."""
        if self.columns.empty():
            return
        try:
            rows = self._rows(address, parts)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            self.columns.clear()
            for part in parts[first:stop]:
                self.slow(part)
            return
        self.columns.clear()
        self.write(rows)

    def _rows(self, address: int, parts: list[Element]) -> FastRows:
        columns = self.columns
        text = self._text_reader(address)
        indices = np.fromiter((p.index for p in parts), np.int64, len(parts))
        item_index = indices[columns.ints("item_element")]
        code_type, code = text("code_type"), text("code")
        rate_item = columns.ints("rate_item")
        price_rate = columns.ints("price_rate")
        price_item = rate_item[price_rate]
        # A rate's index in its item: its row less the row of its item's first rate.
        first_rate = np.cumsum(columns.ints("item_rates")) - columns.ints("item_rates")
        rate_index = np.arange(len(rate_item)) - first_rate[rate_item]
        inline_refs = pc.binary_join_element_wise(
            "inline:",
            pa.array(item_index[rate_item]).cast(pa.string()),
            ".",
            pa.array(rate_index).cast(pa.string()),
            "",
        )
        # v1: a rate listing its groups inline refers to them alone (as the slow path does).
        refs = pc.if_else(
            pa.array(columns.ints("rate_inline").astype(bool)),
            pa.ListArray.from_arrays(pa.array(np.arange(len(rate_item) + 1, dtype=np.int32)), inline_refs),
            _lists(columns.ints("refs_end"), text("refs")),
        )
        group_rate = columns.ints("group_rate")
        groups, group_row = self._groups(text, inline_refs.take(pa.array(group_rate)))
        nothing = pa.nulls(len(item_index), pa.string())
        items = [
            pa.array(item_index),
            text("arrangement"),
            text("name"),
            code_type,
            text("code_version"),
            code,
            text("description"),
            text("severity"),
            nothing,  # bundled_codes: the C loop takes items without bundles only
            nothing,  # covered_services
            pa.array(columns.ints("item_rates")),
            pa.array(columns.ints("item_prices")),
        ]
        take = pa.array(price_item)
        prices = [
            pa.array(item_index[price_item]),
            pa.array(columns.ints("price_rate_index")),
            pa.array(columns.ints("price_index")),
            code_type.take(take),
            code.take(take),
            refs.take(pa.array(price_rate)),
            text("ntype"),
            text("amount").cast(AMOUNT),
            text("expiration"),
            text("bclass"),
            text("setting"),
            _lists(columns.ints("services_end"), text("services")),
            _lists(columns.ints("modifiers_end"), text("modifiers")),
            text("info"),
        ]
        group_codes = code.take(pa.array(rate_item[group_rate[group_row]]))
        return FastRows(items, prices, groups, group_codes)

    def _groups(self, text: Callable[[str], pa.Array], refs: pa.Array) -> tuple[list[pa.Array], np.ndarray]:
        """Inline provider groups: one row per NPI (a row without one for a group that lists none)."""
        ends = self.columns.ints("npis_end")
        counts = np.diff(ends, prepend=0)
        rows = np.maximum(counts, 1)
        group_row = np.repeat(np.arange(len(ends)), rows)
        # Each row's NPI: its position among the NPIs, or null for a group without any.
        within = np.arange(len(group_row)) - np.repeat(np.cumsum(rows) - rows, rows)
        npi_position = np.repeat(ends - counts, rows) + within
        npis = _npis(text("npis"), npi_position, counts[group_row] > 0)
        take = pa.array(group_row)
        columns = [
            refs.take(take),
            pa.repeat(pa.scalar("inline"), len(group_row)),
            pa.array(self.columns.ints("group_index")[group_row]),
            npis,
            text("tin_type").take(take),
            text("tin_value").take(take),
            text("business_name").take(take),
            pa.ListArray.from_arrays(pa.array(np.zeros(len(group_row) + 1, np.int32)), pa.array([], pa.string())),
        ]
        return columns, group_row

    def _text_reader(self, address: int) -> Callable[[str], pa.Array]:
        """Text columns gathered from their spans in the batch's buffer (at `address`)."""

        def text(name: str) -> pa.Array:
            start, length = self.columns.spans(name)
            data = np.empty(int(np.maximum(length, 0).sum()), np.uint8)
            offsets = np.empty(len(start) + 1, np.int32)
            self.library.mrf_gather(
                address,
                native.pointer(start, ctypes.c_int64),
                native.pointer(length, ctypes.c_int32),
                len(start),
                data.ctypes.data,
                native.pointer(offsets, ctypes.c_int32),
            )
            valid = length >= 0
            mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
            # Valid UTF-8: the input was checked, and unescaping writes only whole characters.
            return pa.StringArray.from_buffers(len(start), pa.py_buffer(offsets), pa.py_buffer(data), mask)

        return text


def _utf8(data: bytearray) -> bool:
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def _npis(values: pa.Array, positions: np.ndarray, present: np.ndarray) -> pa.Array:
    """values[positions] where present, else null."""
    if not len(values):
        return pa.nulls(len(positions), pa.string())
    return values.take(pa.array(np.where(present, positions, 0), mask=~present))


def _lists(ends: np.ndarray, values: pa.Array) -> pa.Array:
    offsets = np.empty(len(ends) + 1, np.int32)
    offsets[0] = 0
    offsets[1:] = ends
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def fast_items(**kwargs: Any) -> FastItems | None:
    """A FastItems when the C library is here, else None (the slow path does everything)."""
    library = native.load()
    return None if library is None else FastItems(library, **kwargs)
