"""Per-run profiling (issue 19, point 6): `process --profile` or a study's `profile: {every: N}`
records where a job's time goes (sampled inside the runtime, rendered by pyinstrument) as profile.html beside the
run's tables; provenance, lineage, `status` and the dashboard's run page name it; the route
serves it only to a signed-in reader, sandboxed; turning profiling on recomputes nothing, and a
profiler that fails never fails the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from biomarkerflow.catalog.manager import Catalog, FileRecord
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins import registry
from biomarkerflow.results.lineage import lineage
from biomarkerflow.results.lineage_render import render
from biomarkerflow.runtimes import entrypoint, profiling
from biomarkerflow.stages.checking import RuntimeChecks
from biomarkerflow.stages.processing import process, profile_picks
from tests.test_cli import cli
from tests.test_second_workflow_type import CONFIG, STUDY, _csv, _scan, _workspace

SUBJECTS = {"S01": "a", "S02": "b"}
FILES = {f"S0{i % 2 + 1}_{i}.csv": _csv(2000, i) for i in range(4)}


def _provenance(run_folder: str | None) -> dict[str, Any]:
    assert run_folder is not None
    return json.loads((Path(run_folder) / "provenance.json").read_text())


def _profiled(catalog: Catalog) -> dict[str, bool]:
    """File -> whether its current run has a profile (every file SUCCEEDED)."""
    found = {}
    for file, run in catalog.current_results(STUDY):
        assert file.state == FileState.SUCCEEDED.value
        page = Path(str(run.result_location)) / profiling.PROFILE_FILE
        found[file.relative_path] = page.exists()
        assert ("profile" in _provenance(run.result_location)) == page.exists()
    return found


def test_process_profile_writes_a_profile_that_provenance_lineage_status_and_dashboard_name(tmp_path: Path) -> None:
    # Long enough (about 0.1 s each) for a few dozen samples inside the type's run_job.
    configs = _workspace(tmp_path, SUBJECTS, {"S01_big.csv": _csv(300_000, 1), "S02_big.csv": _csv(300_000, 2)})
    home = tmp_path / "home"
    assert cli(home, "scan", "--configs", str(configs)).returncode == 0
    processed = cli(home, "process", "--profile", "--workers", "1")
    assert processed.returncode == 0, processed.stderr

    catalog = Catalog.for_home(home)
    runs = [run for _, run in catalog.current_results(STUDY)]
    assert len(runs) == 2
    for run in runs:
        folder = Path(str(run.result_location))
        page = (folder / profiling.PROFILE_FILE).read_text()
        # pyinstrument's own page, with the job's frames: the type's run_job under the entrypoint.
        assert "pyinstrumentHTMLRenderer" in page and "CsvStats.run_job" in page and "CParserWrapper.read" in page
        speedscope = json.loads((folder / profiling.SPEEDSCOPE_FILE).read_text())
        assert "CsvStats.run_job" in {frame["name"] for frame in speedscope["shared"]["frames"]}
        provenance = _provenance(run.result_location)
        assert set(provenance["files"]) == {profiling.PROFILE_FILE, profiling.SPEEDSCOPE_FILE}
        assert provenance["profile"]["file"] == profiling.PROFILE_FILE
        assert "pyinstrument" in provenance["profile"]["profiler"]
        assert provenance["profile"]["seconds"] > 0 and provenance["profile"]["samples"] > 0
        assert run.facts["profile"] == profiling.PROFILE_FILE  # the catalog's copy, for `status`
        traced = lineage(str(folder), catalog)
        assert traced["result"]["profile"]["url"] == f"{folder}/{profiling.PROFILE_FILE}"
        shown = [line.split() for line in render(traced)]
        assert ["profile", f"{folder}/{profiling.PROFILE_FILE}"] in [words[:2] for words in shown]

    status = cli(home, "status")
    assert status.returncode == 0, status.stderr
    for run in runs:
        assert f"{run.result_location}/{profiling.PROFILE_FILE}" in status.stdout
    assert status.stdout.count("PROFILE") == 2
    as_json = json.loads(cli(home, "status", "--json").stdout)
    assert {p["run_id"] for p in as_json["profiles"]} == {run.id for run in runs}
    assert all(p["profile"].endswith("/profile.html") and p["study"] == STUDY for p in as_json["profiles"])
    _dashboard_serves_the_profile(home, runs[0].id, Path(str(runs[0].result_location)))
    catalog.close()


def _dashboard_serves_the_profile(home: Path, run_id: str, folder: Path) -> None:
    from biomarkerflow.api import create_app
    from biomarkerflow.service import Platform
    from tests.test_dashboard import _client, _csrf, _page

    platform = Platform(home=home)
    client = _client(create_app(platform))
    url = f"/api/v1/runs/{run_id}/files/{profiling.PROFILE_FILE}"
    assert client.get(url).status_code == 401  # neither a session nor a token
    token = platform.create_token("viewer", "read").token
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": _csrf(form.text), "next": "/"}).status_code == 303
    page = _page(client, f"/runs/{run_id}")
    assert f'class="run-profile" href="{url}"' in page and 'target="_blank"' in page
    served = client.get(url)
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert served.content == (folder / profiling.PROFILE_FILE).read_bytes()
    # Its scripts run in an origin of their own: no access to the session or the dashboard.
    policy = served.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts;") and "allow-same-origin" not in policy
    assert "default-src 'none'" in policy and served.headers["x-content-type-options"] == "nosniff"
    platform.close()


def test_every_n_profiles_every_nth_file_and_turning_it_on_recomputes_nothing(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    configs = _workspace(tmp_path, SUBJECTS, FILES)
    config_file = configs / f"{STUDY}.yaml"
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with RuntimeChecks(_runtimes(tmp_path)) as checks:
        _scan(catalog, configs, checks)
        process(catalog, executor, runtimes=_runtimes(tmp_path))
        assert not any(_profiled(catalog).values())
        first_runs = {run.id for _, run in catalog.current_results(STUDY)}

        config_file.write_text(CONFIG + "profile:\n  every: 2\n")
        rescanned = _scan(catalog, configs, checks)
        assert rescanned.config_change == "changed" and rescanned.stale == 0  # type: ignore[attr-defined]
        assert {f.state for f in catalog.files(STUDY)} == {FileState.SUCCEEDED.value}
        again = process(catalog, executor, runtimes=_runtimes(tmp_path))
        assert again.outcomes == []  # nothing recomputed
        assert {run.id for _, run in catalog.current_results(STUDY)} == first_runs

        catalog.mark_stale(STUDY, "test: run every file again")
        process(catalog, executor, runtimes=_runtimes(tmp_path))
    ids = {f.relative_path: f.id for f in catalog.files(STUDY)}
    profiled = _profiled(catalog)
    assert profiled == {path: ids[path] % 2 == 0 for path in ids}
    assert sum(profiled.values()) == len(FILES) // 2  # ids count up as files register: exactly every second
    catalog.close()


def _runtimes(tmp_path: Path) -> Any:
    from biomarkerflow.runtimes.environment import Runtimes, default_cache_root

    return Runtimes(default_cache_root(tmp_path / "home"))


def test_profile_picks_every_nth_file_by_catalog_id() -> None:
    def config(every: int) -> StudyConfig:
        section = {"columns": ["x"]}
        return StudyConfig.model_validate(
            {
                "study": "s",
                "workflow": "csv-stats",
                "data": {"location": "."},
                "stats": section,
                "profile": {"every": every},
            }
        )

    def file(file_id: int) -> FileRecord:
        return FileRecord(file_id, "s", "u", "p", None, 1, "f", datetime.now(), "READY", None, 0, None, None)

    assert [i for i in range(1, 11) if profile_picks(config(3), file(i))] == [3, 6, 9]
    assert not any(profile_picks(config(0), file(i)) for i in range(1, 11))
    assert all(profile_picks(config(1), file(i)) for i in range(1, 11))
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        config(-1)


def _job(tmp_path: Path, data: Path) -> entrypoint.JobSpec:
    return entrypoint.JobSpec(
        run_id="20260101T000000-profile",
        study_id=STUDY,
        file_id=1,
        input_url=str(data),
        relative_path=data.name,
        subject="S01",
        input_fingerprint="f",
        input_size=data.stat().st_size,
        workflow_type=registry.reference("csv-stats"),
        plan={"columns": ["x"], "hold_until": None},
        inputs={},
        result_location=str(tmp_path / "run"),
        formats=["parquet"],
        profile=True,
    )


def _raise(exc: Exception) -> Any:
    raise exc


@pytest.mark.parametrize("failing", ["start", "write"])
def test_a_profiler_that_fails_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    data = tmp_path / "S01_a.csv"
    data.write_text(_csv(50, 1))
    if failing == "start":
        for sampler in (profiling._Sampler, profiling._SignalSampler):
            monkeypatch.setattr(sampler, "start", lambda self: _raise(RuntimeError("no sampling here")))
    else:
        monkeypatch.setattr(profiling.Recorder, "_write", lambda self: _raise(OSError("disk full")))
    outcome = entrypoint.execute(_job(tmp_path, data))
    assert outcome.succeeded, outcome.error
    assert "profile" not in outcome.facts
    provenance = _provenance(outcome.result_location)
    expected = "no sampling here" if failing == "start" else "disk full"
    assert provenance["profile"]["file"] is None and expected in provenance["profile"]["error"]
    assert any(w.startswith("no profile:") and expected in w for w in provenance["warnings"])
    assert provenance["files"] == {}
    assert not (tmp_path / "run" / profiling.PROFILE_FILE).exists()
    traced = lineage(str(tmp_path / "run"))
    assert any(line.startswith("profile") and expected in line for line in render(traced))


def _sampled_stack() -> float:
    return sum(i * i for i in range(2_000_000))


def test_samples_come_from_a_timer_on_the_main_thread_and_from_a_thread_elsewhere() -> None:
    """On the main thread a wall-clock timer's signal samples the job (and is put back after);
    off it, a thread beside the job does. Either way the job's own functions are in the stacks."""
    import signal
    import threading

    before = signal.getsignal(signal.SIGALRM)
    found: dict[str, Any] = {}

    def profiled(where: str) -> None:
        with profiling.Recorder(True, where) as recorder:
            with recorder.recording():
                _sampled_stack()
            assert recorder.files()
            found[where] = (type(recorder._sampler).__name__, recorder.provenance())

    profiled("main")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # Its handler back, or (was it the default, which ends the process) one that ignores a late signal.
    assert signal.getsignal(signal.SIGALRM) == (profiling._late_signal if before == signal.SIG_DFL else before)
    worker = threading.Thread(target=profiled, args=("thread",))
    worker.start()
    worker.join()
    assert found["main"][0] == "_SignalSampler" and found["thread"][0] == "_Sampler"
    for _, facts in found.values():
        assert facts["samples"] > 0 and facts["seconds"] > 0 and facts["interval_seconds"] == profiling.INTERVAL_SECONDS


