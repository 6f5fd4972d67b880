"""The C hot loops of `_native.c`, built with the system's C compiler on first use and
loaded with ctypes.

The library is built once per source version into the user's cache folder
(`$XDG_CACHE_HOME/biomarkerflow`, else `~/.cache/biomarkerflow`), atomically, so parallel
workers can race to build it. Without a C compiler (or with `BIOMARKERFLOW_MRF_NATIVE=0`)
everything still works, at the pure-Python speed (about 4x slower); `load()` says why.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = Path(__file__).with_name("_native.c")
SWITCH = "BIOMARKERFLOW_MRF_NATIVE"
log = logging.getLogger(__name__)

i64 = ctypes.c_int64
P_I64 = ctypes.POINTER(ctypes.c_int64)
P_I32 = ctypes.POINTER(ctypes.c_int32)
P_U8 = ctypes.POINTER(ctypes.c_uint8)

# _native.c's Items struct, in its order: (field, "spans" | "ints").
ITEMS_LAYOUT = tuple(
    (name, kind)
    for names, kind in (
        ("arrangement name code_type code_version code description severity", "spans"),
        ("item_element item_rates item_prices rate_item refs_end rate_inline", "ints"),
        ("refs", "spans"),
        ("group_rate group_index npis_end", "ints"),
        ("tin_type tin_value business_name npis", "spans"),
        ("price_rate price_rate_index price_index", "ints"),
        ("ntype amount expiration bclass setting info", "spans"),
        ("services_end modifiers_end", "ints"),
        ("services modifiers", "spans"),
    )
    for name in names.split()
)
SPAN_COLUMNS = tuple(name for name, kind in ITEMS_LAYOUT if kind == "spans")
INT_COLUMNS = tuple(name for name, kind in ITEMS_LAYOUT if kind == "ints")
OK, BAIL, FULL = 0, 1, 2


class ScanState(ctypes.Structure):
    _fields_ = [("in_string", i64), ("escaped", i64), ("depth", i64), ("error_at", i64)]


class CSpans(ctypes.Structure):
    _fields_ = [("start", P_I64), ("len", P_I32), ("count", i64), ("cap", i64)]


class CInts(ctypes.Structure):
    _fields_ = [("v", P_I64), ("count", i64), ("cap", i64)]


class CItems(ctypes.Structure):
    _fields_ = [(name, CSpans if kind == "spans" else CInts) for name, kind in ITEMS_LAYOUT]


@cache
def load() -> ctypes.CDLL | None:
    """The library, or None (logged once) when it cannot be built here or is switched off."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        library = ctypes.CDLL(str(_built()))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("price transparency: the C accelerator is unavailable (%s); using pure Python", exc)
        return None
    _declare(library)
    return library


def _built() -> Path:
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + sys.platform.encode()).hexdigest()[:16]
    target = _cache_folder() / f"mrf-native-{tag}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(built, target)  # atomic: a worker racing to build sees one or the other
    return target


def _cache_folder() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "biomarkerflow"


def _declare(library: ctypes.CDLL) -> None:
    library.mrf_events.restype = i64
    library.mrf_events.argtypes = [
        ctypes.c_char_p,
        i64,
        i64,
        ctypes.POINTER(ScanState),
        P_I64,
        P_U8,
        P_I64,
        i64,
        P_I64,
    ]
    library.mrf_items.restype = i64
    library.mrf_items.argtypes = [ctypes.c_void_p, P_I64, P_I64, i64, i64, ctypes.POINTER(CItems), P_I64]
    library.mrf_gather.restype = None
    library.mrf_gather.argtypes = [ctypes.c_void_p, P_I64, P_I32, i64, ctypes.c_void_p, P_I32]


def pointer(array: np.ndarray, kind: type) -> Any:
    return array.ctypes.data_as(ctypes.POINTER(kind))
