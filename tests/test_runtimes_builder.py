"""Isolated runtimes built for real with uv from the package index (no mocks of uv or subprocess)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from packaging.version import Version

from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.home import HOME_ENV
from biomarkerflow.runtimes.builder import JOB_REQUIREMENTS, BuiltRuntime, RuntimeCache, RuntimeSpec
from biomarkerflow.runtimes.environment import RUNTIMES_ENV, Runtimes, default_cache_root

SKDH = "scikit-digital-health==0.16.15"
REPO = Path(__file__).resolve().parents[1]


def _run(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _lock_blocks(lock_text: str) -> dict[str, list[str]]:
    """name -> its --hash lines, from a uv pip compile lock."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lock_text.splitlines():
        top = re.match(r"^([a-z0-9][a-z0-9._-]*)==\S+", line)
        if top:
            current = blocks.setdefault(top[1], [])
        elif current is not None and line.strip().startswith("--hash="):
            current.append(line.strip())
    return blocks


# --------------------------------------------------------------------------- the session runtime


def test_built_runtime_holds_the_pinned_version(skdh_0_16_runtime: BuiltRuntime) -> None:
    rt = skdh_0_16_runtime
    assert rt.packages["scikit-digital-health"] == "0.16.15"
    assert rt.version_of("Scikit_Digital_Health") == "0.16.15"
    assert rt.version_of("not-a-package") is None
    assert rt.python == str(rt.path / "venv" / "bin" / "python")
    # The venv was made in a .build-* folder and renamed into place: it must still work from here.
    assert ".build-" not in str(rt.path)
    assert _run(rt.python, "import skdh; print(skdh.__version__)") == "0.16.15"
    assert _run(rt.python, "import sys; print(sys.prefix)") == str(rt.path / "venv")
    # Isolated: the job's libraries are there, biomarkerflow's own environment is not.
    for requirement in JOB_REQUIREMENTS:
        name = re.split(r"[<>=!~]", requirement)[0]
        assert rt.version_of(name) is not None, name
    assert rt.version_of("sqlalchemy") is None


def test_runtime_is_built_with_compiled_bytecode(skdh_0_16_runtime: BuiltRuntime) -> None:
    """Workers start in ~2 s, not ~7 s, even where Python may not write .pyc files itself."""
    site = skdh_0_16_runtime.path / "venv" / "lib"
    sources = sum(1 for _ in site.rglob("*.py"))
    compiled = sum(1 for _ in site.rglob("*.pyc"))
    # Importing SKDH alone would leave ~1,600 .pyc files; build-time compilation covers nearly all.
    assert compiled > 0.8 * sources, (compiled, sources)


def test_lock_file_is_hashed_and_matches_packages(skdh_0_16_runtime: BuiltRuntime) -> None:
    rt = skdh_0_16_runtime
    lock = (rt.path / "lock.txt").read_bytes()
    assert rt.lock_hash == hashlib.sha256(lock).hexdigest()
    blocks = _lock_blocks(lock.decode())
    assert set(blocks) == set(rt.packages)
    for name, hashes in blocks.items():
        assert hashes and all(h.startswith("--hash=sha256:") for h in hashes), name
    assert ".build-" not in lock.decode()  # no build-folder path baked into the lock (or its hash)
    record = json.loads((rt.path / "runtime.json").read_text())
    assert record["key"] == rt.spec.key and record["lock_hash"] == rt.lock_hash
    assert record["packages"] == rt.packages
    assert record["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")


def test_ensure_again_reuses_the_runtime(skdh_0_16_runtime: BuiltRuntime, runtime_root: Path) -> None:
    children = sorted(p.name for p in runtime_root.iterdir())
    record_mtime = (skdh_0_16_runtime.path / "runtime.json").stat().st_mtime_ns
    last_used = skdh_0_16_runtime.path / "last_used"
    os.utime(last_used, (0, 0))
    messages: list[str] = []

    again = RuntimeCache(runtime_root, progress=messages.append).ensure(RuntimeSpec(SKDH))

    assert again == skdh_0_16_runtime
    assert messages == []
    assert sorted(p.name for p in runtime_root.iterdir()) == children
    assert (again.path / "runtime.json").stat().st_mtime_ns == record_mtime
    assert last_used.stat().st_mtime > 0  # the use was recorded


