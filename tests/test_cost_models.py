"""Cost models: history import with line-numbered errors, refusal without enough history, the
promotion rule (with a real webhook server), estimates for a study paired with their runs,
and the scheduler's memory requests."""

from __future__ import annotations

import http.server
import json
import pickle
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from biomarkerflow.catalog.manager import Catalog, FileRecord
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.cost import registry
from biomarkerflow.cost.estimate import MemoryRequests, estimate
from biomarkerflow.cost.history import Observation, parse_history_csv
from biomarkerflow.cost.identity import pipeline_id
from biomarkerflow.cost.model import FEATURE_SETS, Affine, CostModel, Features, RunInputs
from biomarkerflow.cost.prices import BUILT_IN_TABLES
from biomarkerflow.cost.registry import training_due
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.stages.processing import process
from tests.test_cli import cli
from tests.test_costs import gait_study
from tests.test_headers import record

TABLE = BUILT_IN_TABLES["aws-fargate-us-east-1"]
HEADER = "pipeline,started_at,input_bytes,output_bytes,wall_seconds,cpu_seconds,peak_rss_bytes"
START = datetime(2026, 1, 1)
MB_PER_DAY = 55e6  # a 50 Hz wrist recording, about


def history(
    pipeline: str, runs: int, *, slower: float = 1.0, noise: float = 0.03, start: datetime = START, seed: int = 3
) -> list[Observation]:
    """Runs of 1-14 day recordings whose cost grows as a power of their length (like SKDH's)."""
    rng = random.Random(seed)
    out = []
    for i in range(runs):
        days = rng.uniform(1, 14)
        size = int(days * MB_PER_DAY * rng.uniform(0.97, 1.03))
        wall = slower * (8 + 14 * days**1.3) * rng.uniform(1 - noise, 1 + noise)
        out.append(
            Observation(
                pipeline=pipeline,
                started_at=start + timedelta(hours=i),
                input_bytes=size,
                output_bytes=int(days * 40_000),
                wall_seconds=wall,
                cpu_seconds=wall * 0.98,
                peak_rss_bytes=int(4e8 + 9.5 * size * rng.uniform(0.98, 1.02)),
                recording_seconds=days * 86_400,
            )
        )
    return out


