"""Pinned runtimes end to end: two SKDH versions side by side, checks in the pinned version, rebuilds.

The 0.16.15 runtime is a real environment built by uv (session fixture `skdh_0_16_runtime`);
0.17.18 is the installed one. Nothing here replaces a runtime with a fake.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.config.validate import validate_source
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.runtimes.builder import BuiltRuntime
from biomarkerflow.runtimes.environment import Runtimes, current_environment
from biomarkerflow.stages.checking import RuntimeChecks
from biomarkerflow.stages.processing import process
from tests.conftest import WRIST_STEPS, write_study
from tests.test_cli import cli
from tests.test_exactness import assert_same, assert_wear_table

OLD, NEW = "0.16.15", "0.17.18"

# What a scientist would run by hand in each version's own environment.
PLAIN_SKDH = textwrap.dedent(
    """\
    import json, sys
    import numpy as np
    import skdh
    pipeline = skdh.Pipeline()
    pipeline.add(skdh.io.ReadBin())
    pipeline.add(skdh.preprocessing.CalibrateAccelerometer(min_hours=24))
    pipeline.add(skdh.preprocessing.GetDayWindowIndices(bases=(0, 12), periods=(24, 24)))
    pipeline.add(skdh.preprocessing.AccelThresholdWearDetection())
    pipeline.add(skdh.sleep.Sleep(day_window=(12, 24)))
    result = pipeline.run(file=sys.argv[1], height=1.7)
    sleep = {k: [None if v is None else (v.item() if hasattr(v, "item") else v) for v in np.asarray(vals, dtype=object)]
             for k, vals in result["Sleep"].items()}
    # The wear bouts as SKDH gives them (sample indices) and the reader's time axis they index.
    np.savez(sys.argv[2], wear=result["AccelThresholdWearDetection"]["wear"], time=result["ReadBin"]["time"],
             fs=result["ReadBin"]["fs"])
    print(json.dumps({"version": skdh.__version__, "sleep": sleep}, default=str))
    """
)
STEPS_WITHOUT_ACTIVITY = "\n".join(WRIST_STEPS.splitlines()[:4]) + "\n"


def _link_copy(source: Path, target: Path) -> None:
    """A private copy of a runtime, hard-linked (a real copy of its 550 MB takes ~10 s)."""
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)


def plain_skdh_in(python: str, recording: Path, arrays: Path) -> dict[str, Any]:
    """PLAIN_SKDH in the environment of `python`: its version, sleep table, wear bouts, time axis, fs."""
    done = subprocess.run(
        [python, "-c", PLAIN_SKDH, str(recording), str(arrays)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(arrays) as saved:
        result.update(wear=saved["wear"], time=saved["time"], fs=float(saved["fs"]))
    return result


@pytest.fixture(scope="module")
def plain_versions(
    tmp_path_factory: pytest.TempPathFactory, wrist_recording: Path, skdh_0_16_runtime: BuiltRuntime
) -> dict[str, dict[str, Any]]:
    """Plain SKDH on the wrist recording, once in each version's own environment."""
    folder = tmp_path_factory.mktemp("plain-skdh")
    theirs = {
        "old": plain_skdh_in(skdh_0_16_runtime.python, wrist_recording, folder / "old.npz"),
        "new": plain_skdh_in(current_environment().python, wrist_recording, folder / "new.npz"),
    }
    assert (theirs["old"]["version"], theirs["new"]["version"]) == (OLD, NEW)
    return theirs


