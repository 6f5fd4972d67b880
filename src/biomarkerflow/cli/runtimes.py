"""Commands about runtimes: list, build, prune the isolated environments pinned versions run in."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from biomarkerflow.cli.app import JsonOption, app, console, handled, platform, report_error, say
from biomarkerflow.errors import EXIT_CODES, Category
from biomarkerflow.terminal import Column, print_table
from biomarkerflow.units import format_bytes

runtimes_app = typer.Typer(
    help="The isolated environments studies run in, one per pinned package version (built with uv, cached).",
    no_args_is_help=True,
)
app.add_typer(runtimes_app, name="runtimes")


@runtimes_app.command("list")
@handled
def runtimes_list(as_json: JsonOption = False) -> None:
    """Cached runtimes: requirement, lock hash, size, last use, and the studies pinning each."""
    listing = platform().list_runtimes()
    if as_json:
        print(json.dumps(listing.as_json(), indent=2))
        return
    if not listing.entries:
        say(f"no runtimes built in {listing.root} (studies that pin the installed version need none)")
        return
    rows = [
        (
            e.requirement,
            e.lock_hash[:12],
            format_bytes(e.size_bytes),
            e.last_used or "never",
            ", ".join(listing.users.get(e.key, [])),
        )
        for e in listing.entries
    ]
    columns = [Column("requirement", key=True), Column("lock hash", key=True), Column("size", right=True)]
    columns += [Column("last used"), Column("studies")]
    print_table(console, columns, rows, more="--json")


@runtimes_app.command("build")
@handled
def runtimes_build(
    configs: Annotated[
        list[str] | None,
        typer.Argument(metavar="CONFIG", help="Study configs or folders: build what each one pins."),
    ] = None,
    package: Annotated[
        str | None, typer.Option(metavar="PIN", help="Or one pin, e.g. scikit-digital-health==0.16.15.")
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option(metavar="REQUIREMENT", help="Extra requirement for --package, e.g. 'numpy<2' (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it is cached.")] = False,
) -> None:
    """Build runtimes ahead of time, e.g. before copying the home to an air-gapped cluster.

    \b
    Examples:
      biomarkerflow runtimes build studies/
      biomarkerflow runtimes build --package scikit-digital-health==0.16.15 --constraint 'numpy<2'
    """
    failed = 0
    for spec in platform().specs_of(configs or [], package, constraint or []):
        outcome = platform().build_runtime(spec, force=force)
        if outcome.state == "current":
            say(f"current   {spec.describe()}: the installed environment satisfies it")
        elif outcome.error is not None:
            failed += 1
            report_error(outcome.error.message, outcome.error.hint, label="failed    ")
        else:
            say(f"ready     {spec.describe()}: lock {(outcome.lock_hash or '')[:12]} at {outcome.path}")
    if failed:
        raise typer.Exit(EXIT_CODES[Category.INVALID_INPUT])


@runtimes_app.command("prune")
@handled
def runtimes_prune(
    unused_days: Annotated[
        float,
        typer.Option(metavar="DAYS", help="Keep runtimes used within this many days even if no study pins them."),
    ] = 0.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
) -> None:
    """Remove runtimes no study in the catalog pins, and half-made builds.

    \b
    Example: biomarkerflow runtimes prune --unused-days 30
    """
    removed = platform().prune_runtimes(unused_days=unused_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for e in removed:
        say(f"{verb}  {e.requirement}  ({format_bytes(e.size_bytes)}, {e.path})")
    say(f"{len(removed)} runtime(s) {verb}, {format_bytes(sum(e.size_bytes for e in removed))}")
