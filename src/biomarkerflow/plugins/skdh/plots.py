"""The multi-day activity plot of one recording, as GGIR and the Oxford tools draw it: one
row per calendar day of the subject (a 24 h axis of wall-clock time), the acceleration per
minute (mean ENMO) as a black line, and bands behind it for non-wear (grey), sleep periods
(blue) and, in a strip along the bottom, the activity level of each bout.

Drawn with matplotlib's object API on its Agg canvas (no pyplot, no global state: safe in
any worker thread); SKDH imports matplotlib, so in a job's runtime it costs no import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

WIDTH_INCHES = 12.0
DPI = 100
ROW_INCHES = 0.8  # one day
HEADER_INCHES = 0.75  # title and legend
FOOTER_INCHES = 0.4  # the hour axis
LEVEL_STRIP = 0.18  # the activity strip's share of a row's height
ENMO_FLOOR_G = 0.3  # the y axis reaches at least this (quiet recordings keep a readable scale)

COLOURS = {
    "nonwear": "#c8c8c8",
    "sleep": "#9ec5e8",
    "sedentary": "#f2e394",
    "light": "#a8d5a2",
    "moderate": "#f4a259",
    "vigorous": "#d1495b",
}
LABELS = {"nonwear": "non-wear", "sleep": "sleep period"}
LEVELS = ("sedentary", "light", "moderate", "vigorous")


def figure_pixels(days: int) -> tuple[int, int]:
    """(width, height) in pixels of the plot of `days` rows."""
    height = HEADER_INCHES + max(days, 1) * ROW_INCHES + FOOTER_INCHES
    return round(WIDTH_INCHES * DPI), round(height * DPI)


def activity_plot(
    grid: pd.DataFrame, events: pd.DataFrame, tz_name: str | None, path: Path, *, title: str = ""
) -> Path:
    """Draw the plot of a recording's minute grid (`timeline.minute_grid`) and its events
    (`timeline.events`) into `path` (PNG), one row per day in `tz_name` (the device's clock
    without one); returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    local = _local(pd.DatetimeIndex(grid["minute"]), tz_name)
    days = pd.DatetimeIndex(local.normalize().unique()).sort_values() if len(local) else pd.DatetimeIndex([])
    width, height = figure_pixels(len(days))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    top = 1 - HEADER_INCHES / (height / DPI)
    bottom = FOOTER_INCHES / (height / DPI)
    figure.subplots_adjust(left=0.11, right=0.99, top=top, bottom=bottom, hspace=0.08)
    zone = tz_name or "device clock"
    inch = 1 / (height / DPI)  # one inch as a fraction of the figure's height
    heading = f"{title} · acceleration per minute, times in {zone}".strip(" ·")
    figure.text(0.11, 1 - 0.1 * inch, heading, ha="left", va="top", fontsize=11)
    enmo = grid["enmo_g"].to_numpy(dtype=np.float64)
    finite = enmo[np.isfinite(enmo)]
    ceiling = max(ENMO_FLOOR_G, float(np.quantile(finite, 0.999)) * 1.05) if len(finite) else ENMO_FLOOR_G
    bands = _bands(events, tz_name)
    hours = ((local - local.normalize()) / pd.Timedelta(hours=1)).to_numpy() if len(local) else np.empty(0)
    day_of = local.normalize()
    axes = figure.subplots(max(len(days), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, day in zip(axes, days, strict=False):
        _day_row(ax, day, bands, hours[day_of == day], enmo[day_of == day], ceiling)
    if not len(days):
        axes[0].text(12, 0.5, "no samples", ha="center", va="center")
    last = axes[-1]
    last.set_xlim(0, 24)
    last.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)], fontsize=8)
    handles: list[Artist] = [Patch(color=COLOURS[key], label=LABELS.get(key, key)) for key in COLOURS]
    handles.append(Line2D([], [], color="black", lw=1, label="ENMO (g)"))
    figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.105, 1 - 0.34 * inch),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        borderaxespad=0,
    )
    FigureCanvasAgg(figure).print_png(str(path))
    return path


def _local(moments: pd.DatetimeIndex, tz_name: str | None) -> pd.DatetimeIndex:
    """Naive wall-clock times in the subject's zone (UTC, the device's clock, without one)."""
    aware = moments if moments.tz is not None else moments.tz_localize("UTC")
    return aware.tz_convert(tz_name or "UTC").tz_localize(None)


def _bands(events: pd.DataFrame, tz_name: str | None) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Local (start, end) of the non-wear, sleep and activity-level events, by colour key."""
    bands: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {key: [] for key in COLOURS}
    if events.empty:
        return bands
    keys = np.where(events["event"] == "activity", events["detail"].astype(str), events["event"])
    starts = _local(pd.DatetimeIndex(events["start"]), tz_name)
    ends = _local(pd.DatetimeIndex(events["end"]), tz_name)
    for key, start, end in zip(keys, starts, ends, strict=True):
        if key in bands and end > start:
            bands[key].append((start, end))
    return bands


def _day_row(
    ax: Axes,
    day: pd.Timestamp,
    bands: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]],
    hours: np.ndarray,
    enmo: np.ndarray,
    ceiling: float,
) -> None:
    following = day + pd.Timedelta(days=1)
    for key, spans in bands.items():
        pieces = [
            ((max(s, day) - day) / pd.Timedelta(hours=1), (min(e, following) - max(s, day)) / pd.Timedelta(hours=1))
            for s, e in spans
            if s < following and e > day
        ]
        if not pieces:
            continue
        # Levels in a strip along the bottom; non-wear and sleep behind the whole row.
        low, high = (0.0, LEVEL_STRIP * ceiling) if key in LEVELS else (0.0, ceiling)
        ax.broken_barh(pieces, (low, high - low), facecolors=COLOURS[key], linewidth=0)
    if len(hours):
        # A minute without samples is NaN: the line breaks over gaps instead of bridging them.
        ax.plot(hours, np.minimum(enmo, ceiling), color="black", linewidth=0.6)
    ax.set_ylim(0, ceiling)
    ax.set_yticks([])
    ax.set_ylabel(day.strftime("%a %Y-%m-%d"), rotation=0, ha="right", va="center", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