def test_the_profile_page_runs_where_storage_is_refused() -> None:
    """Sandboxed, pyinstrument's page cannot read localStorage: the shim stands in, first in <head>."""
    page = profiling.with_storage_shim("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>")
    assert page.index("localStorage") < page.index("<meta")
    assert profiling.with_storage_shim("no head") == "no head"


def test_the_runtime_entrypoint_imports_pyinstrument_only_when_profiling() -> None:
    code = (
        "import sys; from biomarkerflow.runtimes import entrypoint, profiling; "
        "r = profiling.Recorder(False)\n"
        "with r.recording(): pass\n"
        "print('pyinstrument' in sys.modules, r.files(), r.provenance())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "{}", "None"]


def test_the_served_profile_page_runs_sandboxed_in_a_browser(tmp_path: Path) -> None:
    """With the route's headers, pyinstrument's page renders in Chromium, in an opaque origin
    that can read neither the dashboard's cookies nor its storage."""
    from playwright.sync_api import Route, sync_playwright

    from biomarkerflow.api.routes_catalog import RUN_FILE_HEADERS
    from tests.test_browser import chromium_executable

    def busy_step() -> float:
        return sum(i * i for i in range(2_000_000))

    with profiling.Recorder(True, "lab-values/S01_a.csv, run test") as recorder:
        with recorder.recording():
            busy_step()
        page_html = recorder.files()[profiling.PROFILE_FILE].read_bytes()

    def serve(route: Route) -> None:
        route.fulfill(status=200, body=page_html, content_type="text/html; charset=utf-8", headers=RUN_FILE_HEADERS)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "session", "value": "secret", "url": "http://dashboard.test"}])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("http://dashboard.test/**", serve)
            page.goto("http://dashboard.test/api/v1/runs/r/files/profile.html")
            page.get_by_text("busy_step").first.wait_for(timeout=10_000)
            assert errors == []
            assert page.evaluate("() => self.origin") == "null"
            cookie = "() => { try { return document.cookie } catch (e) { return 'refused: ' + e.name } }"
            assert page.evaluate(cookie) == "refused: SecurityError"
        finally:
            browser.close()
