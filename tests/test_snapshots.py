"""Consolidated tables as snapshots: a reader always sees every table of one snapshot, while
new ones are switched in (locally and on S3); snapshots out of force go after a grace
period; tables written before snapshots are read, then replaced."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from biomarkerflow.results import query, snapshots


def _publish(tmp_path: Path, output: str, rows: int) -> snapshots.Snapshot:
    """Two tables of `rows` rows each: in one snapshot their counts are always equal."""
    folder = tmp_path / f"build-{rows}"
    folder.mkdir()
    for name in ("wear", "sleep"):
        pq.write_table(pa.table({"n": list(range(rows))}), folder / f"{name}.parquet")
    return snapshots.publish(folder, output, ["wear", "sleep"], {"rows": rows})


def _equal_counts(output: str) -> tuple[int, int]:
    found = query.run_query(output, "SELECT (SELECT count(*) FROM wear) AS l, (SELECT count(*) FROM sleep) AS r")
    return int(found["l"][0]), int(found["r"][0])


def _readers_see_one_snapshot(tmp_path: Path, output: str, rounds: int) -> None:
    _publish(tmp_path, output, 1)
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(_equal_counts(output))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for rows in range(2, rounds + 2):
            _publish(tmp_path, output, rows)
    finally:
        done.set()
        reader.join(timeout=60)
    assert not errors, errors
    assert seen, "the reader never read"
    assert all(left == right for left, right in seen), [s for s in seen if s[0] != s[1]]
    assert _equal_counts(output) == (rounds + 1, rounds + 1)


def test_a_reader_sees_every_table_of_one_snapshot_while_new_ones_switch_in(tmp_path: Path) -> None:
    _readers_see_one_snapshot(tmp_path, str(tmp_path / "study"), rounds=25)


def test_the_same_on_s3(tmp_path: Path, s3_bucket: str) -> None:
    _readers_see_one_snapshot(tmp_path, f"{s3_bucket}/study", rounds=8)
    assert len(snapshots.snapshot_ids(f"{s3_bucket}/study")) == 9  # all within the grace period


def test_snapshots_out_of_force_go_after_the_grace_period(tmp_path: Path) -> None:
    output = str(tmp_path / "study")
    first, second, third = (_publish(tmp_path, output, rows) for rows in (1, 2, 3))
    assert snapshots.snapshot_ids(output) == [first.id, second.id, third.id]
    assert snapshots.expire(output) == []  # within the grace period: readers may still be on them
    made = snapshots.made_at(third.id or "")
    assert made is not None
    later = made + timedelta(seconds=snapshots.GRACE_SECONDS + 1)
    assert snapshots.expire(output, now=later) == [first.id, second.id]
    assert snapshots.snapshot_ids(output) == [third.id]
    assert _equal_counts(output) == (3, 3)
    assert snapshots.expire(output, now=later + timedelta(days=30)) == []  # never the one in force


def test_tables_from_before_snapshots_are_read_then_replaced(tmp_path: Path) -> None:
    output = str(tmp_path / "study")
    legacy = Path(snapshots.tables_location(output))
    legacy.mkdir(parents=True)
    for name in ("wear", "sleep"):
        pq.write_table(pa.table({"n": [1, 2]}), legacy / f"{name}.parquet")
    (legacy / snapshots.LEGACY_MANIFEST).write_text('["run-1"]')
    in_force = snapshots.current(output)
    assert in_force is not None and in_force.id is None and in_force.contents == ["run-1"]
    assert _equal_counts(output) == (2, 2)
    published = _publish(tmp_path, output, 5)
    # The old manifest is gone; tables/<name>.parquet are now the snapshot's files (hard links, locally).
    names = [snapshots.POINTER, "sleep.parquet", snapshots.SNAPSHOTS_FOLDER, "wear.parquet"]
    assert sorted(p.name for p in legacy.iterdir()) == names
    for name in ("sleep", "wear"):
        assert (legacy / f"{name}.parquet").samefile(published.tables[name])
    assert _equal_counts(output) == (5, 5)


def test_snapshot_ids_sort_by_time() -> None:
    early = snapshots.new_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = snapshots.new_id(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert early < late and snapshots.made_at(early) == datetime(2026, 1, 1, tzinfo=UTC)
