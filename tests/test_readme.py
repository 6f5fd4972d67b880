"""README.md's command blocks run as written, and the demo says which part it left out and why.

Every fenced ```bash block of README.md runs as a test, in a subprocess with
`bash -x -euo pipefail`, the venv's `biomarkerflow` first on PATH; it passes when the
block exits 0 (bash stops at the first command that fails). What a block needs to run,
or why it cannot, is said by an HTML comment on the line right before its fence (it does
not show when the README is rendered):

    <!-- readme-test: skip: REASON -->
    <!-- readme-test: run [in WORKSPACE] [; CLAUSE]... -->

A command block without one fails, so a new block cannot go untested unnoticed; so does
an annotation that is not right before a command block, and any clause not listed here.

WORKSPACE (the block's current folder; default: a new, empty folder):
  demo-workspace           the workspace `biomarkerflow demo` built (small: 1 subject,
                           1.05 days; once per session, shared by every block that names
                           it), with its catalog in ./.biomarkerflow, as after `scripts/demo.sh`
  new-workspace with S     a new folder with the demo's studies/S.yaml and the data it reads,
                           no catalog yet (S is skipped when the demo left S out)
CLAUSES:
  postgres: HOST           HOST in the block is the test PostgreSQL server (127.0.0.1:5432,
                           see tests/databases.py); the database the block's
                           postgresql://USER@HOST:PORT/DB URL names is renamed to a throwaway
                           one wherever it appears (in that URL and after `createdb`), USER
                           is created on the server if missing, and the database is dropped
                           afterwards
  s3: BUCKET               a moto S3 server on loopback (tests/s3server.py), the AWS_*
                           variables pointing at it; BUCKET is created and holds the
                           workspace's studies/ and data/ folders
  stop when idle           the block's last command is a service that runs until stopped:
                           once every file in ./.biomarkerflow's catalog is done (SUCCEEDED,
                           FAILED or WAITING) it gets SIGTERM, and must then exit as stated
  given: NAME[, NAME]...   files the block names but does not make, made first (see GIVEN)
  exit N                   the block must exit N instead of 0
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from tests.conftest import DemoWorkspace

README = Path(__file__).resolve().parents[1] / "README.md"
VENV_BIN = Path(sys.executable).parent  # the venv the tests run in: its `biomarkerflow`
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^\s*```\s*(?P<language>[\w+-]*)\s*$")
ANNOTATION = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
ACTIVE_STATES = ("DISCOVERED", "READY", "CLAIMED", "RUNNING", "STALE")
BLOCK_TIMEOUT_SECONDS = 600
IDLE_TIMEOUT_SECONDS = 180  # `stop when idle`: a service that never gets there (e.g. a wrong URL) fails
# Variables that would send a block's commands to another home or catalog than its folder's.
CLEARED_ENV = ("BIOMARKERFLOW_HOME", "BIOMARKERFLOW_CATALOG", "BIOMARKERFLOW_EXECUTOR")


# ---- reading the README ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    line: int  # line number of the opening fence
    language: str
    text: str
    annotation: str | None  # the body of the readme-test comment right before the fence
    previous_yaml: str | None  # the last ```yaml block before this one (for `given:`)

    @property
    def name(self) -> str:
        first = next((s for s in self.text.splitlines() if s.strip() and not s.startswith("#")), "")
        words = [re.sub(r"[^\w.-]", "", w) for w in first.split("#")[0].split()[:3]]
        return "-".join([f"line{self.line}", *filter(None, words)])


def read_blocks(text: str) -> tuple[list[Block], list[str]]:
    """The command blocks of a Markdown text, and problems with annotations (line: message)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    used: set[int] = set()  # line numbers of annotations that precede a command block
    last_yaml: str | None = None
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        start = number
        number += 1
        while number < len(lines) and not re.match(r"^\s*```\s*$", lines[number]):
            number += 1
        if number == len(lines):
            problems.append(f"{start + 1}: a ``` fence that is never closed")
            break
        body = "\n".join(lines[start + 1 : number]) + "\n"
        language = opening["language"].lower()
        if language in COMMAND_LANGUAGES:
            annotation = ANNOTATION.match(lines[start - 1]) if start > 0 else None
            if annotation is not None:
                used.add(start - 1)
            body_of = annotation["body"] if annotation else None
            blocks.append(Block(start + 1, language, body, body_of, last_yaml))
        elif language == "yaml":
            last_yaml = body
        number += 1
    for index, text_line in enumerate(lines):
        if re.match(r"\s*<!--\s*readme-test", text_line) and index not in used:
            problems.append(
                f"{index + 1}: a readme-test annotation that is not on the line right before a ```bash fence"
            )
    return blocks, problems