@pytest.fixture(scope="module")
def two_versions(
    tmp_path_factory: pytest.TempPathFactory, wrist_recording: Path, skdh_0_16_runtime: BuiltRuntime
) -> dict[str, Any]:
    """One home, two studies over the same recording, one pinned to each version, one `process` command."""
    from biomarkerflow.catalog.manager import Catalog

    root = tmp_path_factory.mktemp("two-versions")
    for study, version in (("old", OLD), ("new", NEW)):
        write_study(
            root,
            study=study,
            files={wrist_recording.name: wrist_recording},
            steps=STEPS_WITHOUT_ACTIVITY,
            metadata="subject,height_m\nP01,1.7\n",
            package=f"scikit-digital-health=={version}",
        )
    home = root / "home"
    scanned = cli(home, "scan", "--configs", str(root / "studies"))
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    processed = cli(home, "process", "--workers", "2")
    assert processed.returncode == 0, processed.stdout + processed.stderr
    assert "done: 2 succeeded, 0 failed" in processed.stdout
    return {"catalog": Catalog.for_home(home), "root": root, "home": home}


def _run_folder(catalog: Any, study: str) -> Path:
    runs = [r for r in catalog.runs(study) if r.outcome == "succeeded"]
    assert len(runs) == 1
    return Path(runs[0].result_location)


def test_each_study_ran_in_its_own_runtime(two_versions: dict[str, Any], skdh_0_16_runtime: BuiltRuntime) -> None:
    catalog = two_versions["catalog"]
    old = json.loads((_run_folder(catalog, "old") / "provenance.json").read_text())
    new = json.loads((_run_folder(catalog, "new") / "provenance.json").read_text())
    assert old["package"]["version"] == OLD
    assert new["package"]["version"] == NEW
    assert old["runtime"]["isolated"] is True
    assert old["runtime"]["lock_hash"] == skdh_0_16_runtime.lock_hash
    assert old["runtime"]["packages"]["scikit-digital-health"] == OLD
    assert new["runtime"]["isolated"] is False
    assert new["runtime"]["lock_hash"] == current_environment().lock_hash
    # The catalog's run rows say the same.
    (old_run,) = [r for r in catalog.runs("old") if r.outcome == "succeeded"]
    assert (old_run.package_version, old_run.lock_hash) == (OLD, skdh_0_16_runtime.lock_hash)


def test_each_version_gives_its_own_numbers_exactly(
    two_versions: dict[str, Any], plain_versions: dict[str, dict[str, Any]]
) -> None:
    catalog = two_versions["catalog"]
    ours = {study: pd.read_parquet(_run_folder(catalog, study) / "sleep.parquet") for study in ("old", "new")}
    theirs = plain_versions
    for study in ("old", "new"):
        for key, values in theirs[study]["sleep"].items():
            assert_same(ours[study][key], values, f"{study}.sleep.{key}")
    # The versions disagree on this recording, and so do the two studies.
    differing = [k for k in theirs["old"]["sleep"] if theirs["old"]["sleep"][k] != theirs["new"]["sleep"][k]]
    assert differing, "SKDH 0.16.15 and 0.17.18 should disagree on this recording"
    for key in differing:
        assert ours["old"][key].tolist() != ours["new"][key].tolist(), key


def test_each_version_gives_its_own_wear_bouts_exactly(
    two_versions: dict[str, Any], plain_versions: dict[str, dict[str, Any]]
) -> None:
    """Each study's wear table, in full, equals its own version's plain SKDH; the versions differ."""
    catalog = two_versions["catalog"]
    ours = {study: pd.read_parquet(_run_folder(catalog, study) / "wear.parquet") for study in ("old", "new")}
    theirs = plain_versions
    for study in ("old", "new"):
        # No tz_name in this study's metadata: times are the device's naive clock.
        assert_wear_table(ours[study], theirs[study]["wear"], theirs[study]["time"], theirs[study]["fs"], None, study)
    # Both versions read the same time axis, and find different wear on it: the studies do too.
    assert np.array_equal(theirs["old"]["time"], theirs["new"]["time"])
    assert theirs["old"]["fs"] == theirs["new"]["fs"]
    minutes = {study: float(np.diff(theirs[study]["wear"], axis=1).sum()) / theirs[study]["fs"] / 60 for study in ours}
    assert minutes["old"] != pytest.approx(minutes["new"], abs=1 / 60), f"{OLD} and {NEW} should differ: {minutes}"
    assert ours["old"]["duration_minutes"].sum() == pytest.approx(minutes["old"], rel=0, abs=1e-6)
    assert ours["new"]["duration_minutes"].sum() == pytest.approx(minutes["new"], rel=0, abs=1e-6)
    for column in ("start_index", "end_index", "end"):
        assert ours["old"][column].tolist() != ours["new"][column].tolist(), column


