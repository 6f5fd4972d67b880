"""The dashboard in a real browser (issue 16): Debian's Chromium, driven by Playwright, against
`biomarkerflow serve --watch` on a free loopback port, over the demo's processed studies.

The server runs in the session's demo workspace (tests/conftest.py: `biomarkerflow demo`, once
per session) as a user would start it there, with a token made by `tokens create`. Before it
starts, the demo's wrist data get a corrupt .cwa file (so that a file fails, with its reason)
and its pipeline 30 runs of imported history and a trained cost model (so that the estimate
form answers with numbers); the lab study's pipeline keeps its 3 runs, too few for a model,
and the form says so. The rescan test copies a recording of a subject without metadata into the data folder:
it shows up as waiting, and nothing more runs. What this module leaves in the workspace keeps
every README block that runs there passing (tests/test_readme.py).

Every main page is saved as a PNG in the artefacts folder (under pytest's tmp folder; its path
is in every failure message, with a screenshot of the page that failed). With
BIOMARKERFLOW_SCREENSHOTS=DIR they are saved in DIR too; the README's come from

    BIOMARKERFLOW_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py

Chromium is Debian's (`scripts/setup.sh --dev` installs it); Playwright never downloads a
browser. Without it the tests skip and say why, except on CI, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    StorageState,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.conftest import build_demo_workspace
from tests.test_first_hour import bmf

STUDY = "demo-wrist"
# The demo's other studies: a pipeline with fewer runs than a cost model needs (either may be
# left out where the demo cannot include it: no sample files, or offline).
FEW_RUNS_STUDIES = ("demo-lab-gait", "demo-wrist-skdh-0.16.15")
SUBJECT = "S01"
BROKEN = "S01_broken.cwa"  # 2 KiB that are no Axivity data blocks: fails in ReadCwa, at once
NEW_RECORDING = "S02_wrist.bin"  # a subject the metadata does not know: it waits, and never runs
TOKEN_NAME = "browser-test"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
MAX_SHOT_HEIGHT = 2400  # px: a long page is cut there
SCREENSHOTS_ENV = "BIOMARKERFLOW_SCREENSHOTS"
README_SHOTS = ("studies", "study", "subject", "run", "costs", "estimate", "models")  # docs/screenshots/*.png
CHROMIUM_ENV = "BIOMARKERFLOW_TEST_CHROMIUM"
# Debian's /usr/bin/chromium is a shell script that sets flags and starts this binary.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
TIMEOUT_MS = 20_000


def chromium_executable() -> str:
    """Debian's Chromium; skips the module when it is missing (fails on CI, which installs it)."""
    configured = os.environ.get(CHROMIUM_ENV)
    candidates = [configured] if configured else list(CHROMIUM_CANDIDATES)
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    reason = (
        f"no Chromium at {', '.join(c for c in candidates if c)}: `bash scripts/setup.sh --dev` installs "
        "Debian's chromium package when run as root (or: sudo apt-get install chromium)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI installs Chromium (scripts/setup.sh --dev), yet {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """`serve --watch` over the demo workspace, and what the tests need to know about it."""

    base: str
    token: str
    workspace: Path
    log: Path
    artefacts: Path
    studies: int
    wrist_pipeline: str
    few_runs_pipeline: str | None
    browser: Browser
    signed_in: StorageState | None = None  # the session after signing in through the form

    def api(self, endpoint: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.base}{endpoint}", params=params, headers={"Authorization": f"Bearer {self.token}"})
        assert answer.status_code == 200, (endpoint, answer.status_code, answer.text)
        return answer.json()

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def shot(self, page: Page, name: str) -> None:
        """The page as `name`.png in the artefacts folder (a README page's in $BIOMARKERFLOW_SCREENSHOTS too)."""
        page.evaluate("window.scrollTo(0, 0)")
        height = min(int(page.evaluate("document.documentElement.scrollHeight")), MAX_SHOT_HEIGHT)
        path = self.artefacts / f"{name}.png"
        page.screenshot(path=path, full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
        if (folder := os.environ.get(SCREENSHOTS_ENV)) and name in README_SHOTS:
            target = Path(folder)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)

    @contextlib.contextmanager
    def page(self, name: str, *, signed_in: bool = True) -> Iterator[Page]:
        """A new browser context's page (with the signed-in session, unless told otherwise). A
        failure is re-raised with a screenshot of the page, the server log and the artefacts
        folder named; failed scripts, styles or script errors on any page fail the test."""
        context = self.browser.new_context(viewport=VIEWPORT, storage_state=self.signed_in if signed_in else None)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"script error on {page.url}: {error}"))
        page.on(
            "response",
            lambda response: (
                problems.append(f"{response.status} for {response.url}")
                if response.status >= 400 and response.request.resource_type != "document"
                else None
            ),
        )
        try:
            yield page
            assert not problems, problems
        except Exception as exc:
            shot = self.artefacts / f"FAILED-{name}.png"
            with contextlib.suppress(Exception):
                page.screenshot(path=shot, full_page=True)
            log = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"{name}: {exc}\nthe page ({page.url}): {shot}\nartefacts: {self.artefacts}\n"
                f"server log ({self.log}):\n{log}"
            ) from exc
        finally:
            context.close()


