"""RecentValues: what the API serves many readers from (a count at most a few seconds old)."""

from __future__ import annotations

import threading
import time

import pytest

from biomarkerflow.service.cache import STALE_LIMIT, RecentValues


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A computation that counts its calls; `gate` holds it until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self) -> int:
        self.started.set()
        self.gate.wait(10)
        self.calls += 1
        return self.calls


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_zero_max_age_computes_every_time() -> None:
    counter = Counter()
    values = RecentValues(0)
    assert [values.get("k", counter) for _ in range(3)] == [1, 2, 3]


def test_a_young_value_is_served_and_an_old_one_refreshed_in_the_background() -> None:
    clock, counter = Clock(), Counter()
    values = RecentValues(2.0, clock=clock)
    assert values.get("k", counter) == 1
    clock.now += 1.0
    assert values.get("k", counter) == 1  # young: no recount
    assert counter.calls == 1

    clock.now += 1.5
    counter.gate.clear()
    counter.started.clear()
    assert values.get("k", counter) == 1  # old: served at once, while one refresh runs
    counter.started.wait(5)
    assert values.get("k", counter) == 1  # the refresh is under way: not a second one
    counter.gate.set()
    wait_for(lambda: values.get("k", counter) == 2)
    assert counter.calls == 2


def test_keys_are_separate() -> None:
    values = RecentValues(60.0)
    assert values.get(("study", "a"), lambda: "a") == "a"
    assert values.get(("study", "b"), lambda: "b") == "b"
    assert values.get(("study", "a"), lambda: "changed") == "a"


def test_readers_arriving_together_share_one_first_computation() -> None:
    counter = Counter()
    counter.gate.clear()
    values = RecentValues(60.0)
    answers: list[int] = []
    readers = [threading.Thread(target=lambda: answers.append(values.get("k", counter))) for _ in range(5)]
    for reader in readers:
        reader.start()
    counter.started.wait(5)
    counter.gate.set()
    for reader in readers:
        reader.join(10)
    assert answers == [1] * 5
    assert counter.calls == 1


def test_a_failing_first_computation_raises_and_is_not_kept() -> None:
    values = RecentValues(60.0)

    def broken() -> int:
        raise LookupError("no such study")

    with pytest.raises(LookupError):
        values.get("k", broken)
    assert values.get("k", lambda: 7) == 7


def test_a_failing_refresh_keeps_the_last_value_until_it_is_far_too_old() -> None:
    clock = Clock()
    values = RecentValues(2.0, clock=clock)
    assert values.get("k", lambda: 1) == 1
    failures: list[int] = []

    def broken() -> int:
        failures.append(1)
        raise ConnectionError("database went away")

    clock.now += 3.0
    assert values.get("k", broken) == 1  # stale, refreshing in the background
    wait_for(lambda: failures)
    clock.now += STALE_LIMIT * 2.0
    with pytest.raises(ConnectionError):  # far too old: computed now, and the error shows
        values.get("k", broken)
