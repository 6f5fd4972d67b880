"""`biomarkerflow demo --kind price-transparency`: health-plan rate files end to end.

It writes a workspace with one price-transparency study: two generated in-network files
(schema v2 with provider references after `in_network` and float-looking group ids, gzip;
and v1 with inline provider groups), the CMS v2 example when ../shared/data/cms-mrf is
beside the repository, and a download that stopped half way. Then it scans, processes,
and shows the rates per billing code through the `rates` view, and why the broken file
failed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from biomarkerflow.terminal import line, styled

STUDY = "demo-plan-rates"
CMS_EXAMPLE = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "data"
    / "cms-mrf"
    / "v2.2.0"
    / "in-network-rates"
    / "in-network-rates-multiple-plans-sample.json"
)
CONFIG = f"""\
study: {STUDY}
workflow: price-transparency
data:
  location: ../data
price_transparency:
  strict: false        # a schema violation is a problems row with its byte offset
"""
BROKEN = "acme-epo_in-network.json"
RATES_SQL = (
    "SELECT billing_code, count(*) AS rows, min(negotiated_rate) AS low, median(negotiated_rate) AS median, "
    "max(negotiated_rate) AS high, count(*) OVER () AS codes FROM rates GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
)


def build_workspace(workspace: Path, items: int) -> list[str]:
    """The demo's files; what it could not include, in words."""
    from biomarkerflow.plugins.price_transparency.generate import Shape, write

    shutil.rmtree(workspace, ignore_errors=True)
    data = workspace / "data"
    data.mkdir(parents=True)
    (workspace / "studies").mkdir()
    (workspace / "studies" / f"{STUDY}.yaml").write_text(CONFIG)
    write(data / "acme-ppo_in-network.json.gz", Shape(items=items, references_last=True, float_ids=True, seed=3))
    write(data / "acme-hmo_in-network.json", Shape(items=max(1, items // 4), inline_groups=True, pretty=True, seed=4))
    whole = (data / "acme-hmo_in-network.json").read_bytes()
    (data / BROKEN).write_bytes(whole[: len(whole) // 2])  # a download that stopped
    if CMS_EXAMPLE.is_file():
        shutil.copyfile(CMS_EXAMPLE, data / "cms-example_in-network.json")
        return []
    return [f"the CMS example ({CMS_EXAMPLE} not found)"]


def run_demo(console: Console, workspace: Path, *, items: int, workers: int) -> int:
    from biomarkerflow.service.platform import Platform
    from biomarkerflow.terminal.work import print_scan, process_with_bar

    workspace = workspace.resolve()
    console.rule(styled("1. Build the demo workspace", "bold"))
    left_out = build_workspace(workspace, items)
    for path in sorted((workspace / "data").iterdir()):
        line(console, f"{path.relative_to(workspace)}  ({path.stat().st_size / 1e6:.1f} MB)")
    home = workspace / ".biomarkerflow"
    platform = Platform(home)
    configs = str(workspace / "studies")
    console.rule(styled("2. Discover and process", "bold"))
    executor = platform.executor("local", workers)
    try:
        print_scan(console, platform.scan(configs, executor), configs)
        info = process_with_bar(console, platform, executor)
    finally:
        executor.close()
    console.rule(styled("3. Results", "bold"))
    for file in platform.catalog.files(STUDY):
        if file.state == "FAILED":
            line(console, styled("FAILED ", "red"), f"{file.relative_path}: {file.last_error}")
    console.print(_rates(platform.query(STUDY, RATES_SQL)))
    output = platform.known_studies()[STUDY].output_location
    tries = [
        "status",
        f'query --study {STUDY} "SELECT * FROM files"',
        f'query --study {STUDY} "SELECT npi, count(*) FROM rates GROUP BY 1 ORDER BY 2 DESC LIMIT 5"',
        f"lineage {output}/tables/prices.parquet",
    ]
    console.print(
        f"Tables: {output}/tables\nTry:\n" + "".join(f"  biomarkerflow --home {home} {c}\n" for c in tries),
        soft_wrap=True,
    )
    for part in left_out:
        line(console, styled("note: ", "yellow"), f"left out: {part}")
    # The broken download is meant to fail: the demo fails only when another file does.
    failed = [f for f in platform.catalog.files(STUDY) if f.state == "FAILED" and f.relative_path != BROKEN]
    platform.close()
    return 1 if failed or info is None else 0


def _rates(frame: Any) -> Table:
    codes = int(frame["codes"].iloc[0]) if len(frame) else 0
    table = Table(title=f"{STUDY}: negotiated rates per billing code, the {len(frame)} of {codes} with most rows")
    for column in ("billing code", "rows", "low", "median", "high"):
        table.add_column(column, justify="right")
    for row in frame.itertuples(index=False):
        table.add_row(str(row.billing_code), str(row.rows), f"{row.low:.2f}", f"{row.median:.2f}", f"{row.high:.2f}")
    return table