def test_a_parameter_the_pinned_version_lacks_is_a_config_error(
    tmp_path: Path, samples: Path, executor: LocalExecutor, runtime_root: Path
) -> None:
    """GaitLumbar(provide_leg_length=...) exists in 0.16.15 and was removed in 0.17."""
    runtimes = Runtimes(runtime_root)
    found: dict[str, list[Any]] = {}
    with RuntimeChecks(runtimes, executor) as checks:
        for version in (OLD, NEW):
            configs = write_study(
                tmp_path / version,
                study="gait",
                files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
                steps="- GaitLumbar: {provide_leg_length: true}\n",
                package=f"scikit-digital-health=={version}",
            )
            found[version] = validate_source(configs / "gait.yaml", checks=checks)[1]
            text = (configs / "gait.yaml").read_text().splitlines()
            line = next(i for i, row in enumerate(text, 1) if "provide_leg_length" in row)
    assert found[OLD] == []
    (problem,) = found[NEW]
    assert problem.field == "pipeline.steps[0].GaitLumbar.provide_leg_length"
    assert problem.line == line and "no parameter 'provide_leg_length'" in problem.message


def test_a_version_that_does_not_exist_is_a_config_error_at_the_pin(tmp_path: Path, runtime_root: Path) -> None:
    configs = write_study(
        tmp_path, study="nope", files={}, package="scikit-digital-health==9.9.9", metadata=None
    )
    with RuntimeChecks(Runtimes(runtime_root)) as checks:
        _, problems = validate_source(configs / "nope.yaml", checks=checks)
    (problem,) = problems
    assert problem.field == "pipeline.package"
    assert "scikit-digital-health==9.9.9" in problem.message
    assert not [p for p in runtime_root.iterdir() if p.name.startswith(".build-")]


def test_a_deleted_runtime_is_rebuilt_not_fatal(
    tmp_path: Path, wrist_recording: Path, skdh_0_16_runtime: BuiltRuntime, runtime_root: Path
) -> None:
    """Delete the runtime between finding it and running a job: process rebuilds it and succeeds."""
    private_root = tmp_path / "runtimes"
    _link_copy(skdh_0_16_runtime.path, private_root / skdh_0_16_runtime.path.name)
    runtimes = Runtimes(private_root)
    runtime = runtimes.for_pin(f"scikit-digital-health=={OLD}")
    assert runtime.isolated and Path(runtime.python).exists()
    shutil.rmtree(private_root / skdh_0_16_runtime.path.name)
    assert runtimes.ready(runtime).python == runtime.python
    assert Path(runtime.python).exists()


