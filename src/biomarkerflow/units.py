"""Sizes and durations as people write and read them: `2GB`, `350MB`, `7d`, `36h`.

Decimal units (kB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024), as `--input-size 2GB`
and the API's `input_size=2GB` are parsed.
"""

from __future__ import annotations

import re

from biomarkerflow.errors import UsageError

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
TIME_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_amount(text: str, units: dict[str, int], what: str, example: str) -> float:
    """`2GB` -> 2e9, `7d` -> 604800: a number and an optional unit; UsageError naming `what` otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in units:
        raise UsageError(f"{what}: '{text}' is not an amount like {example}")
    return float(match.group(1)) * units[unit]


def parse_size(text: str, what: str = "size") -> int:
    return int(parse_amount(text, SIZE_UNITS, what, "2GB or 350MB"))


def parse_duration(text: str, what: str = "duration") -> float:
    return parse_amount(text, TIME_UNITS, what, "7d or 36h")


def format_bytes(size: float) -> str:
    """1234567 -> '1.2 MB' (kB, MB and GB are powers of 1000; GB is the largest unit)."""
    if abs(size) < 1000:
        return f"{size:.0f} B"
    value = size / 1000
    for unit in ("kB", "MB"):
        if abs(value) < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