def as_csv(rows: list[Observation]) -> str:
    lines = [HEADER + ",duration_seconds_of_data"]
    for o in rows:
        lines.append(
            f"{o.pipeline},{o.started_at.isoformat()}Z,{o.input_bytes},{o.output_bytes},{o.wall_seconds:.3f},"
            f"{o.cpu_seconds:.3f},{o.peak_rss_bytes},{o.recording_seconds}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it."""
    received: list[dict[str, object]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


# ---- history import ----------------------------------------------------------------------------


def test_import_reports_bad_rows_by_line_and_keeps_the_good(tmp_path: Path) -> None:
    good = as_csv(history("w-a", 3)).splitlines()
    text = "\n".join(
        [
            good[0],
            good[1],
            "w-a,yesterday,1000,10,5,5,100,",  # line 3
            good[2],
            "w-a,2026-01-02T00:00:00,12.5,10,5,5,100,",  # line 5: bytes must be whole
            "w-a,2026-01-02T00:00:00,1000,10,-4,5,100,",  # line 6: negative seconds
            "",
            ",2026-01-02T00:00:00,1000,10,5,5,100,",  # line 8: no pipeline
            "w-a,2026-01-02T00:00:00,1000,10,5,5,100,3600,surplus",  # line 9: one field too many
            good[3],
        ]
    )
    csv_file = tmp_path / "past.csv"
    csv_file.write_text(text + "\n")
    result = cli(tmp_path / "home", "models", "import-history", str(csv_file))
    assert result.returncode == 1, result.stderr  # some rows were skipped: say so in the exit code
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert [line.split(":")[1] for line in skipped] == ["3", "5", "6", "8", "9"], result.stderr
    assert "started_at is not an ISO date/time" in skipped[0]
    assert "input_bytes must be a whole number" in skipped[1]
    assert "wall_seconds must be a number of 0 or more" in skipped[2]
    assert "pipeline is empty" in skipped[3]
    assert "imported 3 run(s) of 1 pipeline(s); skipped 5 bad row(s)" in result.stdout
    catalog = Catalog.for_home(tmp_path / "home")
    imported = catalog.observations("w-a")
    assert len(imported) == 3
    assert imported[0].recording_seconds is not None and imported[0].started_at.tzinfo is None


def test_import_refuses_a_file_without_the_required_columns(tmp_path: Path) -> None:
    csv_file = tmp_path / "past.csv"
    csv_file.write_text("pipeline,started_at,input_bytes\nw,2026-01-01,5\n")
    result = cli(tmp_path / "home", "models", "import-history", str(csv_file))
    assert result.returncode == 2
    assert "line 1: missing column(s) output_bytes, wall_seconds, cpu_seconds, peak_rss_bytes" in result.stderr
    assert Catalog.for_home(tmp_path / "home").observations() == []


def test_import_reads_files_that_call_the_pipeline_column_workflow(tmp_path: Path) -> None:
    """History files written before the pipeline had its own name still import."""
    old = as_csv(history("w-old", 3)).replace("pipeline,", "workflow,", 1)
    assert old.startswith("workflow,started_at,")
    csv_file = tmp_path / "old.csv"
    csv_file.write_text(old)
    result = cli(tmp_path / "home", "models", "import-history", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "imported 3 run(s) of 1 pipeline(s); skipped 0 bad row(s)" in result.stdout
    assert [o.pipeline for o in Catalog.for_home(tmp_path / "home").observations("w-old")] == ["w-old"] * 3
    # With both columns, `pipeline` is the key (an extra `workflow` column is ignored like any other).
    both = parse_history_csv("workflow," + as_csv(history("w-new", 1)).replace("\n", "\nskdh,", 1))
    assert [row.pipeline for _, row in both.rows] == ["w-new"] and both.problems == []


def test_parsing_accepts_optional_columns_in_any_order() -> None:
    parsed = parse_history_csv(
        "machine,cost,pipeline,started_at,input_bytes,output_bytes,wall_seconds,cpu_seconds,peak_rss_bytes\n"
        "m5.large,0.02,w,2026-03-01T14:05:00+01:00,10,1,2.5,2,100\n"
    )
    ((line, row),) = parsed.rows
    assert (line, row.machine, row.cost, row.started_at) == (2, "m5.large", 0.02, datetime(2026, 3, 1, 13, 5))


# ---- too little history ----------------------------------------------------------------------------


def test_with_fewer_than_five_runs_it_says_so_instead_of_guessing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    csv_file = tmp_path / "past.csv"
    csv_file.write_text(as_csv(history("w-small", 4)))
    assert cli(home, "models", "import-history", str(csv_file)).returncode == 0

    result = cli(home, "estimate", "--pipeline", "w-small", "--input-size", "300MB")
    assert result.returncode == 4  # no model for the pipeline yet: "not found", as the README's table says
    assert "only 4 past run(s) of pipeline w-small, and no pipeline like it" in result.stdout
    assert "estimates need 5 runs of its own" in result.stdout
    assert "$" not in result.stdout  # no number given
    trained = cli(home, "models", "train", "--pipeline", "w-small")
    assert "refused" in trained.stdout and "a model of its own needs at least 5" in trained.stdout
    old_name = cli(home, "models", "train", "--workflow", "w-small")  # the option's old name
    assert old_name.returncode == 0 and old_name.stdout == trained.stdout
    assert Catalog.for_home(home).cost_models() == []


# ---- model kinds ----------------------------------------------------------------------------------------


def test_the_size_only_kind_follows_the_file_size_alone() -> None:
    """Memory of loading a file is a fixed part plus a part per byte. Here the output size
    happens to track the memory's noise: the full affine kind uses it, the size-only kind
    must not, also after sklearn's clone (which the out-of-fold fits use)."""
    from sklearn.base import clone

    rng = np.random.default_rng(1)
    sizes = rng.uniform(30e6, 300e6, 40)
    noise = rng.uniform(-0.02, 0.02, 40)
    runs = [
        replace(
            run,
            input_bytes=int(size),
            peak_rss_bytes=int((4e8 + 9.5 * size) * (1 + e)),
            output_bytes=int(1e6 * (1 + 20 * e)),
        )
        for run, size, e in zip(history("w", 40), sizes, noise, strict=True)
    ]
    features = Features.fit(runs, FEATURE_SETS[0])
    x = features.matrix([RunInputs.of(o) for o in runs])
    y = np.log([o.peak_rss_bytes for o in runs])
    size_only = clone(Affine(features.columns, size_only=True)).fit(x, y)
    everything = clone(Affine(features.columns)).fit(x, y)

    shuffled = x.copy()
    shuffled[:, 1:] = rng.permutation(shuffled[:, 1:])  # every input but the size
    assert not np.allclose(everything.predict(shuffled), everything.predict(x))
    assert np.array_equal(size_only.predict(shuffled), size_only.predict(x))
    relative = np.exp(size_only.predict(x)) / (4e8 + 9.5 * sizes) - 1
    assert np.max(np.abs(relative)) < 0.01  # the line itself, to well within the 2% noise


def test_beyond_the_largest_run_trees_hand_over_to_a_kind_that_follows_the_trend() -> None:
    """A duration in steps of size (say, work done in whole chunks) suits trees inside the
    range they saw; they must not answer for a file far larger, which takes far longer."""
    runs = []
    for run in history("w", 60, noise=0.0):
        wall = 5 + 30 * (run.input_bytes // 150_000_000)
        runs.append(replace(run, wall_seconds=wall, cpu_seconds=wall, recording_seconds=None, output_bytes=0))
    model = CostModel.fit("w", runs)
    (size_only,) = model.usage_models
    wall = size_only.quantities["wall_seconds"]
    assert wall.kind == "boosted-trees"  # the premise: trees fit the steps best
    assert wall.beyond_range is not None and wall.beyond_range.kind != "boosted-trees"
    assert size_only.quantities["peak_rss_bytes"].beyond_range is None  # only where trees won

    largest = max(o.input_bytes for o in runs)
    inside, beyond = model.predict([RunInputs(input_bytes=largest), RunInputs(input_bytes=5 * largest)], TABLE)
    assert not inside.extrapolating and beyond.extrapolating
    assert inside.point("wall_seconds") == pytest.approx(5 + 30 * (largest // 150_000_000), rel=0.02)
    assert beyond.point("wall_seconds") > 3 * inside.point("wall_seconds")  # trees alone: the same


# ---- the promotion rule -------------------------------------------------------------------------------


def _install_champion(catalog: Catalog, home: Path, model: CostModel) -> None:
    """Make `model` the pipeline's champion, as a promotion would."""
    registry.register_model(catalog, home, model, promote=True, metrics={}, note="installed by the test")


def test_a_model_file_of_an_older_format_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    old = CostModel.fit("w", history("w", 12))
    old.format_version = 1  # as a file written before the models' layout changed
    _install_champion(catalog, home, old)
    assert registry.champion(catalog, "w") is None
    assert "written by an older biomarkerflow: run `biomarkerflow models train`" in caplog.text
    (result,) = estimate(catalog, "w", [RunInputs(input_bytes=10**8)], TABLE)
    assert result.prediction is None  # no number from a model that cannot be read as it was meant


def test_a_model_file_from_before_the_rename_still_loads(tmp_path: Path) -> None:
    """Model files pickled when the pipeline was called `workflow` keep answering."""
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    model = CostModel.fit("w", history("w", 12))
    state = dict(vars(model))
    state["workflow"] = state.pop("pipeline")
    old = CostModel.__new__(CostModel)
    old.__dict__.update(state)  # as unpickled from an old file, before __setstate__ maps it
    _install_champion(catalog, home, model)
    path = Path(catalog.cost_models("w")[0].path)
    path.write_bytes(pickle.dumps(old))
    found = registry.champion(catalog, "w")
    assert found is not None and found[1].pipeline == "w" and not hasattr(found[1], "workflow")
    (result,) = estimate(catalog, "w", [RunInputs(input_bytes=10**8)], TABLE)
    assert result.prediction is not None


def test_a_served_model_is_read_once_and_priced_once_per_price_table(tmp_path: Path) -> None:
    """The API estimates many times a second: the model file is read and the interval priced
    once, and still a changed file or another price table is seen."""
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    model = CostModel.fit("w", history("w", 12))
    _install_champion(catalog, home, model)
    first, again = registry.champion(catalog, "w"), registry.champion(catalog, "w")
    assert first is not None and again is not None and again[1] is first[1]

    usage_model = first[1].usage_models[0]
    offsets = usage_model.cost_offsets(TABLE)
    cheaper = TABLE.model_copy(update={"per_vcpu_hour": TABLE.per_vcpu_hour / 2, "minimum_seconds": 0})
    assert usage_model.cost_offsets(TABLE) == offsets
    assert usage_model._price_offsets(cheaper) == usage_model.cost_offsets(cheaper)  # priced per table
    assert not hasattr(pickle.loads(pickle.dumps(usage_model)), "_offsets_by_table")  # prices are not saved

    path = Path(catalog.cost_models("w")[0].path)
    retrained = CostModel.fit("w", history("w", 20))
    path.write_bytes(pickle.dumps(retrained))
    changed = registry.champion(catalog, "w")
    assert changed is not None and changed[1] is not first[1] and changed[1].train_runs == retrained.train_runs


def test_a_first_model_is_promoted_and_the_notification_says_so(
    tmp_path: Path, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook
    catalog = Catalog.for_home(tmp_path / "home")
    catalog.add_imported_runs([("test", o) for o in history("w", 40)])
    result = registry.train(catalog, "w", tmp_path / "home", TABLE, url)
    assert result.decision == "promoted", result.message
    assert result.metrics and result.metrics["challenger"]["beats_baselines"]  # this history's law is no line
    (model,) = catalog.cost_models("w")
    assert (model.version, model.status, model.train_runs, model.test_runs) == (1, "champion", 32, 8)
    assert (model.trained_from, model.trained_to) == (START, START + timedelta(hours=31))
    assert Path(model.path).is_file()
    (notice,) = received
    assert notice["event"] == "model-promoted" and notice["pipeline"] == "w" and notice["challenger_version"] == 1


def test_a_worse_challenger_is_not_promoted_and_a_notification_is_sent(
    tmp_path: Path, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    # The champion learned from 28 clean runs; the challenger learns from 32 runs measured on
    # noisy shared machines (+-30%), so it is good (it beats the baselines) but worse.
    _install_champion(catalog, home, CostModel.fit("w", history("w", 28, seed=7)))
    old = history("w", 32, noise=0.3, start=START, seed=1)
    current = history("w", 8, start=START + timedelta(days=30), seed=11)
    catalog.add_imported_runs([("test", o) for o in old + current])

    result = registry.train(catalog, "w", home, TABLE, url)
    assert result.decision == "kept", result.message
    assert "v1 stays the champion" in result.message and "not below the champion's" in result.message
    versions = {m.version: m.status for m in catalog.cost_models("w")}
    assert versions == {1: "champion", 2: "rejected"}
    assert catalog.champion_model("w").version == 1  # type: ignore[union-attr]
    (notice,) = received
    assert notice["event"] == "model-not-promoted" and notice["pipeline"] == "w"
    assert notice["challenger_version"] == 2

    shown = cli(home, "models", "show", "w", "--version", "2")
    assert shown.returncode == 0 and "rejected" in shown.stdout and "median baseline" in shown.stdout


def test_a_better_challenger_replaces_the_champion(
    tmp_path: Path, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    # Fewer than 30 runs each (no trees): a quicker test of the same rule.
    _install_champion(catalog, home, CostModel.fit("w", history("w", 24, slower=1.4, seed=7)))  # out of date
    catalog.add_imported_runs([("test", o) for o in history("w", 28, seed=5)])

    result = registry.train(catalog, "w", home, TABLE, url)
    assert result.decision == "promoted", result.message
    assert {m.version: m.status for m in catalog.cost_models("w")} == {1: "retired", 2: "champion"}
    assert result.metrics and result.metrics["champion"] is not None  # both judged on the same runs
    challenger_error = result.metrics["challenger"]["model"]["cost"]["median_relative_error"]
    assert challenger_error < result.metrics["champion"]["cost"]["median_relative_error"]
    assert [(n["event"], n["challenger_version"]) for n in received] == [("model-promoted", 2)]
    assert "below the champion's" in str(received[0]["message"])
    listed = cli(home, "models", "list")
    assert "w v2 (champion)" in listed.stdout and "w v1 (retired)" in listed.stdout
    as_json = json.loads(cli(home, "models", "list", "--pipeline", "w", "--json").stdout)
    assert [(m["pipeline"], m["version"]) for m in as_json] == [("w", 1), ("w", 2)]
    assert "workflow" not in as_json[0]
    # `--workflow`, the option's old name, still works and means the same.
    assert (
        cli(home, "models", "list", "--workflow", "w", "--json").stdout
        == cli(home, "models", "list", "--pipeline", "w", "--json").stdout
    )
    assert json.loads(cli(home, "models", "list", "--workflow", "other", "--json").stdout) == []


def test_training_schedule() -> None:
    now = datetime(2026, 11, 22, 12)
    assert training_due(None, 24, now)
    assert not training_due(now - timedelta(hours=23), 24, now)
    assert training_due(now - timedelta(hours=24), 24, now)
    assert not training_due(None, None, now)


# ---- estimates --------------------------------------------------------------------------------------


def test_estimate_for_a_study_is_logged_and_paired_with_its_runs(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog = gait_study(tmp_path, samples)
    study = catalog.get_study("gait")
    assert study is not None
    pipeline = pipeline_id(StudyConfig.model_validate(study.config), "0.17.18")
    past = history(pipeline, 30)
    catalog.add_imported_runs([("test", o) for o in past])
    home = tmp_path / "home"
    assert registry.train(catalog, pipeline, home, TABLE).decision == "promoted"

    result = cli(home, "estimate", "--study", "gait", "--json")
    assert result.returncode == 0, result.stderr
    estimates = json.loads(result.stdout)["estimates"]
    assert sorted(e["file"] for e in estimates) == ["ax3_b.cwa", "ax6_a.cwa"]
    # What the files' headers say, as SKDH reads them (tests/test_headers.py)
    assert {e["file"]: e["inputs"]["sample_rate_hz"] for e in estimates} == {"ax3_b.cwa": 200.0, "ax6_a.cwa": 100.0}
    assert {e["file"]: e["inputs"]["recording_seconds"] for e in estimates} == {
        "ax3_b.cwa": 58_800 / 200,
        "ax6_a.cwa": 10_360 / 100,
    }
    for e in estimates:
        low, point, high = (e["estimate"]["cost"][k] for k in ("low", "point", "high"))
        assert 0 < low <= point <= high
        assert e["extrapolating"] is True  # minutes-long files, far below the 1-14 day history
        assert e["pipeline"] == pipeline and e["model_version"] == 1
    table = cli(home, "estimate", "--study", "gait")
    assert "total for 2 of 2 file(s)" in table.stdout and "extrapolating" in table.stdout
    assert "at 200 Hz" in table.stdout
    assert len(catalog.estimates(pipeline)) == 4  # every estimate given is kept

    info = process(catalog, executor)
    assert info.succeeded == 2
    pairs = catalog.estimates(pipeline, with_actual=True)
    assert len(pairs) == 2  # the newest estimate of each file met its run
    runs = {r.id: r for r in catalog.runs("gait")}
    for pair in pairs:
        assert pair.actual and pair.actual["wall_seconds"] == runs[pair.run_id or ""].wall_seconds
    report = cli(home, "models", "report", "--json")
    figures = json.loads(report.stdout)[pipeline]
    assert figures["pairs"] == 2 and set(figures["quantities"]) == {"cost", "wall_seconds", "peak_rss_bytes"}
    only = cli(home, "models", "report", "--pipeline", pipeline, "--json")
    assert json.loads(only.stdout) == {pipeline: figures}
    assert cli(home, "models", "report", "--workflow", pipeline, "--json").stdout == only.stdout  # the old name
    assert json.loads(cli(home, "models", "report", "--workflow", "other", "--json").stdout) == {}


def test_a_single_run_estimate_with_units_and_extrapolation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    catalog.add_imported_runs([("test", o) for o in history("w", 30)])
    assert registry.train(catalog, "w", home, TABLE).decision == "promoted"
    inside = cli(home, "estimate", "--pipeline", "w", "--input-size", "385MB", "--duration", "7d", "--json")
    (single,) = json.loads(inside.stdout)["estimates"]
    assert single["inputs"]["input_bytes"] == 385_000_000 and single["inputs"]["recording_seconds"] == 604_800
    assert single["extrapolating"] is False
    # 7 days of the history's law: 8 + 14 x 7^1.3 = about 175 s
    assert 140 < single["estimate"]["wall_seconds"]["point"] < 215
    table = cli(home, "estimate", "--pipeline", "w", "--input-size", "385MB", "--duration", "7d")
    assert "385.0 MB" in table.stdout  # the size echoed in the units it was given in
    old_name = cli(home, "estimate", "--workflow", "w", "--input-size", "385MB", "--duration", "7d", "--json")
    assert old_name.returncode == 0, old_name.stderr
    assert json.loads(old_name.stdout)["estimates"][0]["estimate"] == single["estimate"]
    assert json.loads(old_name.stdout)["estimates"][0]["pipeline"] == "w"
    outside = cli(home, "estimate", "--pipeline", "w", "--input-size", "5GB", "--json")
    assert json.loads(outside.stdout)["estimates"][0]["extrapolating"] is True
    longer = cli(home, "estimate", "--pipeline", "w", "--input-size", "385MB", "--duration", "30d", "--json")
    assert json.loads(longer.stdout)["estimates"][0]["extrapolating"] is True  # the size fits, the length does not
    bad = cli(home, "estimate", "--pipeline", "w", "--input-size", "two gigs")
    assert bad.returncode == 2 and "'two gigs' is not an amount like 2GB" in bad.stderr


def test_estimates_without_a_model_name_the_fix(tmp_path: Path) -> None:
    catalog = Catalog.for_home(tmp_path / "home")
    catalog.add_imported_runs([("test", o) for o in history("w", 12)])
    (result,) = estimate(catalog, "w", [RunInputs(input_bytes=10**8)], TABLE)
    assert result.prediction is None
    assert result.refusal and "models train --pipeline w" in result.refusal


def catalogued_file(path: Path, size: int) -> FileRecord:
    """A file as the catalog lists it (sparse: only its size matters here)."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return record(str(path), path.name, size)


def test_the_scheduler_asks_for_the_predicted_memory(tmp_path: Path) -> None:
    from biomarkerflow.engine.dask_executor import memory_needed

    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    catalog.add_imported_runs([("test", o) for o in history("w", 30)])
    seven_days = catalogued_file(tmp_path / "S1_wrist.csv", int(7 * MB_PER_DAY))
    assert MemoryRequests(catalog, ["w"], TABLE).request("w", seven_days) is None  # no model: size rule
    assert registry.train(catalog, "w", home, TABLE).decision == "promoted"
    requests = MemoryRequests(catalog, ["w", "other"], TABLE)
    asked = requests.request("w", seven_days)
    assert asked is not None
    # The history peaks at 0.4 GB + 9.5 bytes per input byte (+-2%); the request is the interval's top.
    typical = 4e8 + 9.5 * seven_days.size
    assert typical < asked < typical * 1.15
    assert asked != memory_needed(seven_days.size)
    assert requests.request("other", seven_days) is None
    far_larger = catalogued_file(tmp_path / "S2_wrist.csv", int(60 * MB_PER_DAY))  # the history's longest: 14 d
    assert requests.request("w", far_larger) is None  # outside what the model learned: the size rule


def test_watch_retrains_on_its_schedule(tmp_path: Path) -> None:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    catalog.add_imported_runs([("test", o) for o in history("w", 30)])
    configs = tmp_path / "studies"
    configs.mkdir()
    first = cli(home, "watch", "--configs", str(configs), "--once")
    assert first.returncode == 0, first.stderr
    assert "models: promoted w: v1" in first.stdout
    assert [(m.version, m.status) for m in catalog.cost_models("w")] == [(1, "champion")]
    again = cli(home, "watch", "--configs", str(configs), "--once")  # within retrain_every_hours: no training
    assert again.returncode == 0 and "models:" not in again.stdout
    assert len(catalog.cost_models("w")) == 1


def test_compressed_files_are_estimated_from_the_bytes_their_algorithm_reads() -> None:
    """Rate files are gzip at ratios from 5x to 20x, and their work grows with the JSON inside:
    a type that tells `uncompressed_bytes` (from the gzip head before a run, counted during
    it) gets estimates that follow it, not the stored size; a type that does not is unchanged."""
    rng = random.Random(5)

    def run(index: int) -> Observation:
        json_bytes = rng.uniform(0.2e9, 3e9)
        wall = 2 + json_bytes / 110e6 * rng.uniform(0.98, 1.02)
        return Observation(
            pipeline="rates",
            started_at=START + timedelta(hours=index),
            input_bytes=int(json_bytes / rng.uniform(5, 20)),
            output_bytes=int(json_bytes / 15),
            wall_seconds=wall,
            cpu_seconds=wall,
            peak_rss_bytes=int(3e8),
            device="gz",
            uncompressed_bytes=json_bytes,
        )

    runs = [run(i) for i in range(24)]
    model = CostModel.fit("rates", runs)
    assert "uncompressed_bytes" in model.usage_models[1].features.columns  # the before-a-run set
    stored = 100e6
    dense, sparse = (RunInputs(input_bytes=int(stored), device="gz", uncompressed_bytes=stored * r) for r in (20, 5))
    dense_wall, sparse_wall = (p.point("wall_seconds") for p in model.predict([dense, sparse], TABLE))
    assert dense_wall / sparse_wall == pytest.approx((2 + 2e9 / 110e6) / (2 + 0.5e9 / 110e6), rel=0.15)
    wrist = CostModel.fit("w", history("w", 16))
    assert all("uncompressed_bytes" not in m.features.columns for m in wrist.usage_models)
