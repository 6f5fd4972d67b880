"""How long a claim on a file lasts, how often its holder says it is still alive, and
whether a claimer on this machine is still alive at all.

Plain numbers and a psutil lookup in a module of their own: `status` needs them and must
not import the processing stage (pandas, pyarrow) to learn them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psutil

LEASE_SECONDS = 60.0  # a claim without a heartbeat for this long is taken back (settings: processing.lease_seconds)
HEARTBEAT_SECONDS = 30.0  # how often `watch` beats while idle, and the ceiling for claimers
# A process registered as a claimer started at most this long before its runner row was
# written (it registers when its command starts); one that started later is another process
# that was given the same pid.
START_TOLERANCE_SECONDS = 2.0


def heartbeat_seconds(lease_seconds: float) -> float:
    """How often a claimer renews its leases: four beats per lease, so one late beat loses nothing."""
    return min(HEARTBEAT_SECONDS, lease_seconds / 4.0)


def process_alive(pid: int, registered_at: datetime) -> bool:
    """Whether the process that registered as a claimer at `registered_at` (naive UTC) still runs
    on this machine: its pid exists and was not reused by a process started after it registered."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return True  # it exists but cannot be inspected (another user's): assume alive, the lease decides
    registered = registered_at.replace(tzinfo=UTC).timestamp()
    return started <= registered + START_TOLERANCE_SECONDS
