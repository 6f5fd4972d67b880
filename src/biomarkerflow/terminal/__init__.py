"""Printing for people: text from outside printed literally, lines that keep their indent,
and tables that read well at any width (80 columns when output is piped).

Rich parses `[...]` as markup by default, so a subject regex `([a-z0-9]+)_` would print
as `(+)_`. Every console here has markup off; colour comes only from `styled` labels,
never from text we did not write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Column", "line", "make_console", "print_table", "styled"]


def make_console(*, stderr: bool = False) -> Console:
    """A console that never interprets text as markup, emoji codes or highlights."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def styled(text: str, style: str) -> Text:
    """A coloured label (our own words only)."""
    return Text(text, style=style)


def line(console: Console, *parts: str | Text, indent: int = 0) -> None:
    """One message made of literal parts (plain strings are never markup).

    Piped output is never hard-wrapped (a line stays whole for grep and logs); in a
    terminal a long message wraps at spaces and its continuation lines keep the
    indent of its first line, so lists of files stay readable.
    """
    text = Text(" " * indent)
    for part in parts:
        text.append(part if isinstance(part, Text) else Text(part))
    if not console.is_terminal or cell_len(text.plain) <= console.width:
        console.print(text, soft_wrap=True)
        return
    hanging = indent + _label_width(parts)
    if hanging >= console.width // 2:
        console.print(text)
        return
    head, body = text[:hanging], text[hanging:]
    grid = Table.grid()
    grid.add_column(width=hanging, no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(head, body)
    console.print(grid)


def _label_width(parts: Sequence[str | Text]) -> int:
    """Continuation lines line up after a leading styled label ("FAILED   ", "error: ")."""
    if len(parts) > 1 and isinstance(parts[0], Text):
        return cell_len(parts[0].plain)
    return 0


@dataclass(frozen=True)
class Column:
    header: str
    key: bool = False  # an identifier: never cut, so two rows never look alike
    right: bool = False  # numbers


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    more: str | None = None,
) -> None:
    """A table when it fits the width, otherwise one record per block, never cut cells.

    `more` names how to get everything (e.g. "--format csv or --format json"); it is
    said when the table does not fit.
    """
    if _natural_width(columns, rows) <= console.width:
        table = Table(title=title)
        for column in columns:
            table.add_column(
                column.header,
                justify="right" if column.right else "left",
                no_wrap=column.key,
                overflow="fold",
                min_width=cell_len(column.header) if column.key else None,
            )
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    _print_records(console, columns, rows, title=title)
    if more:
        note = f"{len(columns)} columns do not fit in {console.width} characters: one record per block above; "
        console.print(Text(note + f"use {more} for a spreadsheet or a program"), soft_wrap=True)


def _natural_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    widths = [cell_len(c.header) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], max((cell_len(part) for part in cell.splitlines()), default=0))
    return sum(widths) + 3 * len(columns) + 1  # padding and rules of Rich's default box


def _print_records(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str | None
) -> None:
    if title:
        console.print(Text(title, style="bold"), soft_wrap=True)
    width = max(cell_len(c.header) for c in columns)
    for number, row in enumerate(rows, start=1):
        console.print(Text(f"-- record {number} of {len(rows)} --", style="dim"))
        for column, cell in zip(columns, row, strict=True):
            label = column.header + " " * (width - cell_len(column.header))
            line(console, Text(label + "  ", style="bold"), cell)