def test_entries_describe_the_cached_runtime(skdh_0_16_runtime: BuiltRuntime, runtime_root: Path) -> None:
    (info,) = [e for e in RuntimeCache(runtime_root).entries() if e.key == skdh_0_16_runtime.spec.key]
    assert info.requirement == SKDH
    assert info.lock_hash == skdh_0_16_runtime.lock_hash
    assert info.path == skdh_0_16_runtime.path
    assert info.built_at == skdh_0_16_runtime.built_at
    assert info.last_used is not None
    assert info.size_bytes > 10_000_000  # numpy, pandas, pyarrow, scipy ... are really in there


# --------------------------------------------------------------------------- spec identity


def test_key_identity() -> None:
    a = RuntimeSpec(SKDH)
    assert a.key == RuntimeSpec(SKDH).key
    assert re.fullmatch(r"[0-9a-f]{16}", a.key)
    assert RuntimeSpec("Scikit_Digital_Health == 0.16.15").key == a.key
    both = RuntimeSpec(SKDH, ("numpy<2", "scipy<1.14"))
    assert both.key == RuntimeSpec(SKDH, ("scipy<1.14", "numpy<2")).key
    assert both.requirements() == RuntimeSpec(SKDH, ("scipy<1.14", "numpy<2")).requirements()
    assert RuntimeSpec(SKDH, ("numpy<2",)).key != RuntimeSpec(SKDH, ("numpy<1.27",)).key
    assert RuntimeSpec(SKDH, ("numpy<2",)).key != a.key
    assert RuntimeSpec("scikit-digital-health==0.17.18").key != a.key


def test_requirements_label_and_describe() -> None:
    spec = RuntimeSpec(SKDH, ("numpy<2",))
    reqs = spec.requirements()
    assert reqs[:3] == [SKDH, "numpy<2", "pyarrow<26"]  # the last one: see the pyarrow test below
    assert "pydantic<3,>=2.7" in reqs and "pyyaml>=6" in reqs
    assert len(reqs) == 3 + len(JOB_REQUIREMENTS)
    assert spec.describe() == "scikit-digital-health==0.16.15 (with numpy<2)"
    assert RuntimeSpec(SKDH).describe() == SKDH
    assert spec.label == f"scikit-digital-health-0.16.15-{spec.key[:8]}"
    odd = RuntimeSpec("scikit-digital-health>=0.16,<0.17")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", odd.label) and odd.label.endswith(odd.key[:8])


def test_invalid_requirement_is_refused() -> None:
    with pytest.raises(RuntimeUnavailableError, match="invalid package requirement"):
        RuntimeSpec("scikit-digital-health=0.16.15")


# --------------------------------------------------------------------------- building


def _blocked_flock_waiters(lock_file: Path) -> int:
    """How many processes are queued for a flock on `lock_file` (Linux /proc/locks marks them "->")."""
    inode = str(lock_file.stat().st_ino)
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and "FLOCK" in line and line.split()[-3].endswith(f":{inode}"))