def test_unreachable_index_fails_only_that_study(
    tmp_path: Path, wrist_recording: Path, samples: Path, executor: LocalExecutor, skdh_0_16_runtime: BuiltRuntime
) -> None:
    """The old study's runtime is gone and the package index is down: it waits with a clear
    problem, its file is untouched, and the other study runs."""
    import os

    from biomarkerflow.catalog.manager import Catalog
    from biomarkerflow.stages.discovery import scan

    private_root = tmp_path / "runtimes"
    _link_copy(skdh_0_16_runtime.path, private_root / skdh_0_16_runtime.path.name)
    write_study(
        tmp_path,
        study="old",
        files={wrist_recording.name: wrist_recording},
        package=f"scikit-digital-health=={OLD}",
        metadata="subject,height_m\nP01,1.7\n",
    )
    write_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\n",
    )
    catalog = Catalog.for_home(tmp_path / "home")
    with RuntimeChecks(Runtimes(private_root), executor) as checks:
        assert scan(catalog, str(tmp_path / "studies"), lambda url, text: validate_source(url, text, checks)).ok
    shutil.rmtree(private_root / skdh_0_16_runtime.path.name)
    dead_index = {"UV_INDEX_URL": "http://127.0.0.1:9/simple", "UV_NO_CACHE": "1", "UV_OFFLINE": "0"}
    saved = {k: os.environ.get(k) for k in dead_index}
    os.environ.update(dead_index)
    try:
        info = process(catalog, executor, runtimes=Runtimes(private_root))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert [(f.study_id, state) for f, _, state in info.outcomes] == [("gait", "SUCCEEDED")]
    (problem,) = [p for g in info.gates if g.study_id == "old" for p in g.problems]
    assert f"scikit-digital-health=={OLD}" in problem
    assert [f.state for f in catalog.files("old")] == ["DISCOVERED"]
    assert not [p for p in private_root.iterdir() if p.name.startswith(".build-")]


def test_runtimes_commands(tmp_path: Path, skdh_0_16_runtime: BuiltRuntime, runtime_root: Path) -> None:
    """list shows the cached runtime; build of the installed pin needs nothing; prune keeps pinned ones."""
    home = tmp_path / "home"
    listed = cli(home, "runtimes", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["key"]: row for row in json.loads(listed.stdout)}
    row = rows[skdh_0_16_runtime.spec.key]
    assert row["lock_hash"] == skdh_0_16_runtime.lock_hash
    assert row["requirement"] == f"scikit-digital-health=={OLD}"
    assert row["size_bytes"] > 50_000_000
    built = cli(home, "runtimes", "build", "--package", f"scikit-digital-health=={NEW}")
    assert built.returncode == 0 and "installed environment satisfies it" in built.stdout
    # Nothing in this home pins 0.16.15, so a dry-run prune would remove it, and only dry.
    pruned = cli(home, "runtimes", "prune", "--dry-run")
    assert pruned.returncode == 0 and "would remove" in pruned.stdout and OLD in pruned.stdout
    assert Path(skdh_0_16_runtime.python).exists()
    # A study in the catalog pinning it keeps it.
    configs = write_study(tmp_path, study="old", files={}, package=f"scikit-digital-health=={OLD}", metadata=None)
    assert cli(home, "scan", "--configs", str(configs)).returncode == 0
    pruned = cli(home, "runtimes", "prune", "--dry-run")
    assert OLD not in pruned.stdout, pruned.stdout


def test_lineage_command_traces_a_result_to_its_runtime(
    two_versions: dict[str, Any], skdh_0_16_runtime: BuiltRuntime, wrist_recording: Path
) -> None:
    catalog, home = two_versions["catalog"], two_versions["home"]
    result = _run_folder(catalog, "old") / "sleep.parquet"
    traced = cli(home, "lineage", str(result), "--json")
    assert traced.returncode == 0, traced.stderr
    chain = json.loads(traced.stdout)
    assert chain["kind"] == "result"
    assert chain["runtime"]["lock_hash"] == skdh_0_16_runtime.lock_hash
    assert chain["input"]["sha256"] == hashlib.sha256(wrist_recording.read_bytes()).hexdigest()
    (study,) = [s for s in catalog.studies() if s.id == "old"]
    assert chain["config"]["sha256"] == study.config_sha256
    text = cli(home, "lineage", str(result))
    assert OLD in text.stdout and "current" in text.stdout, text.stdout