def _pipeline_of(workspace: Path, study: str) -> str:
    from biomarkerflow.catalog.browse import RunFilter
    from biomarkerflow.service import Platform

    platform = Platform(home=workspace / ".biomarkerflow")
    try:
        runs = platform.runs_page(RunFilter(study, outcome="succeeded"), 0, 1).items
    finally:
        platform.close()
    assert runs and runs[0].pipeline, f"no succeeded run of {study} in the demo workspace"
    return runs[0].pipeline


def _history(pipeline: str, runs: int = 30, seed: int = 3) -> str:
    """Past runs of `pipeline` from elsewhere, as `models import-history` reads them: 1-14 day
    recordings whose run time grows faster than their size, as SKDH's does. They are stamped
    just now, after the demo's own runs, so that the newest runs `models train` holds out to
    test on are these (their figures, unlike a real run's, do not depend on the machine)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    lines = [
        "pipeline,started_at,input_bytes,output_bytes,wall_seconds,cpu_seconds,peak_rss_bytes,duration_seconds_of_data"
    ]
    for i in range(runs):
        days = rng.uniform(1, 14)
        size = int(days * 55e6 * rng.uniform(0.98, 1.02))
        wall = 30 * days**1.6 * rng.uniform(0.97, 1.03)
        memory = int(4e8 + 9.5 * size * rng.uniform(0.98, 1.02))
        started = (now - timedelta(seconds=runs - i)).isoformat()
        figures = f"{size},{int(days * 40_000)},{wall:.3f},{wall * 0.98:.3f},{memory},{days * 86_400:.0f}"
        lines.append(f"{pipeline},{started}Z,{figures}")
    return "\n".join(lines) + "\n"


def _prepare(workspace: Path) -> tuple[str, str, str | None]:
    """The broken file, the history and cost model of the wrist pipeline, and a token; returns
    (token, wrist pipeline, a pipeline with too few runs for a model, if the demo has one)."""
    (workspace / "data" / "wrist" / BROKEN).write_bytes(bytes(range(256)) * 8)
    wrist = _pipeline_of(workspace, STUDY)
    others = [s for s in FEW_RUNS_STUDIES if (workspace / "studies" / f"{s}.yaml").exists()]
    few = _pipeline_of(workspace, others[0]) if others else None
    past = workspace.parent / "browser-test-history.csv"  # beside the workspace, not in it
    past.write_text(_history(wrist))
    imported = bmf("models", "import-history", str(past), cwd=workspace)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    trained = bmf("models", "train", "--pipeline", wrist, cwd=workspace)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    # The workspace is shared: the README's blocks may have trained v1 already, then v2 may be kept.
    listed = json.loads(bmf("models", "list", "--pipeline", wrist, "--json", cwd=workspace).stdout)
    assert [m["version"] for m in listed if m["status"] == "champion"] == [1], trained.stdout
    created = bmf("tokens", "create", "--name", TOKEN_NAME, "--scope", "operate", cwd=workspace)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip(), wrist, few


def _wait_until(what: str, check: Any, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise AssertionError(f"serve exited {server.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s; server log:\n{log.read_text(errors='replace')}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # A demo of its own: the README's blocks add studies to the shared one, in any order.
    workspace = build_demo_workspace(tmp_path_factory.mktemp("browser-demo") / "demo-workspace").path
    token, wrist, few = _prepare(workspace)
    studies = len(list((workspace / "studies").glob("*.yaml")))
    artefacts = tmp_path_factory.mktemp("browser-artefacts")
    log = artefacts / "serve.log"
    port = _free_port()
    command = [
        *(sys.executable, "-m", "biomarkerflow.cli", "serve", "--port", str(port)),
        *("--watch", "--configs", "studies", "--interval", "3600"),
    ]
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=workspace, stdout=output, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", token, workspace, log, artefacts, studies, wrist, few, browser)
    try:
        _wait_until(
            "/healthz", lambda: httpx.get(f"{served.base}/healthz", timeout=1).status_code == 200, server, log, 60
        )

        def broken_file_failed() -> bool:
            return bool(served.api("/api/v1/files", study=STUDY, state="FAILED", path=BROKEN)["total"])

        # The watch service's first scan finds the broken file and runs it: it fails at once.
        _wait_until(f"{BROKEN} FAILED", broken_file_failed, server, log, 120)
        served.signed_in = _sign_in_state(served)
        yield served
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _sign_in_state(served: Served) -> StorageState:
    """Sign in through the form once; the other tests start from this session."""
    context = served.browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(served.url("/login"))
        page.fill("#token", served.token)
        page.click("form button[type=submit]")
        page.wait_for_url(served.url("/"))
        return context.storage_state()
    finally:
        context.close()


# ---- the pages ----------------------------------------------------------------------------------


def test_sign_in_with_a_token_shows_the_studies_and_their_progress(served: Served) -> None:
    with served.page("sign-in", signed_in=False) as page:
        page.goto(served.url("/"))
        expect(page).to_have_url(served.url("/login?next=%2F"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.fill("#token", "bmf_not-a-token")
        page.click("form button[type=submit]")
        expect(page.locator("p.error")).to_contain_text("the token is unknown or revoked")
        page.fill("#token", served.token)
        page.click("form button[type=submit]")
        expect(page).to_have_url(served.url("/"))
        expect(page.locator(".viewer-name")).to_have_text(TOKEN_NAME)
        row = page.locator("table.studies tbody tr", has=page.get_by_role("link", name=STUDY, exact=True))
        expect(row).to_have_count(1)
        # The progress bar: a green part (succeeded) and a red one (the broken file), drawn.
        for state in ("succeeded", "failed"):
            part = row.locator(f".bar .state-{state}")
            assert part.evaluate("e => e.getBoundingClientRect().width") > 10, state
        expect(row.locator("td.num.bad")).to_have_text("1")  # failed
        expect(page.locator("table.studies tbody tr")).to_have_count(served.studies)
        served.shot(page, "studies")


def test_study_page_shows_its_counts_and_why_a_file_failed(served: Served) -> None:
    with served.page("study") as page:
        page.goto(served.url("/"))
        page.get_by_role("link", name=STUDY, exact=True).click()
        expect(page).to_have_url(served.url(f"/studies/{STUDY}"))
        expect(page.locator("dd.count-succeeded")).to_have_text("1")
        expect(page.locator("dd.count-failed")).to_have_text("1")
        failed = page.locator("table.failed tbody tr")
        expect(failed).to_have_count(1)
        expect(failed.locator("td.path")).to_have_text(BROKEN)
        expect(failed.locator("td.error-text")).to_contain_text(
            "ReadCwa: the file's header (its first 1,024 bytes) is damaged"
        )
        expect(page.get_by_role("button", name="Rescan")).to_be_visible()  # an operate token
        expect(page.locator("[data-chart=chart-progress] svg .mark-symbol path").first).to_be_attached()
        served.shot(page, "study")


def test_subject_charts_draw_and_a_point_leads_to_its_runs_lineage(served: Served) -> None:
    with served.page("subject") as page:
        page.goto(served.url(f"/studies/{STUDY}"))
        page.get_by_role("link", name=SUBJECT, exact=True).click()
        expect(page).to_have_url(served.url(f"/studies/{STUDY}/subjects/{SUBJECT}"))
        charts = page.locator("[data-chart]")
        titles = ["Wear hours per day", "Sleep minutes per night", "MVPA minutes per day"]
        for title in titles:
            expect(page.get_by_role("heading", name=title, level=2)).to_be_visible()
        expect(charts).to_have_count(len(titles))
        for index in range(len(titles)):
            chart = charts.nth(index)
            # vega-embed drew an SVG with the data: a point per value, a line through them.
            expect(chart.locator("svg .mark-symbol path").first).to_be_attached()
            expect(chart.locator("svg .mark-line path")).to_have_count(1)
            assert chart.locator("svg .mark-symbol path").first.get_attribute("d"), titles[index]
        expect(page.get_by_text("The chart could not be drawn")).to_have_count(0)
        runs = set(page.locator("details table a").evaluate_all("links => links.map(a => a.pathname)"))
        assert runs and all(r.startswith("/runs/") for r in runs), runs
        served.shot(page, "subject")

        # A point links to its run (Vega's href channel): click the sleep chart's.
        charts.nth(1).locator("svg .mark-symbol path").first.click()
        page.wait_for_url(re.compile(r".*/runs/[^/]+$"))
        assert page.url.removeprefix(served.base) in runs, (page.url, runs)
        chain = page.locator("ol.lineage > li")
        expect(chain).to_have_count(6)
        expect(chain.locator("strong")).to_have_text(["input", "config", "pipeline", "runtime", "outputs", "file"])
        expect(chain.nth(0)).to_contain_text(f"data/wrist/{SUBJECT}_wrist.bin")
        expect(chain.nth(1)).to_contain_text(f"studies/{STUDY}.yaml")
        expect(chain.nth(2)).to_contain_text("CalibrateAccelerometer")
        expect(chain.nth(2)).to_contain_text("Sleep")
        expect(chain.nth(3)).to_contain_text("scikit-digital-health 0.17.18")
        expect(chain.nth(4)).to_contain_text("sleep.parquet")
        expect(page.locator("dl.metering")).to_contain_text("wall time")
        served.shot(page, "run")


def test_estimate_form_answers_with_intervals_or_says_the_history_is_too_short(served: Served) -> None:
    with served.page("estimate") as page:
        page.goto(served.url("/"))
        page.get_by_role("navigation", name="main").get_by_role("link", name="Estimate").click()
        expect(page).to_have_url(served.url("/estimate"))
        if served.few_runs_pipeline:  # a pipeline with too few runs: borrowed and said so, or no number
            page.fill("#pipeline", served.few_runs_pipeline)
            page.fill("#input_size", "1MB")
            page.get_by_role("button", name="Estimate one run").click()
            answer = page.locator(".answer .refusal, .answer table")
            expect(answer).to_have_count(1)
            # Borrowed once a pooled model exists (the README's `models train` of every pipeline
            # may have run in this shared workspace first), else said plainly.
            if page.locator(".answer table").count():
                expect(page.locator(".answer")).to_contain_text(re.compile(r"borrowed from \d+ similar workflows?"))
            else:
                few = served.few_runs_pipeline
                expect(page.locator(".answer .refusal")).to_have_text(
                    re.compile(rf"not enough history yet: only \d past run\(s\) of pipeline {few}, and no pipeline")
                )
        # The wrist pipeline, with its imported history and model: numbers with their intervals.
        page.fill("#pipeline", served.wrist_pipeline)
        page.fill("#input_size", "385MB")
        page.fill("#duration", "7d")
        page.fill("#sample_rate", "50")
        page.get_by_role("button", name="Estimate one run").click()
        expect(page).to_have_url(re.compile(r".*/estimate\?.*input_size=385MB"))
        row = page.locator(".answer table tbody tr")
        expect(row).to_have_count(1)
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == served.wrist_pipeline, cells
        assert re.fullmatch(r"\d+\.\d+ USD", cells[1]), cells  # cost
        assert re.fullmatch(r"\d+\.\d+ USD – \d+\.\d+ USD", cells[2]), cells  # its 80% interval
        assert re.search(r"\d", cells[3]) and " – " in cells[4], cells  # duration and interval
        assert re.search(r"\d", cells[5]) and " – " in cells[6], cells  # peak memory and interval
        expect(page.locator(".answer .refusal")).to_have_count(0)
        served.shot(page, "estimate")


def test_costs_and_models_pages_show_charts_and_the_model(served: Served) -> None:
    with served.page("costs-models") as page:
        page.goto(served.url("/"))
        nav = page.get_by_role("navigation", name="main")
        nav.get_by_role("link", name="Costs").click()
        expect(page).to_have_url(served.url("/costs"))
        bars = page.locator("[data-chart=chart-costs] svg .mark-rect path")
        expect(bars).to_have_count(served.studies)  # a bar per study
        expect(page.locator("table").last).to_contain_text(STUDY)
        served.shot(page, "costs")
        nav.get_by_role("link", name="Models").click()
        expect(page).to_have_url(served.url("/models"))
        model = page.locator("section.model", has=page.get_by_role("heading", name=served.wrist_pipeline))
        expect(model.locator("article").first).to_contain_text("version 1")
        expect(model).to_contain_text("Candidates, median relative error out of fold")
        expect(model.locator("tbody tr").first).to_contain_text("%")
        served.shot(page, "models")


def test_rescan_finds_a_new_recording_and_process_says_why_it_waits(served: Served) -> None:
    wrist = served.workspace / "data" / "wrist"
    shutil.copyfile(wrist / f"{SUBJECT}_wrist.bin", wrist / NEW_RECORDING)
    with served.page("rescan") as page:
        page.goto(served.url(f"/studies/{STUDY}"))
        new_subject = page.get_by_role("link", name="S02", exact=True)
        expect(new_subject).to_have_count(0)
        page.get_by_role("button", name="Rescan").click()
        expect(page).to_have_url(re.compile(rf".*/studies/{STUDY}\?asked=\d+$"))
        expect(page.locator("p.notice[role=status]")).to_contain_text("the watch service of this server does it")
        # The server's watch service scans at once: the new file is listed, as discovered.
        _reload_until(page, new_subject, f"{NEW_RECORDING} on the study page")
        expect(page.locator("dd.count-discovered")).to_have_text("1")
        expect(page.locator("tr", has=new_subject)).to_contain_text("discovered 1")
        # Processing it checks its requirements: it waits for the subject's metadata, and says so.
        page.get_by_role("button", name=f"Process {STUDY}").click()
        reason = page.locator("td.reason", has_text="'S02'")
        _reload_until(page, reason, f"why {NEW_RECORDING} waits")
        expect(reason).to_have_text("no metadata row for subject 'S02'")
        expect(page.locator("dd.count-waiting")).to_have_text("1")
        served.shot(page, "study-after-rescan")


def _reload_until(page: Page, shown: Locator, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not shown.count():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        page.wait_for_timeout(500)
        page.reload()


def test_sign_out_ends_the_session(served: Served) -> None:
    with served.page("sign-out") as page:
        page.goto(served.url("/costs"))
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(served.url("/login"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(served.url("/costs"))
        expect(page).to_have_url(served.url("/login?next=%2Fcosts"))  # signed out: back to the form


def test_the_readme_shows_a_screenshot_of_each_main_page() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for name in README_SHOTS:
        path = root / "docs" / "screenshots" / f"{name}.png"
        assert path.read_bytes().startswith(b"\x89PNG"), path
        assert f"](docs/screenshots/{name}.png)" in readme, name
