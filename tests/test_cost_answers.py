"""Cost estimates that always answer (issue 20): the best predictor answers, baselines
included; pipelines with little history borrow from similar ones; the machine is a
feature; estimates beyond the inputs seen are flagged and their intervals widen."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.cost import registry
from biomarkerflow.cost.estimate import estimate
from biomarkerflow.cost.history import Observation, format_history_csv, parse_history_csv
from biomarkerflow.cost.inputs import WorkflowDescription
from biomarkerflow.cost.model import CostModel, RunInputs
from biomarkerflow.cost.prices import BUILT_IN_TABLES
from tests.test_cli import cli

TABLE = BUILT_IN_TABLES["aws-fargate-us-east-1"]
START = datetime(2026, 3, 1)


def line_runs(
    pipeline: str,
    runs: int,
    *,
    seconds_per_gb: float = 200.0,
    noise: float = 0.05,
    sizes: tuple[float, float] = (1e8, 2e9),
    machines: Sequence[tuple[str, int]] = (),
    workflow: WorkflowDescription | None = None,
    seed: int = 1,
    start: datetime = START,
) -> list[Observation]:
    """Runs whose duration is a straight line in input size (20 s + so much per GB), +-noise;
    on `machines` (name, cores) in turn, a run on c cores takes 8/c as long."""
    rng = random.Random(seed)
    described = workflow or WorkflowDescription()
    out = []
    for i in range(runs):
        size = rng.uniform(*sizes)
        name, cores = machines[i % len(machines)] if machines else (None, None)
        wall = (20 + seconds_per_gb * size / 1e9) * (8 / cores if cores else 1) * rng.uniform(1 - noise, 1 + noise)
        out.append(
            Observation(
                pipeline=pipeline,
                started_at=start + timedelta(hours=i),
                input_bytes=int(size),
                output_bytes=int(size / 100),
                wall_seconds=wall,
                cpu_seconds=wall * 0.97,
                peak_rss_bytes=int(3e8 + 0.5 * size),
                machine=name,
                machine_cores=cores,
                machine_memory_bytes=cores * 4e9 if cores else None,
                machine_cpu="Intel Xeon" if cores else None,
                workflow_type=described.workflow_type,
                steps=described.steps,
                package=described.package,
            )
        )
    return out


def imported(tmp_path: Path, rows: Sequence[Observation]) -> Path:
    home = tmp_path / "home"
    path = tmp_path / f"history-{len(list(tmp_path.glob('history-*')))}.csv"
    path.write_text(format_history_csv(rows))
    result = cli(home, "models", "import-history", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return home


def only_estimate(result_stdout: str) -> dict[str, object]:
    (single,) = json.loads(result_stdout)["estimates"]
    return dict(single)


# ---- the best predictor answers -------------------------------------------------------------------


def test_a_history_that_is_a_straight_line_in_size_gets_its_answer_from_the_line(tmp_path: Path) -> None:
    """The issue's first hour: 120 runs on a line in size (+-5%) used to be refused because
    no model beat both baselines. Now the line is a candidate, and it answers."""
    home = imported(tmp_path, line_runs("wf-a", 120))
    trained = cli(home, "models", "train")
    assert trained.returncode == 0 and "promoted" in trained.stdout, trained.stdout

    answer = only_estimate(cli(home, "estimate", "--pipeline", "wf-a", "--input-size", "1GB", "--json").stdout)
    wall = answer["estimate"]["wall_seconds"]  # type: ignore[index]
    assert wall["point"] == pytest.approx(220, rel=0.05)  # 20 s + 200 s per GB
    assert wall["low"] < 220 < wall["high"]
    assert "size" in str(answer["answered_by"]) and answer["borrowed"] is False
    table = cli(home, "estimate", "--pipeline", "wf-a", "--input-size", "1GB")
    assert table.returncode == 0 and "answered by: " in table.stdout

    shown = cli(home, "models", "show", "wf-a")
    assert shown.returncode == 0, shown.stderr
    for candidate in ("power law", "affine", "size line (baseline)", "median of past runs (baseline)"):
        assert candidate in shown.stdout  # every candidate, side by side
    assert " *" in shown.stdout  # and the one that answers each quantity


def test_five_runs_are_enough_for_an_estimate(tmp_path: Path) -> None:
    catalog = Catalog.for_home(tmp_path / "home")
    catalog.add_imported_runs([("test", o) for o in line_runs("five", 5)])
    result = registry.train(catalog, "five", tmp_path / "home", TABLE)
    assert result.decision == "promoted", result.message
    (model,) = catalog.cost_models("five")
    assert (model.train_runs, model.test_runs) == (5, 0)  # too few to hold any out: all of them learn
    (answer,) = estimate(catalog, "five", [RunInputs(input_bytes=10**9)], TABLE)
    assert answer.prediction is not None and answer.refusal is None
    shown = cli(tmp_path / "home", "models", "show", "five")
    assert shown.returncode == 0 and "tested on 0\n" in shown.stdout and "size line (baseline)" in shown.stdout


def test_the_best_candidate_per_quantity_is_chosen_on_errors_out_of_fold() -> None:
    """Duration on a line in size, memory flat: the median answers memory, not duration."""
    runs = [
        replace(o, peak_rss_bytes=int(5e8 * random.Random(i).uniform(0.99, 1.01)))
        for i, o in enumerate(line_runs("w", 40))
    ]
    model = CostModel.fit("w", runs)
    candidates = model.candidates()
    for quantity, chosen in candidates.items():
        errors = chosen["errors"]
        assert chosen["chosen"] == min(errors, key=lambda kind: errors[kind]), quantity
        assert {"size-line", "median", "loglinear", "affine"} <= set(errors)
    assert candidates["wall_seconds"]["chosen"] != "median"
    assert candidates["wall_seconds"]["errors"]["median"] > 5 * candidates["wall_seconds"]["errors"]["size-line"]


# ---- larger inputs than seen ------------------------------------------------------------------------------


def test_beyond_the_largest_input_seen_the_estimate_is_flagged_and_its_interval_widens() -> None:
    """A pipeline tried on a subsample first: 40 runs of 100-400 MB, then files of 2 GB."""
    model = CostModel.fit("w", line_runs("w", 40, sizes=(1e8, 4e8)))
    inside, twice, five_times = model.predict(
        [RunInputs(input_bytes=3 * 10**8), RunInputs(input_bytes=8 * 10**8), RunInputs(input_bytes=2 * 10**9)],
        TABLE,
    )
    assert not inside.extrapolating and twice.extrapolating and five_times.extrapolating

    def width(prediction: object, quantity: str = "wall_seconds") -> float:
        low, point, high = prediction.values[quantity]  # type: ignore[attr-defined]
        return (high - low) / point

    assert width(inside) < width(twice) < width(five_times)
    assert width(inside, "cost") < width(five_times, "cost")
    truth = 20 + 200 * 2.0
    low, point, high = five_times.values["wall_seconds"]
    assert point == pytest.approx(truth, rel=0.15) and low < truth < high  # the trend, followed


# ---- machines ------------------------------------------------------------------------------------------


def test_an_estimate_can_be_asked_for_a_machine_or_a_price_table(tmp_path: Path) -> None:
    machines = (("small-4", 4), ("big-16", 16))
    home = imported(tmp_path, line_runs("wf-m", 24, machines=machines))
    assert cli(home, "models", "train").returncode == 0
    listed = json.loads(cli(home, "models", "machines", "--json").stdout)
    assert {(m["name"], m["cores"], m["runs"]) for m in listed} == {("small-4", 4.0, 12), ("big-16", 16.0, 12)}

    def duration(*machine: str) -> float:
        result = cli(home, "estimate", "--pipeline", "wf-m", "--input-size", "1GB", *machine, "--json")
        assert result.returncode == 0, result.stderr
        return float(only_estimate(result.stdout)["estimate"]["wall_seconds"]["point"])  # type: ignore[index]

    small, big = duration("--machine", "small-4"), duration("--machine", "big-16")
    assert small == pytest.approx(220 * 2, rel=0.1) and big == pytest.approx(220 / 2, rel=0.1)

    def cost(*machine: str) -> float:
        result = cli(home, "estimate", "--pipeline", "wf-m", "--input-size", "1GB", *machine, "--json")
        return float(only_estimate(result.stdout)["estimate"]["cost"]["point"])  # type: ignore[index]

    assert cost("--machine", "on-premises") != cost()  # priced under the table named
    unknown = cli(home, "estimate", "--pipeline", "wf-m", "--input-size", "1GB", "--machine", "nowhere")
    assert unknown.returncode == 4
    assert "no machine or price table called 'nowhere'" in unknown.stderr and "big-16" in unknown.stderr


def test_history_from_one_machine_informs_another() -> None:
    """A pipeline seen on 4 and 16 cores, asked for 8: between the two, by the cores' trend."""
    model = CostModel.fit("w", line_runs("w", 60, machines=(("a", 4), ("b", 16))))
    (eight,) = model.predict([RunInputs(input_bytes=10**9, machine_cores=8, machine_memory_bytes=32e9)], TABLE)
    assert eight.point("wall_seconds") == pytest.approx(220, rel=0.15)
    (unnamed,) = model.predict([RunInputs(input_bytes=10**9)], TABLE)  # no machine: the usual one
    assert unnamed.point("wall_seconds") in (
        pytest.approx(440, rel=0.1),
        pytest.approx(110, rel=0.1),
    )