def test_changing_the_pin_recomputes_in_the_new_runtime_and_keeps_the_old_run(
    tmp_path: Path, samples: Path, executor: LocalExecutor, runtime_root: Path, skdh_0_16_runtime: BuiltRuntime
) -> None:
    from biomarkerflow.catalog.manager import Catalog
    from biomarkerflow.stages.discovery import scan
    from biomarkerflow.stages.processing import plan

    def scan_with_runtime_checks() -> Any:
        with RuntimeChecks(Runtimes(runtime_root), executor) as checks:
            return scan(catalog, str(configs), lambda url, text: validate_source(url, text, checks))

    study: dict[str, Any] = {
        "study": "gait",
        "files": {"ax6_a.cwa": samples / "ax6_sample.cwa"},
        "steps": "- GaitLumbar: {}\n",
    }
    configs = write_study(tmp_path, metadata="subject,height_m\nax6,1.7\n", **study)
    catalog = Catalog.for_home(tmp_path / "home")
    assert scan_with_runtime_checks().ok
    first = process(catalog, executor, runtimes=Runtimes(runtime_root))
    assert [state for _, _, state in first.outcomes] == ["SUCCEEDED"]
    (old_run,) = catalog.runs("gait")
    config = configs / "gait.yaml"
    config.write_text(config.read_text().replace(f"=={NEW}", f"=={OLD}"))
    assert scan_with_runtime_checks().studies[0].stale == 1
    (planned,) = plan(catalog)
    assert planned.will_run and "STALE" in planned.why
    second = process(catalog, executor, runtimes=Runtimes(runtime_root))
    assert [state for _, _, state in second.outcomes] == ["SUCCEEDED"]
    runs = {r.id: r for r in catalog.runs("gait")}
    assert set(runs) > {old_run.id} and len(runs) == 2
    (new_run,) = [r for r in runs.values() if r.id != old_run.id]
    assert (old_run.package_version, new_run.package_version) == (NEW, OLD)
    assert new_run.lock_hash == skdh_0_16_runtime.lock_hash
    assert (Path(old_run.result_location or "") / "_SUCCESS").exists()  # the earlier run is kept
    table = pd.read_parquet(tmp_path / "results" / "gait" / "tables" / "gait.parquet")
    assert set(table["run_id"]) == {new_run.id}


def test_constraints_build_a_runtime_with_numpy_1_and_jobs_run_there(
    tmp_path: Path, samples: Path, executor: LocalExecutor, runtime_root: Path
) -> None:
    """`constraints: ["numpy<2"]` (what SKDH 0.15.x needs): the job runs on NumPy 1.x while
    the platform itself runs NumPy 2, and its results come back intact."""
    import numpy as np

    from biomarkerflow.catalog.manager import Catalog
    from biomarkerflow.stages.discovery import scan

    write_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\n",
        package=f"scikit-digital-health=={OLD}",
        constraints=["numpy<2"],
    )
    catalog = Catalog.for_home(tmp_path / "home")
    runtimes = Runtimes(runtime_root)
    with RuntimeChecks(runtimes, executor) as checks:
        assert scan(catalog, str(tmp_path / "studies"), lambda url, text: validate_source(url, text, checks)).ok
    info = process(catalog, executor, runtimes=runtimes)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"], [o.error for _, o, _ in info.outcomes]
    assert np.__version__.startswith("2.")
    (run,) = catalog.runs("gait")
    provenance = json.loads((Path(run.result_location or "") / "provenance.json").read_text())
    assert provenance["runtime"]["packages"]["numpy"].startswith("1.")
    assert provenance["package"]["version"] == OLD
    assert provenance["constraints"] == ["numpy<2"]
    strides = pd.read_parquet(Path(run.result_location or "") / "gait.parquet")
    assert len(strides) > 0 and strides["stride time"].notna().any()


def test_installed_packages_read_fast_equal_the_full_metadata() -> None:
    from importlib import metadata

    from biomarkerflow.runtimes.process import installed_packages

    full = {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}
    assert installed_packages() == full
    assert full["scikit-digital-health"]  # a name with dashes, as its metadata writes it