@pytest.mark.parametrize("call", ["ensure", "build"])
def test_two_processes_build_once(tmp_path: Path, call: str) -> None:
    """Two processes held at the key's lock until both wait, then released at once: one builds, one reuses.

    With `build`, both are queued for the exclusive lock having found nothing, so the second must
    notice after acquiring it that the first has built the runtime meanwhile.
    """
    root = tmp_path / "runtimes"
    spec = RuntimeSpec(SKDH)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from biomarkerflow.runtimes.builder import RuntimeCache, RuntimeSpec
        cache = RuntimeCache(Path({str(root)!r}), progress=lambda m: print("progress:", m, flush=True),
                             compile_bytecode=False)
        rt = cache.{call}(RuntimeSpec({SKDH!r}))
        print("lock_hash:", rt.lock_hash, flush=True)
        """
    )
    (root / ".locks").mkdir(parents=True)
    lock_file = root / ".locks" / f"{spec.key}.lock"
    gate = os.open(lock_file, os.O_RDWR | os.O_CREAT)
    fcntl.flock(gate, fcntl.LOCK_EX)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while _blocked_flock_waiters(lock_file) < 2:  # both are now queued behind the gate
            assert time.monotonic() < deadline, "the two processes never queued for the lock"
            assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs]
            time.sleep(0.02)
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)
        os.close(gate)
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        outputs.append(out)

    assert sum(out.count("Building runtime") for out in outputs) == 1
    if call == "ensure":
        assert all("Waiting for runtime" in out for out in outputs)
    hashes = {line.split()[-1] for out in outputs for line in out.splitlines() if line.startswith("lock_hash:")}
    assert len(hashes) == 1
    assert sorted(p.name for p in root.iterdir()) == sorted([".locks", spec.label])
    assert RuntimeCache(root).find(spec) is not None


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        (RuntimeSpec(SKDH, ("numpy<1.0",)), "scikit-digital-health==0.16.15 (with numpy<1.0)"),
        # Only macOS wheels and a source archive (needing Fortran): no wheel for this Python.
        (RuntimeSpec("scikit-digital-health==0.11.0"), "scikit-digital-health==0.11.0"),
    ],
    ids=["unsatisfiable-constraint", "no-wheel-for-this-python"],
)
def test_unbuildable_runtime_fails_cleanly(tmp_path: Path, spec: RuntimeSpec, named: str) -> None:
    root = tmp_path / "runtimes"
    messages: list[str] = []
    cache = RuntimeCache(root, progress=messages.append, compile_bytecode=False)
    with pytest.raises(RuntimeUnavailableError) as caught:
        cache.ensure(spec)
    error = caught.value
    assert f"cannot build a runtime for {named}:" in error.message
    assert "No solution found" in error.message or "unsatisfiable" in error.message
    assert error.hint is not None and "UV_INDEX_URL" in error.hint
    assert error.exit_code == 2
    assert [p.name for p in root.iterdir()] == [".locks"]  # nothing half-made
    assert [p.name for p in (root / ".locks").iterdir()] == [f"{spec.key}.lock"]
    assert (root / ".locks" / f"{spec.key}.lock").stat().st_size == 0
    assert cache.find(spec) is None and cache.entries() == []


def test_a_version_that_does_not_exist_is_named_with_versions_that_do(tmp_path: Path) -> None:
    """uv only says "no solution found": the message says the version does not exist, and which do."""
    root = tmp_path / "runtimes"
    spec = RuntimeSpec("scikit-digital-health==9.9.9")
    with pytest.raises(RuntimeUnavailableError) as caught:
        RuntimeCache(root, compile_bytecode=False).ensure(spec)
    error = caught.value
    prefix = (
        "cannot build a runtime for scikit-digital-health==9.9.9: "
        "scikit-digital-health 9.9.9 does not exist on the package index; versions available include "
    )
    assert error.message.startswith(prefix), error.message
    listed = error.message[len(prefix) :].split(", ")
    # The newest few, newest first, all real releases (0.17.18 was the newest when this was written).
    assert 3 <= len(listed) <= 6, listed
    versions = [Version(v) for v in listed]
    assert versions == sorted(versions, reverse=True) and versions[0] >= Version("0.17.18")
    assert not any(v.is_prerelease for v in versions)
    assert error.hint is not None and f"scikit-digital-health=={listed[0]}" in error.hint
    assert error.exit_code == 2
    assert [p.name for p in root.iterdir()] == [".locks"]  # nothing half-made


def test_a_package_that_does_not_exist_is_named(tmp_path: Path) -> None:
    spec = RuntimeSpec("scikit-digital-health==0.16.15", ("no-such-package-biomarkerflow-test==1.0",))
    with pytest.raises(RuntimeUnavailableError) as caught:
        RuntimeCache(tmp_path / "runtimes", compile_bytecode=False).ensure(spec)
    assert caught.value.message.endswith(": no-such-package-biomarkerflow-test is not on the package index"), (
        caught.value.message
    )
    assert caught.value.hint is not None and "spelling" in caught.value.hint


def test_a_pinned_runtime_builds_from_a_relative_home_in_another_folder(tmp_path: Path) -> None:
    """The real CLI from another folder with `--home rel/home`: uv must get absolute paths.

    It once failed with "No interpreter found at path '.biomarkerflow/runtimes/.build-.../venv/bin/python'":
    uv runs in the build folder, where the relative interpreter path means something else.
    """
    env = {k: v for k, v in os.environ.items() if k not in (RUNTIMES_ENV, HOME_ENV)}
    cli = Path(sys.executable).parent / "biomarkerflow"
    started = time.monotonic()
    result = subprocess.run(
        [str(cli), "--home", "rel/home", "runtimes", "build", "--package", SKDH],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    root = tmp_path / "rel" / "home" / "runtimes"
    built = RuntimeCache(root).find(RuntimeSpec(SKDH))
    assert built is not None, sorted(p.name for p in root.iterdir())
    assert f"at {built.path}" in result.stdout  # the absolute path is what the user is shown
    assert Path(built.python).is_absolute()
    assert _run(built.python, "import skdh; print(skdh.__version__)") == "0.16.15"
    print(f"built from a relative home in {elapsed:.1f} s")


def test_relative_runtime_roots_are_made_absolute_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative root means the folder it named when given, even after the process changes folder."""
    monkeypatch.chdir(tmp_path)
    cache = RuntimeCache(Path("rel/runtimes"))
    monkeypatch.chdir("/")
    assert cache.root == tmp_path / "rel" / "runtimes"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RUNTIMES_ENV, "shared/runtimes")
    assert default_cache_root(Path("anything")) == tmp_path / "shared" / "runtimes"
    monkeypatch.delenv(RUNTIMES_ENV)
    assert default_cache_root(Path("rel/home")) == tmp_path / "rel" / "home" / "runtimes"
    runtimes = Runtimes.for_home(Path("rel/home"))
    monkeypatch.chdir("/")
    assert runtimes.cache.root == tmp_path / "rel" / "home" / "runtimes"