# ---- annotations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    skip: str | None = None
    workspace: str = "empty"  # "empty", "demo" or "new:<study>"
    postgres: str | None = None
    s3: str | None = None
    stop_when_idle: bool = False
    given: tuple[str, ...] = ()
    exit_code: int = 0


def parse_annotation(body: str | None) -> Plan:
    """The plan a readme-test annotation states; ValueError saying what is wrong with it."""
    if body is None:
        raise ValueError(
            "a command block without an annotation: put <!-- readme-test: run ... --> or "
            "<!-- readme-test: skip: REASON --> on the line right before its fence"
        )
    if body.startswith("skip"):  # the reason is free text, semicolons included
        reason = body.removeprefix("skip:").strip()
        if not body.startswith("skip:") or not reason:
            raise ValueError("write `skip: REASON`, with the reason")
        return Plan(skip=reason)
    clauses = [c.strip() for c in body.split(";")]
    head, rest = clauses[0], clauses[1:]
    workspace = re.fullmatch(r"run(?:\s+in\s+(?P<where>demo-workspace|new-workspace with (?P<study>[\w.-]+)))?", head)
    if workspace is None:
        raise ValueError(
            f"`{head}`: the first clause is `run`, `run in demo-workspace`, "
            "`run in new-workspace with STUDY` or `skip: REASON`"
        )
    plan = Plan()
    if workspace["study"]:
        plan = replace(plan, workspace=f"new:{workspace['study']}")
    elif workspace["where"]:
        plan = replace(plan, workspace="demo")
    for clause in rest:
        if match := re.fullmatch(r"postgres:\s*(\S+)", clause):
            plan = replace(plan, postgres=match[1])
        elif match := re.fullmatch(r"s3:\s*([a-z0-9.-]+)", clause):
            plan = replace(plan, s3=match[1])
        elif clause == "stop when idle":
            plan = replace(plan, stop_when_idle=True)
        elif match := re.fullmatch(r"given:\s*(.+)", clause):
            names = tuple(n.strip() for n in match[1].split(","))
            unknown = [n for n in names if n not in GIVEN]
            if unknown:
                raise ValueError(f"given: {', '.join(unknown)} unknown; known: {', '.join(GIVEN)}")
            plan = replace(plan, given=plan.given + names)
        elif match := re.fullmatch(r"exit\s+(\d+)", clause):
            plan = replace(plan, exit_code=int(match[1]))
        else:
            raise ValueError(f"unknown clause `{clause}` (see tests/test_readme.py)")
    return plan


# ---- what a block is given (`given: NAME`) -----------------------------------------------------


@dataclass
class Context:
    folder: Path  # the block's current folder
    block: Block
    env: dict[str, str]
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def run_cli(context: Context, *args: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "biomarkerflow"), *args],
        cwd=context.folder,
        env=context.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"biomarkerflow {' '.join(args)}:\n{result.stdout}{result.stderr}"


def given_old_study(context: Context) -> None:
    """studies/old-study.yaml: the README's yaml example before the block (the pin and its
    constraints), completed into a study over the demo's wrist data; removed afterwards."""
    assert context.block.previous_yaml is not None, "no ```yaml block before this one"
    example = yaml.safe_load(context.block.previous_yaml)
    wrist = yaml.safe_load((context.folder / "studies" / "demo-wrist.yaml").read_text())
    study = {
        "study": "old-study",
        "data": wrist["data"],
        "pipeline": {**example["pipeline"], "steps": wrist["pipeline"]["steps"]},
        "output": {"location": "../results/old-study"},
    }
    path = context.folder / "studies" / "old-study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    context.cleanups.append(lambda: path.unlink(missing_ok=True))  # other blocks scan studies/


