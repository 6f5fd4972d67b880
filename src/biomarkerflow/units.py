"""Sizes as people read them: decimal units, as `--input-size 2GB` is parsed."""

from __future__ import annotations


def format_bytes(size: float) -> str:
    """1234567 -> '1.2 MB' (kB, MB and GB are powers of 1000)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
