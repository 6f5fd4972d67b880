"""Check a study config against the algorithm package version it pins.

Step names and parameters differ between SKDH versions (0.17 removed
`GaitLumbar(provide_leg_length=...)`), so a config is checked by the SKDH of its own
runtime: the pin is checked here, the runtime is found (or built), and the section
checks run in a worker of that runtime. A pin no runtime can be built for is a
problem of the config at `pipeline.package`, not a crash.

Starting that worker means importing SKDH (4-7 s), so the runtime's answer is kept in
a small cache under the runtimes folder, keyed by everything it depends on: the
runtime (lock hash), the checking code, the workflow type and the `pipeline` and
`data` sections. Validating an unchanged config again imports no SKDH at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import biomarkerflow
from biomarkerflow.config.schema import DataConfig, PipelineConfig
from biomarkerflow.config.validate import Problem, Section, checker, run_file_checks, section
from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, current_environment
from biomarkerflow.storage.store import FileEntry

if TYPE_CHECKING:  # the executor module imports pandas (0.6 s): only when a runtime is asked
    from biomarkerflow.engine.executor import Executor

CHECKS_FUNCTION = "biomarkerflow.config.validate:run_workflow_checks"
CACHE_FOLDER = ".checks"  # under the runtimes root; dot folders are not runtimes to list or prune
CACHE_ENTRIES = 2000  # answers kept; the oldest go first (each is a few hundred bytes)
# The code whose answer is cached: the config checks and the workflow types' checks.
_CHECKING_CODE = ("config", "plugins")


@cache
def checking_code_hash() -> str:
    """A hash of the code that decides the checks' answer, so a changed check is never answered from the cache."""
    root = Path(biomarkerflow.__file__).parent
    digest = hashlib.sha256(biomarkerflow.__version__.encode())
    for folder in _CHECKING_CODE:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class ChecksCache:
    """Runtime check answers as small JSON files, one per key, each written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(runtime: RuntimeRef, workflow: str, pipeline: Section, data: Section) -> str:
        identity = {
            "runtime": [runtime.key, runtime.lock_hash],
            "code": checking_code_hash(),
            "workflow": workflow,
            "pipeline": pipeline,
            "data": data,
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> list[Problem] | None:
        try:
            stored: Any = json.loads((self.folder / f"{key}.json").read_text())
            return [(str(field), str(message)) for field, message in stored["problems"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or unreadable: ask the runtime

    def put(self, key: str, problems: Sequence[Problem]) -> None:
        """Store an answer; a cache that cannot be written only costs the next validate its time."""
        target = self.folder / f"{key}.json"
        temporary = self.folder / f".{key}.{uuid.uuid4().hex}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps({"problems": [list(p) for p in problems]}))
            os.replace(temporary, target)  # readers see the old answer or the new one, never half
            self._trim()
        except OSError:
            temporary.unlink(missing_ok=True)

    def _trim(self) -> None:
        entries = list(self.folder.glob("*.json"))
        if len(entries) <= CACHE_ENTRIES:
            return
        entries.sort(key=lambda path: path.stat().st_mtime)
        for path in entries[: len(entries) - CACHE_ENTRIES]:
            path.unlink(missing_ok=True)


class RuntimeChecks:
    """`SectionChecks` that run in each study's runtime; use as a context manager.

    Without an executor, it starts one worker per runtime on first use and stops them
    on exit (for `biomarkerflow validate`); with one, it borrows its workers.
    """

    def __init__(self, runtimes: Runtimes, executor: Executor | None = None) -> None:
        self.runtimes = runtimes
        self.cache = ChecksCache(runtimes.cache.root / CACHE_FOLDER)
        self.runtime_calls = 0  # checks answered by a runtime's worker, not the cache
        self._own_executor = executor is None
        self._executor: Executor | None = executor

    def __enter__(self) -> RuntimeChecks:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own_executor and self._executor is not None:
            self._executor.close()
            self._executor = None

    def __call__(self, workflow: str, pipeline: Section, data: Section) -> list[Problem]:
        checks = checker(workflow)
        if checks is None:
            return []
        pipeline_section = section(PipelineConfig, pipeline)
        runtime = current_environment()  # checks `data` when `pipeline` is broken
        if pipeline_section is not None:
            pin_problems = checks.check_pin(pipeline_section)
            if pin_problems:
                # No runtime for a malformed pin: the steps are still worth checking,
                # against the installed version, so every problem shows at once.
                found = self._run(runtime, workflow, pipeline, data)
                return list(dict.fromkeys(pin_problems + found))
            try:
                runtime = self.runtimes.for_pin(pipeline_section.package, pipeline_section.constraints)
            except RuntimeUnavailableError as exc:
                return [("pipeline.package", exc.message)]
        return self._run(runtime, workflow, pipeline, data)

    def check_files(self, workflow: str, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        """The workflow type's checks of the study's files: in this process, they need no package."""
        return run_file_checks(workflow, data, files)

    def _run(self, runtime: RuntimeRef, workflow: str, pipeline: Section, data: Section) -> list[Problem]:
        key = self.cache.key(runtime, workflow, pipeline, data)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if self._executor is None:
            from biomarkerflow.engine.executor import LocalExecutor

            self._executor = LocalExecutor(1)
        self.runtime_calls += 1
        found = self._executor.call(runtime, CHECKS_FUNCTION, workflow, pipeline, data).result()
        problems = [(str(field), str(message)) for field, message in found]
        self.cache.put(key, problems)
        return problems