def given_history(context: Context) -> None:
    """old-platform-runs.csv: 30 past runs of each pipeline the block names, and of trial-b's (so
    that `estimate --study trial-b` has a model too), as tests/test_cost_models.py makes them."""
    from biomarkerflow.config.schema import StudyConfig
    from biomarkerflow.cost.identity import pipeline_id
    from tests.test_cost_models import as_csv, history

    named = re.findall(r"--pipeline\s+(\S+)", context.block.text)
    assert named, "the block names no --pipeline"
    config = StudyConfig.model_validate(yaml.safe_load((context.folder / "trial-b" / "trial-b.yaml").read_text()))
    trial_b = pipeline_id(config, config.pipeline.package.split("==")[1])
    runs = [run for pipeline in dict.fromkeys([*named, trial_b]) for run in history(pipeline, 30)]
    (context.folder / "old-platform-runs.csv").write_text(as_csv(runs))


def given_trial_b(context: Context) -> None:
    """A study trial-b in the catalog: the demo's wrist study under another name, in its own
    configs folder (trial-b/, not studies/, which other blocks scan), scanned, not processed."""
    text = (context.folder / "studies" / "demo-wrist.yaml").read_text()
    text = text.replace("study: demo-wrist", "study: trial-b").replace("results/demo-wrist", "results/trial-b")
    folder = context.folder / "trial-b"
    folder.mkdir(exist_ok=True)
    (folder / "trial-b.yaml").write_text(text)
    run_cli(context, "scan", "--configs", "trial-b")


GIVEN: dict[str, Callable[[Context], None]] = {
    "studies/old-study.yaml": given_old_study,
    "study trial-b": given_trial_b,  # name it before old-platform-runs.csv, which needs its pipeline
    "old-platform-runs.csv": given_history,
}


# ---- the README test ---------------------------------------------------------------------------

BLOCKS, ANNOTATION_PROBLEMS = read_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_command_blocks_and_well_placed_annotations() -> None:
    assert BLOCKS, "no ```bash blocks found in README.md"
    assert not ANNOTATION_PROBLEMS, "\n".join(f"README.md:{p}" for p in ANNOTATION_PROBLEMS)


def test_a_block_without_a_run_or_skip_annotation_cannot_pass_unnoticed() -> None:
    """The checks the README test relies on, on a small Markdown text: an unannotated block, an
    annotation a blank line away from its fence, a skip without a reason, an unknown clause."""
    text = textwrap.dedent(
        """\
        <!-- readme-test: run -->

        ```bash
        biomarkerflow status
        ```
        ```sh
        biomarkerflow status
        ```
        <!-- readme-test: skip: -->
        ```bash
        dask scheduler
        ```
        <!-- readme-test: run in demo-workspace; retry: 3 -->
        ```bash
        biomarkerflow status
        ```
        <!-- readme-test: skip: needs a cluster; and a login node -->
        ```bash
        dask scheduler
        ```
        """
    )
    blocks, problems = read_blocks(text)
    assert problems == ["1: a readme-test annotation that is not on the line right before a ```bash fence"]
    assert [b.line for b in blocks] == [3, 6, 10, 14, 18]
    errors = []
    for block in blocks[:4]:
        with pytest.raises(ValueError) as error:
            parse_annotation(block.annotation)
        errors.append(str(error.value))
    assert errors[0].startswith("a command block without an annotation") and errors[1] == errors[0]
    assert errors[2] == "write `skip: REASON`, with the reason"
    assert errors[3].startswith("unknown clause `retry: 3`")
    assert parse_annotation(blocks[4].annotation) == Plan(skip="needs a cluster; and a login node")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_readme_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    try:
        plan = parse_annotation(block.annotation)
    except ValueError as exc:
        pytest.fail(f"README.md:{block.line}: {exc}", pytrace=False)
    if plan.skip is not None:
        pytest.skip(f"README.md:{block.line}: {plan.skip}")
    with prepared(plan, block, request, tmp_path) as (context, text):
        code, output = run_block(context, text, plan)
    if code != plan.exit_code:
        pytest.fail(
            f"README.md:{block.line}: the block exited {code}, not {plan.exit_code}, in {context.folder}:\n"
            f"{textwrap.indent(text, '    ')}\noutput (bash -x: commands start with +):\n{output[-6000:]}",
            pytrace=False,
        )


