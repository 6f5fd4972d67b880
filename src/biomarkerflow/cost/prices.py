"""Price tables and what one run costs under them: pure arithmetic, no I/O.

A run is billed the way AWS Fargate bills a task: for the vCPUs and memory it holds,
per second, with a minimum. What it held is what it was metered at: the cores it was
given (more if its threads used more) and its peak memory.

    cost = billed_hours x (vcpus x per_vcpu_hour + memory_gb x per_gb_hour) x capacity factor

    billed_hours   max(minimum_seconds, wall seconds rounded up to increment_seconds) / 3600
    memory_gb      peak resident memory in GiB (what AWS calls a GB of task memory)
    capacity       on-demand: 1; spot: 1 - spot_discount
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# A run's charge is stored with the run, so the record lives with the run's metrics.
from biomarkerflow.metrics import Capacity, Charge

GIB = 1024**3

DEFAULT_TABLE = "aws-fargate-us-east-1"


class PriceTable(BaseModel):
    """What compute costs somewhere: per vCPU-hour and per GB-hour, and how time is billed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    currency: str = Field(default="USD", description="Shown next to every amount.")
    per_vcpu_hour: float = Field(ge=0, description="Price of one vCPU (or core) for one hour.")
    per_gb_hour: float = Field(default=0.0, ge=0, description="Price of one GB (GiB) of memory for one hour.")
    minimum_seconds: float = Field(default=0.0, ge=0, description="Shortest billed duration of a run.")
    increment_seconds: float = Field(default=1.0, gt=0, description="Durations are rounded up to this step.")
    spot_discount: float = Field(
        default=0.0, ge=0, lt=1, description="Spot/preemptible capacity costs (1 - this) of on-demand."
    )
    as_of: str | None = Field(default=None, description="Date the prices were taken (YYYY-MM-DD).")
    source: str | None = Field(default=None, description="Where the prices come from.")


BUILT_IN_TABLES: dict[str, PriceTable] = {
    DEFAULT_TABLE: PriceTable(
        description="AWS Fargate, Linux/x86, US East (N. Virginia), per-second billing",
        per_vcpu_hour=0.04048,
        per_gb_hour=0.004445,
        minimum_seconds=60,
        increment_seconds=1,
        # Fargate Spot is advertised at up to 70% off; its real discount varies by hour.
        spot_discount=0.70,
        as_of="2026-11-22",
        source="https://aws.amazon.com/fargate/pricing/",
    ),
    "on-premises": PriceTable(
        description="Your own machines: set your cost per core-hour (hardware, power, staff)",
        per_vcpu_hour=0.0,
        per_gb_hour=0.0,
        as_of=None,
        source="set by you",
    ),
}


@dataclass(frozen=True)
class Usage:
    """What a run held while it ran, as metered."""

    wall_seconds: float
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    cores: float = 1.0  # cores the job was given


def billed_seconds(wall_seconds: float, table: PriceTable) -> float:
    """Wall time rounded up to the billing increment, and at least the minimum."""
    steps = math.ceil(max(wall_seconds, 0.0) / table.increment_seconds - 1e-9)
    return max(table.minimum_seconds, steps * table.increment_seconds)


def charge(usage: Usage, table: PriceTable, *, table_name: str, capacity: Capacity = "on-demand") -> Charge:
    """What `usage` costs under `table` (see the module docstring for the formula)."""
    seconds = billed_seconds(usage.wall_seconds, table)
    used_cores = (usage.cpu_seconds or 0.0) / usage.wall_seconds if usage.wall_seconds > 0 else 0.0
    vcpus = max(usage.cores, used_cores)
    memory_gb = (usage.peak_rss_bytes or 0) / GIB
    factor = 1.0 - table.spot_discount if capacity == "spot" else 1.0
    hourly = vcpus * table.per_vcpu_hour + memory_gb * table.per_gb_hour
    return Charge(
        amount=seconds / 3600 * hourly * factor,
        currency=table.currency,
        table=table_name,
        capacity=capacity,
        billed_seconds=seconds,
        vcpus=vcpus,
        memory_gb=memory_gb,
    )
