"""How long a claim on a file lasts, and how often its holder says it is still alive.

Plain numbers in a module of their own: `status` needs them and must not import the
processing stage (pandas, pyarrow) to learn them.
"""

from __future__ import annotations

LEASE_SECONDS = 600.0  # a claim without a heartbeat for this long is taken back
HEARTBEAT_SECONDS = 30.0  # how often claimers and `watch` beat
