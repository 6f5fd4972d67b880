"""Recent answers to expensive read-only questions, shared by the threads of one process.

A study of 100k files takes 0.1-0.3 s to total up (files per state, cost, progress per
day); fifty dashboard readers asking every few seconds would keep both cores busy doing
only that. `RecentValues` answers from the last computation while it is younger than
`max_age` seconds; an older one is still served while one background thread recomputes
it, so no reader waits on a recount after the first one. A value more than `STALE_LIMIT`
times `max_age` old (nobody asked for a while, or its refreshes keep failing) is not served:
the read computes it (and sees any error). A change made through this process's Platform
(a scan, a processing round) `forget`s every value. With `max_age` 0 (the CLI: one question
per process) every call computes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["RecentValues"]

STALE_LIMIT = 2  # a value older than this many max_ages is counted again before it is served
MAX_ENTRIES = 1024  # keys include readers' filters: the oldest computed are dropped beyond this


@dataclass
class _Entry:
    value: Any
    computed_at: float
    refreshing: bool = False


class RecentValues:
    def __init__(self, max_age: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()
        self._first: dict[Hashable, threading.Lock] = {}  # one computation of a missing key at a time

    def get(self, key: Hashable, compute: Callable[[], T], *, slower: float = 1.0) -> T:
        """`compute()`'s value for `key`, at most `max_age` seconds old unless a refresh is under way.

        `slower` stretches `max_age` for values that take seconds to compute and change
        slowly (a cost report over every run)."""
        if self.max_age <= 0:
            return compute()
        max_age = self.max_age * slower
        with self._lock:
            entry = self._entries.get(key)
            age = self._clock() - entry.computed_at if entry is not None else 0.0
            if age > STALE_LIMIT * max_age:
                entry = None
            elif entry is not None and not entry.refreshing and age >= max_age:
                entry.refreshing = True
                threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
        if entry is not None:
            return entry.value
        return self._compute_first(key, compute, max_age)

    def forget(self) -> None:
        """Drop every value: the next reads count afresh (after a change made in this process)."""
        with self._lock:
            self._entries.clear()

    def _compute_first(self, key: Hashable, compute: Callable[[], T], max_age: float) -> T:
        with self._lock:
            first = self._first.setdefault(key, threading.Lock())
        with first:  # readers arriving together wait for one computation, not one each
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and self._clock() - entry.computed_at <= STALE_LIMIT * max_age:
                return entry.value
            try:
                value = compute()
                with self._lock:
                    self._keep(key, _Entry(value, self._clock()))
            finally:
                with self._lock:
                    self._first.pop(key, None)
            return value

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            value = compute()
        except Exception:  # noqa: BLE001 - the last good value stays; the next read tries again
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.refreshing = False
            return
        with self._lock:
            self._keep(key, _Entry(value, self._clock()))

    def _keep(self, key: Hashable, entry: _Entry) -> None:
        self._entries.pop(key, None)  # re-inserted last: the dict stays in order of computation
        self._entries[key] = entry
        while len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