# ---- borrowed estimates -------------------------------------------------------------------------------


SKDH_LIKE = WorkflowDescription("skdh", ("CalibrateAccelerometer", "Sleep"), "scikit-digital-health==0.17.18")


def test_a_new_pipeline_borrows_from_similar_ones_until_its_own_history_suffices(tmp_path: Path) -> None:
    # Fewer than 30 runs each: no trees, a quicker test.
    history = line_runs("wf-1", 24, seconds_per_gb=190, workflow=SKDH_LIKE, seed=1)
    history += line_runs("wf-2", 24, seconds_per_gb=210, workflow=SKDH_LIKE, seed=2)
    history += line_runs("rates", 24, seconds_per_gb=900, workflow=WorkflowDescription("mrf", ("filtered=True",)))
    newcomer = replace(SKDH_LIKE, steps=(*SKDH_LIKE.steps, "Sleep.day_window=[12, 24]"))
    history += line_runs("wf-new", 2, workflow=newcomer, seed=3, start=START + timedelta(days=30))
    history += line_runs("loner", 2, workflow=WorkflowDescription("gait-only", ("Gait",)), seed=4)
    home = imported(tmp_path, history)
    trained = cli(home, "models", "train")
    assert trained.returncode == 0 and "_pooled" in trained.stdout, trained.stdout

    own = only_estimate(cli(home, "estimate", "--pipeline", "wf-1", "--input-size", "1GB", "--json").stdout)
    borrowed = only_estimate(cli(home, "estimate", "--pipeline", "wf-new", "--input-size", "1GB", "--json").stdout)
    assert borrowed["borrowed"] is True and own["borrowed"] is False
    assert str(borrowed["answered_by"]).startswith("borrowed from 2 similar workflows")  # wf-1, wf-2: not rates
    wall = borrowed["estimate"]["wall_seconds"]  # type: ignore[index]
    assert wall["point"] == pytest.approx(220, rel=0.1) and wall["low"] < 220 < wall["high"]
    own_wall = own["estimate"]["wall_seconds"]  # type: ignore[index]
    assert (wall["high"] - wall["low"]) / wall["point"] > (own_wall["high"] - own_wall["low"]) / own_wall["point"]
    table = cli(home, "estimate", "--pipeline", "wf-new", "--input-size", "1GB")
    assert "answered by: borrowed from 2 similar workflows" in table.stdout

    lonely = cli(home, "estimate", "--pipeline", "loner", "--input-size", "1GB")
    assert lonely.returncode == 4 and "no pipeline like it (same workflow type)" in lonely.stdout

    more = line_runs("wf-new", 6, workflow=newcomer, seed=5, start=START + timedelta(days=31))
    home = imported(tmp_path, more)
    assert cli(home, "models", "train", "--pipeline", "wf-new").returncode == 0
    grown = only_estimate(cli(home, "estimate", "--pipeline", "wf-new", "--input-size", "1GB", "--json").stdout)
    assert grown["borrowed"] is False  # its own model now


# ---- import -------------------------------------------------------------------------------------------


def test_imported_histories_may_describe_machine_and_pipeline_and_names_are_checked() -> None:
    good = format_history_csv(line_runs("nextflow-rnaseq.FASTQC", 1, machines=(("node-1", 8),), workflow=SKDH_LIKE))
    columns = good.splitlines()[0].split(",")

    def line(**values: object) -> str:
        base = {"started_at": "2026-01-01", **{name: 1 for name in columns[2:7]}, **values}
        return ",".join(str(base.get(name, "")) for name in columns) + "\n"

    parsed = parse_history_csv(good + line(pipeline="../../etc") + line(pipeline="x", machine="n", machine_cores=-2))
    ((_, row),) = parsed.rows
    assert (row.machine, row.machine_cores, row.machine_memory_bytes, row.machine_cpu) == (
        "node-1",
        8.0,
        32e9,
        "Intel Xeon",
    )
    assert (row.workflow_type, row.steps, row.package) == (SKDH_LIKE.workflow_type, SKDH_LIKE.steps, SKDH_LIKE.package)
    assert [(p.line, p.message.split(" ")[0]) for p in parsed.problems] == [(3, "pipeline"), (4, "machine_cores")]
    assert "letters, digits" in parsed.problems[0].message
