"""A second workflow type, end to end, with no core module naming it (issue 15, point 3).

`csv-stats` (tests/plugins/csvstats, a separate package installed by `scripts/setup.sh --dev`)
registers through the entry point only. Its study goes through everything an SKDH study
does: validation (in its runtime: the platform's own environment, it pins nothing), scan,
requirement gating on metadata, jobs on the local pool and on Dask, consolidated tables,
SQL, lineage, costs, STALE on a parameter change, and estimates once a cost model has
enough runs. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.config.validate import validate_source
from biomarkerflow.cost import registry as cost_registry
from biomarkerflow.cost.estimate import estimate, study_inputs
from biomarkerflow.cost.model import MIN_RUNS
from biomarkerflow.cost.prices import BUILT_IN_TABLES
from biomarkerflow.cost.reports import group_costs
from biomarkerflow.engine.dask_executor import DaskExecutor
from biomarkerflow.engine.executor import LocalExecutor, make_executor
from biomarkerflow.plugins import registry, suite
from biomarkerflow.plugins.suite import check_workflow_type
from biomarkerflow.results.lineage import lineage
from biomarkerflow.results.query import run_query
from biomarkerflow.runtimes.environment import Runtimes
from biomarkerflow.stages.checking import RuntimeChecks
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process
from tests.databases import BACKENDS, catalog_url

STUDY = "lab-values"
TABLE = BUILT_IN_TABLES["aws-fargate-us-east-1"]
CONFIG = """\
study: lab-values
workflow: csv-stats
data:
  location: ../data/csv
  subject: '(?P<subject>[A-Za-z0-9]+)_'
metadata:
  - location: ../data/subjects.csv
requirements:
  metadata: [site]
stats:
  columns: [x]
output:
  location: ../results/lab-values
