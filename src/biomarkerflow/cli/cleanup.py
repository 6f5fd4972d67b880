"""`biomarkerflow gc`: remove what killed work left behind."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from biomarkerflow.cli.app import app, handled, platform, say
from biomarkerflow.units import format_bytes


@app.command()
@handled
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Remove what killed work left behind: temporary publish folders, run folders an upload
    did not finish (no _SUCCESS), consolidated-table snapshots out of force for over an hour,
    and half-made runtime builds. Never anything a running job or the tables in force use;
    `watch` runs it every few hours.

    \b
    Example: biomarkerflow gc --dry-run
    """
    report = platform().gc(dry_run=dry_run)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for item in report.leftovers:
        say(f"{verb}  {item.kind}: {item.url} ({format_bytes(item.bytes)})")
    for problem in report.problems:
        say(f"not cleaned: {problem}")
    say(f"{len(report.leftovers)} leftover(s) {verb}, {format_bytes(report.bytes)}")
