"""Costs: price arithmetic against hand-computed examples, the settings file, every run
charged when it finishes, and `biomarkerflow costs`."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.config.loader import load_yaml_model
from biomarkerflow.cost.prices import BUILT_IN_TABLES, PriceTable, Usage, billed_seconds, charge
from biomarkerflow.cost.reports import CostRow, group_costs
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.errors import ConfigError
from biomarkerflow.settings import PricesSettings, Settings, load_settings
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study
from tests.databases import BACKENDS, catalog_url
from tests.test_cli import cli

FARGATE = BUILT_IN_TABLES["aws-fargate-us-east-1"]
GIB = 1024**3


# ---- arithmetic, by hand ----------------------------------------------------------------------


def test_fargate_defaults_are_the_published_us_east_1_prices() -> None:
    assert (FARGATE.per_vcpu_hour, FARGATE.per_gb_hour) == (0.04048, 0.004445)
    assert (FARGATE.minimum_seconds, FARGATE.increment_seconds) == (60, 1)
    assert FARGATE.as_of and FARGATE.source


def test_a_short_run_is_billed_the_minute_minimum() -> None:
    # 30 s on 1 vCPU with 2 GiB: billed 60 s = 1/60 h x (0.04048 + 2 x 0.004445) = 0.000822833...
    result = charge(Usage(wall_seconds=30, cpu_seconds=25, peak_rss_bytes=2 * GIB), FARGATE, table_name="f")
    assert result.billed_seconds == 60
    assert (result.vcpus, result.memory_gb) == (1.0, 2.0)
    assert result.amount == pytest.approx(0.04937 / 60, rel=1e-12)
    assert (result.currency, result.table, result.capacity) == ("USD", "f", "on-demand")


def test_a_run_using_two_cores_is_billed_per_started_second_for_both() -> None:
    # 125.2 s wall, 250.4 CPU-s (2 cores busy), 3.5 GiB: billed 126 s x (2 x 0.04048 + 3.5 x 0.004445) / 3600
    usage = Usage(wall_seconds=125.2, cpu_seconds=250.4, peak_rss_bytes=int(3.5 * GIB))
    result = charge(usage, FARGATE, table_name="f")
    assert result.billed_seconds == 126
    assert result.vcpus == pytest.approx(2.0)
    assert result.amount == pytest.approx(126 / 3600 * (0.08096 + 0.0155575), rel=1e-9)  # 0.0033781125


def test_spot_takes_the_discount_and_says_so() -> None:
    usage = Usage(wall_seconds=30, cpu_seconds=25, peak_rss_bytes=2 * GIB)
    spot = charge(usage, FARGATE, table_name="f", capacity="spot")
    assert spot.amount == pytest.approx(0.04937 / 60 * 0.30, rel=1e-12)
    assert spot.capacity == "spot"


def test_per_minute_billing_and_a_cost_per_core_hour() -> None:
    on_premises = PriceTable(per_vcpu_hour=0.012, increment_seconds=60)
    assert billed_seconds(61, on_premises) == 120
    assert billed_seconds(60, on_premises) == 60
    assert billed_seconds(0, on_premises) == 0
    result = charge(Usage(wall_seconds=1800, cpu_seconds=900, peak_rss_bytes=GIB), on_premises, table_name="lab")
    assert result.amount == pytest.approx(0.006)  # half an hour of one core, memory free


# ---- the settings file --------------------------------------------------------------------------


def test_settings_file_is_written_with_defaults_and_accepts_own_tables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home)
    assert (home / "settings.yaml").exists()
    assert settings.prices.in_force == "aws-fargate-us-east-1"
    assert settings.prices.table() == FARGATE
    assert settings.models.retrain_every_hours == 24

    (home / "settings.yaml").write_text(
        "prices:\n  in_force: lab\n  capacity: spot\n  tables:\n    lab:\n      per_vcpu_hour: 0.02\n"
        "      spot_discount: 0.5\n"
    )
    custom = load_settings(home).prices
    assert (custom.in_force, custom.capacity, custom.table().per_vcpu_hour) == ("lab", "spot", 0.02)
    assert "aws-fargate-us-east-1" in custom.all_tables()  # built-ins stay available


def test_settings_problems_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("models:\n  retrain_every_hours: 6\nprices:\n  in_forse: lab\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml_model(path, Settings)
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (4, "prices.in_forse")
    assert "did you mean 'in_force'" in problem.message

    path.write_text("prices:\n  in_force: nowhere\n  tables:\n    lab: {per_vcpu_hour: -1}\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml_model(path, Settings)
    messages = {p.field: (p.line, p.message) for p in caught.value.problems}
    assert messages["prices.tables.lab.per_vcpu_hour"][0] == 4
    assert "at least 0" in messages["prices.tables.lab.per_vcpu_hour"][1]


def gait_study(root: Path, samples: Path) -> Catalog:
    """A scanned study of SKDH's two real lumbar recordings (about a second of GaitLumbar each)."""
    catalog, _ = scanned_study(
        root,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa", "ax3_b.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\nax3,1.8\n",
    )
    return catalog