@contextlib.contextmanager
def prepared(plan: Plan, block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Context, str]]:
    """The block's folder, environment and services; yields the context and the text to run."""
    folder = workspace(plan, request, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    context = Context(folder, block, env)
    text = block.text
    try:
        if plan.s3 is not None:
            request.getfixturevalue("s3_endpoint")  # sets AWS_* in os.environ for the session
            context.env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
            upload_workspace(folder, plan.s3)
        if plan.postgres is not None:
            text = with_postgres(text, plan.postgres, context)
        for name in plan.given:
            GIVEN[name](context)
        yield context, text
    finally:
        for cleanup in reversed(context.cleanups):
            cleanup()


def workspace(plan: Plan, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if plan.workspace == "empty":
        folder = tmp_path / "work"
        folder.mkdir()
        return folder
    demo: DemoWorkspace = request.getfixturevalue("demo_workspace")
    if plan.workspace == "demo":
        return demo.path
    study = plan.workspace.removeprefix("new:")
    config = demo.path / "studies" / f"{study}.yaml"
    if not config.exists():
        left_out = [line for line in demo.output.splitlines() if f"left out: {study}" in line]
        pytest.skip(left_out[0] if left_out else f"the demo workspace has no study {study}")
    folder = tmp_path / "workspace"
    (folder / "studies").mkdir(parents=True)
    shutil.copyfile(config, folder / "studies" / config.name)
    loaded = yaml.safe_load(config.read_text())
    for location in [loaded["data"]["location"], *(m["location"] for m in loaded.get("metadata", []))]:
        source = (demo.path / "studies" / location).resolve()
        target = (folder / "studies" / location).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    return folder


def upload_workspace(folder: Path, bucket: str) -> None:
    """BUCKET on the test S3 server, holding the folder's studies/ and data/ under the same keys."""
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    for top in ("studies", "data"):
        for path in sorted((folder / top).rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())


def with_postgres(text: str, host: str, context: Context) -> str:
    """The block with HOST the test server and its database a throwaway one (dropped afterwards)."""
    import psycopg

    from tests.databases import SERVER, _admin

    url = re.search(rf"postgresql://(?P<user>[\w-]+)@{re.escape(host)}:(?P<port>\d+)/(?P<database>[\w-]+)", text)
    assert url is not None, f"postgres: no postgresql://USER@{host}:PORT/DATABASE URL in the block"
    if shutil.which("createdb") is None and "createdb" in text:
        if os.environ.get("CI"):
            raise AssertionError("createdb (PostgreSQL's client programs) is not installed")
        pytest.skip("createdb (PostgreSQL's client programs) is not installed")
    server = re.match(r"postgresql://[^@]*@(?P<host>[^:/]+):(?P<port>\d+)/", SERVER)
    assert server is not None, SERVER
    user, database = url["user"], f"bmf_readme_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        if not exists:  # a role with no objects, left in place (another session may be using it)
            with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                admin.execute(f'CREATE ROLE "{user}" LOGIN CREATEDB')

    def drop() -> None:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    context.cleanups.append(drop)
    text = text.replace(url[0], f"postgresql://{user}@{server['host']}:{server['port']}/{database}")
    text, renamed = re.subn(rf"(\bcreatedb\b[^\n#]*\s){re.escape(url['database'])}\b", rf"\g<1>{database}", text)
    assert renamed == text.count("createdb"), "postgres: a createdb in the block creates another database"
    text = re.sub(rf"\b{re.escape(host)}\b", server["host"], text)
    context.env["PGPORT"] = server["port"]  # for the client programs: the URL states its port
    return text


# ---- running a block ---------------------------------------------------------------------------


def run_block(context: Context, text: str, plan: Plan) -> tuple[int, str]:
    """Run the block with bash -x -euo pipefail; its exit code and output (stdout and stderr)."""
    script = context.folder.parent / f"readme-block-{context.block.line}-{uuid.uuid4().hex[:6]}.sh"
    script.write_text(text)
    log = script.with_suffix(".log")
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["bash", "-x", "-euo", "pipefail", str(script)],
            cwd=context.folder,
            env=context.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a timeout stops the whole block, services and workers too
        )
        try:
            if plan.stop_when_idle:
                stop_when_idle(process, context.folder / ".biomarkerflow" / "catalog.db", log, context.block.line)
            code = process.wait(timeout=BLOCK_TIMEOUT_SECONDS)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return code, log.read_text(errors="replace")


def stop_when_idle(process: subprocess.Popen[bytes], catalog: Path, log: Path, line: int) -> None:
    """SIGTERM to the block's running command once no file in the catalog is waiting to run."""
    import psutil

    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    while not idle(catalog):
        problem = None
        if process.poll() is not None:
            problem = f"the service exited {process.returncode} before it was idle"
        elif time.monotonic() > deadline:
            problem = f"no file to run, or not idle after {IDLE_TIMEOUT_SECONDS} s"
        if problem:
            pytest.fail(f"README.md:{line}: {problem}:\n{log.read_text()[-6000:]}", pytrace=False)
        time.sleep(0.5)
    service = psutil.Process(process.pid).children()  # bash runs one command at a time: the service
    assert len(service) == 1, service
    service[0].send_signal(signal.SIGTERM)


def idle(catalog: Path) -> bool:
    """Whether the SQLite catalog knows files and none of them still has to run."""
    if not catalog.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5)) as connection:
            counts = dict(connection.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    except sqlite3.Error:  # being created
        return False
    return bool(counts) and not any(counts.get(state) for state in ACTIVE_STATES)


# ---- the demo -----------------------------------------------------------------------------------


def test_the_demo_workspace_holds_every_part_when_nothing_is_missing(demo_workspace: DemoWorkspace) -> None:
    """With the sample files beside the repository and the package index reachable, the demo
    leaves nothing out (the README describes all three studies)."""
    from tests.conftest import SAMPLES

    if not SAMPLES.exists():
        pytest.skip(f"sample data not found at {SAMPLES}")
    assert "left out" not in demo_workspace.output, demo_workspace.output
    studies = sorted(p.stem for p in (demo_workspace.path / "studies").glob("*.yaml"))
    assert studies == ["demo-lab-gait", "demo-wrist", "demo-wrist-skdh-0.16.15"]


def test_the_demo_says_which_part_it_left_out_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the sample files and without a way to build SKDH 0.16.15 (offline, empty uv
    cache), the demo's workspace has only demo-wrist, and it says what it left out, why, and
    what would include it."""
    from rich.console import Console

    from biomarkerflow.demo.run import SAMPLES_ENV, prepare_workspace
    from biomarkerflow.runtimes.environment import Runtimes

    missing = tmp_path / "no-samples-here"
    monkeypatch.setenv(SAMPLES_ENV, str(missing))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
    console = Console(record=True, width=400)
    workspace = tmp_path / "demo-workspace"
    runtimes = Runtimes(tmp_path / "runtimes")
    _, left_out = prepare_workspace(console, workspace, runtimes, subjects=1, days=0.1, seed=1)

    printed = console.export_text()
    assert [p.study for p in left_out] == ["demo-lab-gait", "demo-wrist-skdh-0.16.15"]
    assert (
        f"note: left out: demo-lab-gait (SKDH's real device files), because {missing} does not exist; "
        f"put the sample files (ax3_sample.cwa, ax6_sample.cwa, gnactv_sample.bin) in {missing}, "
        f"or point {SAMPLES_ENV} at a folder holding them, to include it"
    ) in printed
    old = next(line for line in printed.splitlines() if "left out: demo-wrist-skdh-0.16.15" in line)
    assert "(the first subject again under SKDH 0.16.15), because its runtime cannot be built here:" in old
    assert "network was disabled" in old and old.endswith("then run the demo again to include it")
    assert sorted(p.name for p in (workspace / "studies").iterdir()) == ["demo-wrist.yaml"]
    assert not (workspace / "data" / "lab").exists()

    # Sample files present but one missing: the note names the missing file.
    missing.mkdir()
    (missing / "ax3_sample.cwa").write_bytes(b"")
    (missing / "ax6_sample.cwa").write_bytes(b"")
    console = Console(record=True, width=400)
    _, left_out = prepare_workspace(console, workspace, runtimes, subjects=1, days=0.1, seed=1)
    assert left_out[0].because == f"{missing} has no gnactv_sample.bin"
