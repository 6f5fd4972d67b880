"""Retry policy: a pure function, so it is tested without a database or a clock."""

from __future__ import annotations

from datetime import datetime, timedelta

BASE_DELAY_SECONDS = 30.0
MAX_DELAY_SECONDS = 3600.0


def retry_at(
    attempt: int,
    now: datetime,
    *,
    retryable: bool,
    max_attempts: int,
    base_delay: float = BASE_DELAY_SECONDS,
) -> datetime | None:
    """When a failed attempt may run again (exponential backoff), or None: give up.

    With the default base, attempt 1 waits 30 s, attempt 2 60 s, 3 120 s ... at most an hour.
    """
    if not retryable or attempt >= max_attempts:
        return None
    delay = min(base_delay * 2 ** (attempt - 1), MAX_DELAY_SECONDS)
    return now + timedelta(seconds=delay)