def test_deleted_or_damaged_runtime_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "runtimes"
    messages: list[str] = []
    cache = RuntimeCache(root, progress=messages.append, compile_bytecode=False)
    spec = RuntimeSpec(SKDH)
    first = cache.ensure(spec)
    assert cache.find(spec) == first

    shutil.rmtree(first.path)
    assert cache.find(spec) is None
    second = cache.ensure(spec)
    assert cache.find(spec) == second
    assert _run(second.python, "import importlib.metadata as m; print(m.version('scikit-digital-health'))") == "0.16.15"

    interpreter = second.path / "venv" / "bin" / "python"
    target = os.readlink(interpreter)
    interpreter.unlink()  # damaged: interpreter gone
    assert cache.find(spec) is None
    interpreter.symlink_to(target)
    assert cache.find(spec) == second

    (second.path / "runtime.json").unlink()  # half-made: never completed
    assert cache.find(spec) is None
    third = cache.ensure(spec)
    assert (third.path / "runtime.json").exists() and Path(third.python).exists()

    assert sum("Building runtime" in m for m in messages) == 3
    assert sorted(p.name for p in root.iterdir()) == [".locks", spec.label]  # no leftovers of the old ones


def test_force_rebuild_replaces_the_runtime(tmp_path: Path) -> None:
    cache = RuntimeCache(tmp_path / "runtimes", compile_bytecode=False)
    spec = RuntimeSpec(SKDH)
    first = cache.ensure(spec)
    again = cache.build(spec)  # exists: not rebuilt
    assert again.built_at == first.built_at
    marker = first.path / "venv" / "marker"
    marker.write_text("old")
    rebuilt = cache.build(spec, force=True)
    assert rebuilt.path == first.path and not marker.exists()
    assert rebuilt.lock_hash == first.lock_hash  # same resolution from the same index
    assert sorted(p.name for p in (tmp_path / "runtimes").iterdir()) == [".locks", spec.label]