# ---- every run is charged -----------------------------------------------------------------------


def test_every_finished_run_is_charged_under_the_table_in_force(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog = gait_study(tmp_path, samples)
    table = PriceTable(per_vcpu_hour=3.6, per_gb_hour=0.36, minimum_seconds=10, spot_discount=0.5)
    prices = PricesSettings(in_force="lab", capacity="spot", tables={"lab": table})
    info = process(catalog, executor, prices=prices)
    assert info.succeeded == 2
    for run in catalog.runs("gait"):
        assert run.wall_seconds and run.peak_rss_bytes
        expected = charge(
            Usage(run.wall_seconds, run.cpu_seconds, run.peak_rss_bytes, cores=executor.cores_per_job),
            table,
            table_name="lab",
            capacity="spot",
        )
        assert run.cost == pytest.approx(expected.amount)
        assert run.cost and run.cost > 0
        assert (run.price_table, run.capacity, run.currency) == ("lab", "spot", "USD")
        assert run.billed_seconds == expected.billed_seconds >= 10
        assert run.pipeline and run.pipeline.startswith("skdh-0.17.18-")
    assert len({r.pipeline for r in catalog.runs("gait")}) == 1  # one study, one pipeline


# ---- reports ----------------------------------------------------------------------------------------


def _row(study: str, subject: str, month: int, cost: float, ok: bool = True, days: float = 1.0) -> CostRow:
    return CostRow(study, "w1", subject, datetime(2026, month, 3), ok, cost, "USD", 500_000_000, days * 86_400)


def test_grouping_counts_failed_attempts_in_cost_but_not_in_units() -> None:
    rows = [
        _row("a", "P1", 1, 0.10, ok=False),
        _row("a", "P1", 1, 0.30, days=7),
        _row("a", "P2", 2, 0.20, days=3),
        _row("b", "P1", 2, 1.00, days=10),
    ]
    groups, total = group_costs(rows, "study")
    by_study = {g.key: g for g in groups}
    assert by_study["a"].cost == pytest.approx(0.60)
    assert (by_study["a"].runs, by_study["a"].failed_runs) == (3, 1)
    assert by_study["a"].subject_days == pytest.approx(10)
    assert by_study["a"].per_subject_day == pytest.approx(0.06)
    assert by_study["a"].per_gb == pytest.approx(0.60 / 1.0)  # two succeeded runs of 0.5 GB
    assert len(total.subjects) == 3  # P1 of study a and P1 of study b are different people
    assert total.cost == pytest.approx(1.60)
    months, _ = group_costs(rows, "month")
    assert [(g.key, round(g.cost, 2)) for g in months] == [("2026-01", 0.40), ("2026-02", 1.20)]


def test_costs_command_reports_what_the_catalog_holds(tmp_path: Path, samples: Path, executor: LocalExecutor) -> None:
    catalog = gait_study(tmp_path, samples)
    process(catalog, executor)
    runs = catalog.runs("gait")
    home = tmp_path / "home"

    as_json = cli(home, "costs", "--by", "subject", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert [g["subject"] for g in report["groups"]] == ["gait/ax3", "gait/ax6"]
    assert report["total"]["cost"] == pytest.approx(sum(r.cost or 0 for r in runs), abs=1e-6)
    assert report["total"]["runs"] == 2 and report["total"]["currency"] == "USD"

    as_csv = cli(home, "costs", "--by", "pipeline", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["pipeline"] for r in rows] == [runs[0].pipeline, "total"]
    # `workflow` is the pipeline's old name: still accepted, and reported as `pipeline`.
    for output_format in ("csv", "json", "table"):
        old = cli(home, "costs", "--by", "workflow", "--format", output_format)
        assert old.returncode == 0, old.stderr
        assert old.stdout == cli(home, "costs", "--by", "pipeline", "--format", output_format).stdout

    table = cli(home, "costs")
    assert table.returncode == 0 and "gait" in table.stdout and "per subject-day" in table.stdout

    wrong = cli(home, "costs", "--by", "week")
    assert wrong.returncode == 2 and "'week' is not one of" in wrong.stderr
    unknown = cli(home, "costs", "--study", "nope")
    assert unknown.returncode != 0 and "nope" in unknown.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_catalog_adds_up_runs_as_the_reports_would_run_by_run(tmp_path: Path, backend: str) -> None:
    """`cost_summary` (added up in SQL) gives every grouping the same report as the runs one by
    one: failed and unpriced runs, two currencies, two months, files without a subject, and
    facts that are not numbers (a text, a boolean: not a recording length)."""
    from sqlalchemy import create_engine, insert

    from biomarkerflow.catalog.connection import sqlalchemy_url
    from biomarkerflow.catalog.models import DataFile, Run, Study

    with catalog_url(backend, tmp_path) as url:
        catalog = Catalog(url)
        engine = create_engine(sqlalchemy_url(url))
        when = datetime(2026, 1, 1)
        with engine.begin() as connection:
            for study in ("a", "b"):
                connection.execute(
                    insert(Study.__table__),
                    {
                        "id": study,
                        "config_source": f"{study}.yaml",
                        "config_sha256": "c",
                        "config": {},
                        "output_location": "/o",
                        "data_location": "/d",
                        "priority": 0,
                        "registered_at": when,
                        "updated_at": when,
                    },
                )
            files = [
                {
                    "id": i,
                    "study_id": "ab"[i % 2],
                    "url": f"/d/{i}",
                    "relative_path": f"{i}.bin",
                    "size": 1000 * i,
                    "fingerprint": "f",
                    "fingerprint_seen_at": when,
                    "state": "SUCCEEDED",
                    "attempts": 1,
                    "discovered_at": when,
                    "updated_at": when,
                    "subject": [None, "S1", "S2"][i % 3],
                }
                for i in range(1, 13)
            ]
            connection.execute(insert(DataFile.__table__), files)
            facts = [
                {"recording_seconds": 86400.5},
                {"recording_seconds": "long"},
                {"recording_seconds": True},
                None,
                {},
            ]
            runs = [
                {
                    "id": f"r{i}",
                    "file_id": 1 + i % 12,
                    "study_id": "ab"[(1 + i % 12) % 2],
                    "attempt": 1,
                    "worker": "w",
                    "config_sha256": "c",
                    "input_fingerprint": "f",
                    "started_at": datetime(2026, 1 + i % 2, 1 + i % 28),
                    "finished_at": None if i == 29 else when,
                    "outcome": "failed" if i % 5 == 0 else "succeeded",
                    "facts": facts[i % 4],
                    "pipeline": ["p1", "p2", None][i % 3],
                    "cost": None if i % 7 == 0 else 0.25 * i,
                    "currency": "EUR" if i % 11 == 0 else "USD",
                }
                for i in range(30)
            ]
            connection.execute(insert(Run.__table__), runs)
        engine.dispose()
        for grouping in ("study", "pipeline", "subject", "month"):
            summed = group_costs(catalog.cost_summary(), grouping)  # type: ignore[arg-type]
            one_by_one = group_costs(catalog.cost_rows(), grouping)  # type: ignore[arg-type]
            assert [g.as_dict(grouping) for g in summed[0]] == [g.as_dict(grouping) for g in one_by_one[0]]
            assert summed[1].as_dict(grouping) == one_by_one[1].as_dict(grouping)
        assert (one_by_one[1].runs, one_by_one[1].unpriced_runs, one_by_one[1].failed_runs) == (29, 5, 6)
        assert one_by_one[1].recording_seconds == 86400.5 * 6  # i = 4, 8, 12, 16, 24, 28: numbers, succeeded
        assert len(catalog.cost_summary(["a"])) < len(catalog.cost_rows(["a"]))
        catalog.close()
