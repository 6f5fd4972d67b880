"""The `demo` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomarkerflow.cli.app import WorkersOption, app, console, handled
from biomarkerflow.service.work import DEFAULT_WORKERS


@app.command()
@handled
def demo(
    workspace: Annotated[Path, typer.Option(metavar="DIR", help="Folder for the demo study (re-created).")] = Path(
        "demo-workspace"
    ),
    subjects: Annotated[int, typer.Option(metavar="N", min=1, help="Synthetic subjects.")] = 4,
    days: Annotated[float, typer.Option(metavar="DAYS", help="Days recorded per subject.")] = 2.0,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed for the synthetic recordings.")] = 7,
    workers: WorkersOption = DEFAULT_WORKERS,
    kind: Annotated[
        str,
        typer.Option(
            metavar="KIND",
            help="wearables (SKDH studies, the default) or price-transparency (health-plan rate files).",
        ),
    ] = "wearables",
    items: Annotated[
        int, typer.Option(metavar="N", min=1, help="price-transparency: in-network items of the larger file.")
    ] = 2000,
) -> None:
    """Build a small study with synthetic and real recordings and process it end to end.

    SKDH's real device files come from ../shared/data/skdh beside the repository, or from
    the folder BIOMARKERFLOW_SAMPLES names; without them the demo leaves that study out
    and says so.

    \b
    Example: biomarkerflow demo --kind price-transparency --workspace rates-demo
    """
    if kind == "price-transparency":
        from biomarkerflow.demo import prices

        raise typer.Exit(prices.run_demo(console, workspace, items=items, workers=workers))
    if kind != "wearables":
        from biomarkerflow.errors import UsageError

        raise UsageError(f"--kind {kind}: not a demo", hint="Use --kind wearables or --kind price-transparency.")
    from biomarkerflow.demo.run import run_demo

    raise typer.Exit(run_demo(console, workspace, subjects=subjects, days=days, seed=seed, workers=workers))
