"""Sizes as people read them: decimal units, as `--input-size 2GB` is parsed."""

from __future__ import annotations


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