# --------------------------------------------------------------------------- pruning


def test_prune(tmp_path: Path) -> None:
    root = tmp_path / "runtimes"
    cache = RuntimeCache(root, compile_bytecode=False)
    keep_spec, drop_spec = RuntimeSpec(SKDH), RuntimeSpec(SKDH, ("numpy<3",))
    kept, dropped = cache.ensure(keep_spec), cache.ensure(drop_spec)
    assert kept.path != dropped.path
    junk = root / ".build-x-0123"  # a leftover that no builder can own
    (junk / "venv").mkdir(parents=True)
    (junk / "venv" / "file").write_text("x")
    crashed = root / f".build-{drop_spec.label}-{uuid.uuid4().hex}"  # a builder that died
    crashed.mkdir()
    busy_spec = RuntimeSpec(SKDH, ("numpy<4",))
    busy = root / f".build-{busy_spec.label}-{uuid.uuid4().hex}"  # a builder still at work
    busy.mkdir()

    held = os.open(root / ".locks" / f"{busy_spec.key}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        would = cache.prune(keep=set(), dry_run=True)
        assert {i.path for i in would} == {kept.path, dropped.path, junk, crashed}
        assert all(p.exists() for p in (kept.path, dropped.path, junk, crashed, busy))  # dry run: nothing gone

        removed = cache.prune(keep={keep_spec.key})
        assert {i.path for i in removed} == {dropped.path, junk, crashed}
        assert cache.find(drop_spec) is None and not dropped.path.exists()
        assert cache.find(keep_spec) == kept
        assert busy.exists()
        assert [e.key for e in cache.entries()] == [keep_spec.key]
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    assert {i.path for i in cache.prune(keep={keep_spec.key})} == {busy}  # its builder is gone now

    # Not in keep, but used recently: kept while younger than unused_days.
    assert cache.prune(keep=set(), unused_days=1) == []
    # A runtime in use (its key's lock is held) is never deleted.
    in_use = os.open(root / ".locks" / f"{keep_spec.key}.lock", os.O_RDWR)
    fcntl.flock(in_use, fcntl.LOCK_SH)
    try:
        assert cache.prune(keep=set()) == []
    finally:
        fcntl.flock(in_use, fcntl.LOCK_UN)
        os.close(in_use)
    two_days_ago = time.time() - 2 * 86400
    os.utime(kept.path / "last_used", (two_days_ago, two_days_ago))
    (gone,) = cache.prune(keep=set(), unused_days=1)
    assert gone.key == keep_spec.key and gone.requirement == SKDH
    assert [p.name for p in root.iterdir()] == [".locks"]


def test_ruling_out_numpy_2_rules_out_pyarrow_26() -> None:
    """pyarrow 26 needs NumPy 2 without declaring it; a runtime pinned below NumPy 2 must not get it."""
    assert "pyarrow<26" in RuntimeSpec(SKDH, ("numpy<2",)).requirements()
    assert "pyarrow<26" not in RuntimeSpec(SKDH, ("numpy<2", "pyarrow==20")).requirements()
    assert "pyarrow<26" not in RuntimeSpec(SKDH, ("numpy>=1.26",)).requirements()
    assert "pyarrow<26" not in RuntimeSpec(SKDH).requirements()