"""


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    executor = make_executor("local-dask:2", 2)
    assert isinstance(executor, DaskExecutor)
    yield executor
    executor.close()


def _csv(rows: int, seed: int) -> str:
    lines = ["x,y,label"] + [f"{(seed * 7 + i * 3) % 11},{seed + i / 4},r{i}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def _workspace(root: Path, subjects: dict[str, str], files: dict[str, str]) -> Path:
    data = root / "data" / "csv"
    data.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (data / name).write_text(text)
    rows = [f"{subject},{site}," + ("2" if subject == "S02" else "") for subject, site in subjects.items()]
    (root / "data" / "subjects.csv").write_text("subject,site,scale\n" + "\n".join(rows) + "\n")
    configs = root / "studies"
    configs.mkdir(exist_ok=True)
    if not (configs / f"{STUDY}.yaml").exists():
        (configs / f"{STUDY}.yaml").write_text(CONFIG)
    return configs


FILES = {
    f"{s}_{v}.csv": _csv(5 + 3 * i + j, 10 * i + j)
    for i, s in enumerate(("S01", "S02", "S03"))
    for j, v in enumerate("ab")
}


def _expected_means(root: Path, column: str) -> dict[str, float]:
    """What the job must find, computed here with pandas: file -> mean x scale."""
    scales = {"S02": 2.0}
    return {
        name: float(pd.read_csv(root / "data" / "csv" / name)[column].mean()) * scales.get(name[:3], 1.0)
        for name in FILES
    }


def _scan(catalog: Catalog, configs: Path, checks: RuntimeChecks) -> object:
    info = scan(catalog, str(configs), lambda url, text: validate_source(url, text, checks))
    assert info.ok, [(s.problems, s.error) for s in info.studies]
    return info.studies[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_csv_stats_study_runs_end_to_end(
    backend: str, tmp_path: Path, executor: LocalExecutor, dask_executor: DaskExecutor
) -> None:
    assert "csv-stats" in registry.names()
    configs = _workspace(tmp_path, {"S01": "lab-a", "S02": "lab-b", "S03": ""}, FILES)
    runtimes = Runtimes(tmp_path / "runtimes")
    with catalog_url(backend, tmp_path / "home") as url, RuntimeChecks(runtimes, executor) as checks:
        catalog = Catalog(url)
        # Validation: its type's model and checks, located by line like SKDH's.
        _, problems = validate_source(configs / f"{STUDY}.yaml", checks=checks)
        assert problems == []
        assert (
            type(
                StudyConfig.model_validate(
                    {"study": "s", "workflow": "csv-stats", "data": {"location": "d"}, "stats": {"columns": ["x"]}}
                )
            ).__name__
            == "CsvStatsConfig"
        )
        first = _scan(catalog, configs, checks)
        assert first.files.new == 6  # type: ignore[attr-defined]

        # Requirement gating: S03 has no site yet; the others run on the local pool.
        info = process(catalog, executor, runtimes=runtimes)
        assert info.succeeded == 4 and info.failed == 0, [o.error for _, o, _ in info.outcomes]
        waiting = {f.relative_path: f.reason for f in catalog.files(STUDY, ["WAITING"])}
        assert waiting == {n: "metadata missing for subject 'S03': site" for n in ("S03_a.csv", "S03_b.csv")}

        _workspace(tmp_path, {"S01": "lab-a", "S02": "lab-b", "S03": "lab-c"}, {})
        info = process(catalog, executor, runtimes=runtimes)
        assert info.succeeded == 2
        _assert_tables(tmp_path, catalog, "x")
        _assert_lineage(tmp_path, catalog)
        _assert_costs(catalog, runs=6)

        # A parameter change makes every finished file STALE; Dask recomputes them.
        (configs / f"{STUDY}.yaml").write_text(CONFIG.replace("columns: [x]", "columns: [x, y]"))
        changed = _scan(catalog, configs, checks)
        assert (changed.config_change, changed.stale) == ("changed", 6)  # type: ignore[attr-defined]
        assert {f.state for f in catalog.files(STUDY)} == {"STALE"}
        info = process(catalog, dask_executor, runtimes=runtimes)
        assert info.succeeded == 6, [o.error for _, o, _ in info.outcomes]
        _assert_tables(tmp_path, catalog, "y")
        _assert_estimates(tmp_path, catalog, configs, checks)
        catalog.close()


def _assert_tables(root: Path, catalog: Catalog, column: str) -> None:
    output = str(root / "results" / STUDY)
    found = run_query(output, f'SELECT file, "mean" FROM csv_means WHERE "column" = \'{column}\' ORDER BY file')
    assert dict(zip(found["file"], found["mean"], strict=True)) == pytest.approx(_expected_means(root, column))
    rows = run_query(output, "SELECT file, rows FROM csv_rows ORDER BY file")
    assert dict(zip(rows["file"], rows["rows"], strict=True)) == {n: t.count("\n") - 1 for n, t in FILES.items()}
    # One current run per file in the consolidated tables, whatever ran before.
    assert len({r.id for _, r in catalog.current_results(STUDY)}) == len(FILES)


def _assert_lineage(root: Path, catalog: Catalog) -> None:
    file, run = next((f, r) for f, r in catalog.current_results(STUDY) if f.relative_path == "S02_a.csv")
    traced = lineage(str(Path(run.result_location or "") / "csv_means.parquet"), catalog)
    data = (root / "data" / "csv" / "S02_a.csv").read_bytes()
    assert traced["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert traced["pipeline"] == [{"step": "ColumnMeans", "params": {"columns": ["x"], "scale": 2.0}}]
    assert traced["runtime"]["package"] == {"name": "biomarkerflow-csvstats", "version": "0.1.0"}
    assert traced["config"]["package_pin"] is None  # it pins nothing: the platform's own environment
    assert (traced["catalog"]["status"], traced["catalog"]["id"]) == ("current", run.id)
    assert run.package_version == "0.1.0" and file.subject == "S02"
    assert run.facts == {"rows": FILES["S02_a.csv"].count("\n") - 1}  # the type's own facts, kept with the run


def _assert_costs(catalog: Catalog, *, runs: int) -> None:
    groups, total = group_costs(catalog.cost_rows([STUDY]), "pipeline")
    (group,) = groups
    assert group.key.startswith("csv-stats-0.1.0-")
    assert (group.runs, group.failed_runs, len(group.subjects)) == (runs, 0, 3)
    assert group.cost > 0 and total.input_bytes == sum(len(t) for t in FILES.values())


def _assert_estimates(root: Path, catalog: Catalog, configs: Path, checks: RuntimeChecks) -> None:
    new = {"S04_a.csv": _csv(40, 3), "S04_b.csv": _csv(60, 4)}
    _workspace(root, {"S01": "lab-a", "S02": "lab-b", "S03": "lab-c", "S04": "lab-d"}, new)
    _scan(catalog, configs, checks)
    pipeline, inputs, file_ids, names = study_inputs(catalog, STUDY)
    assert sorted(n or "" for n in names) == sorted(new)
    assert len(catalog.observations(pipeline)) == len(FILES) >= MIN_RUNS  # the [x, y] runs only
    (trained,) = cost_registry.train_all(catalog, root / "home", TABLE, pipeline=pipeline)
    assert trained.decision == "promoted", trained.message  # it learned from this type's runs
    estimates = estimate(catalog, pipeline, inputs, TABLE, file_ids=file_ids, files=names)
    assert all(e.prediction is not None and e.prediction.point("cost") > 0 for e in estimates)
    assert {e.inputs.input_bytes for e in estimates} == {len(t) for t in new.values()}


def test_an_unknown_workflow_type_lists_the_installed_ones(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(CONFIG.replace("workflow: csv-stats", "workflow: csv-stat"))
    _, problems = validate_source(config)
    (problem,) = [p for p in problems if p.field == "workflow"]
    assert (problem.line, problem.column) == (2, 11)
    installed = "csv-stats, price-transparency, skdh"
    assert problem.message.startswith(f"unknown workflow type 'csv-stat'; installed: {installed}")


def test_the_type_checks_its_own_section_located_by_line(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(CONFIG.replace("columns: [x]", "columns: [x, x]\n  colums: 1"))
    _, problems = validate_source(config)
    assert [(p.line, p.field) for p in problems] == [(12, "stats.colums")]
    assert problems[0].message == "unknown field 'colums'; did you mean 'columns'?"
    config.write_text(CONFIG.replace("columns: [x]", "columns: [x, x]"))
    _, problems = validate_source(config)
    assert [(p.line, p.field, p.message) for p in problems] == [(11, "stats.columns[1]", "column 'x' is named twice")]


SKDH_EXAMPLE = {
    "study": "wrist",
    "data": {"location": "data", "reader": "ReadBin"},
    "pipeline": {"package": "scikit-digital-health==0.17.18", "steps": [{"GaitLumbar": {}}]},
}
CSV_EXAMPLE = {"study": "lab", "workflow": "csv-stats", "data": {"location": "d"}, "stats": {"columns": ["x"]}}


MRF_EXAMPLE = {"study": "rates", "workflow": "price-transparency", "data": {"location": "d"}}


@pytest.mark.parametrize(
    ("name", "example"),
    [("skdh", SKDH_EXAMPLE), ("csv-stats", CSV_EXAMPLE), ("price-transparency", MRF_EXAMPLE)],
)
def test_every_type_passes_the_shared_checks(name: str, example: dict[str, object]) -> None:
    check_workflow_type(registry.get(name), example)


def test_the_shared_checks_catch_a_broken_type() -> None:
    class Careless(type(registry.get("csv-stats"))):  # type: ignore[misc]
        def plan_job(self, config: StudyConfig) -> object:
            return lambda: None  # cannot cross into the runtime's process

    careless = Careless()
    with pytest.raises(AssertionError, match="the entry point of its name gives this type"):
        check_workflow_type(careless, CSV_EXAMPLE)
    with pytest.raises(AssertionError, match="plan_job must give plain picklable values"):
        suite._check_job_values(careless, StudyConfig.model_validate(CSV_EXAMPLE))
