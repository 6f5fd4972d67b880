"""RecentValues: what the API serves many readers from (a count at most a few seconds old)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

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
    clock.now = 1000.0 + STALE_LIMIT * 2.0 + 0.5
    with pytest.raises(ConnectionError):  # far too old: computed now, and the error shows
        values.get("k", broken)


def test_a_value_unread_for_long_is_counted_again_before_it_is_served() -> None:
    clock, counter = Clock(), Counter()
    values = RecentValues(2.0, clock=clock)
    assert values.get("k", counter) == 1
    clock.now += STALE_LIMIT * 2.0 + 0.1  # nobody asked for a while: no stale answer
    assert values.get("k", counter) == 2


def test_forget_drops_every_value() -> None:
    values = RecentValues(60.0)
    values.get("k", lambda: 1)
    values.forget()
    assert values.get("k", lambda: 2) == 2


def test_a_scan_through_the_platform_shows_at_once(tmp_path: Path) -> None:
    """A serving Platform shares its counts for a while, but its own scan (the `serve --watch`
    service) is seen by the next read, not after the sharing time."""
    from biomarkerflow.service import Platform
    from tests.test_second_workflow_type import FILES, STUDY, _workspace

    configs = _workspace(tmp_path, {"S01": "north"}, dict(list(FILES.items())[:2]))
    platform = Platform(home=tmp_path / "home", summary_max_age=3600)
    platform.scan(str(configs))
    [before] = platform.study_overviews(STUDY)
    (tmp_path / "data" / "csv" / "S01_c.csv").write_text("x,y\n1,2\n")
    platform.scan(str(configs))
    [after] = platform.study_overviews(STUDY)
    assert after.total == before.total + 1
    platform.close()
