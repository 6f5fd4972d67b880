"""Check a study config against the algorithm package version it pins.

What a config may say differs between versions of a workflow type's package (its
algorithms and what they accept), so a config is checked by the package of its own runtime: the
type says which runtime (`WorkflowType.runtime_request`, checked here), the runtime is
found (or built), and the type's `check` runs in a worker of that runtime. A pin no
runtime can be built for is a problem of the config where the pin is written, not a
crash. A type with no pin is checked in the platform's own environment.

Starting that worker means importing the package (seconds), so the runtime's answer is
kept in a small cache under the runtimes folder, keyed by everything it depends on: the
runtime (lock hash), the checking code, the workflow type and the sections it checks.
Validating an unchanged config again imports no algorithm package at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import biomarkerflow
from biomarkerflow.config.schema import DataConfig
from biomarkerflow.config.validate import Sections, run_file_checks
from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import Problem, WorkflowType
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, current_environment
from biomarkerflow.storage.store import FileEntry

if TYPE_CHECKING:  # the executor module imports pandas (0.6 s): only when a runtime is asked
    from biomarkerflow.engine.executor import Executor

CHECKS_FUNCTION = "biomarkerflow.config.validate:run_type_checks"
CACHE_FOLDER = ".checks"  # under the runtimes root; dot folders are not runtimes to list or prune
CACHE_ENTRIES = 2000  # answers kept; the oldest go first (each is a few hundred bytes)
# The code whose answer is cached: the config checks and the workflow types' checks
# (a type outside biomarkerflow adds its own package's folder).
_CHECKING_CODE = ("config", "plugins")


def _type_folder(workflow_type: WorkflowType) -> Path | None:
    """The folder of a type's own package when it lives outside biomarkerflow, else None."""
    module = sys.modules.get(type(workflow_type).__module__)
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    folder = Path(file).resolve().parent
    return None if folder.is_relative_to(Path(biomarkerflow.__file__).resolve().parent) else folder


@cache
def checking_code_hash(extra: Path | None = None) -> str:
    """A hash of the code that decides the checks' answer, so a changed check is never answered from the cache."""
    root = Path(biomarkerflow.__file__).parent
    digest = hashlib.sha256(biomarkerflow.__version__.encode())
    folders = [(root / folder, root) for folder in _CHECKING_CODE] + ([(extra, extra)] if extra else [])
    for folder, base in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(base)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class ChecksCache:
    """Runtime check answers as small JSON files, one per key, each written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(runtime: RuntimeRef, workflow_type: WorkflowType, sections: Sections) -> str:
        identity = {
            "runtime": [runtime.key, runtime.lock_hash],
            "code": checking_code_hash(_type_folder(workflow_type)),
            "workflow": workflow_type.name,
            "sections": sections,
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

    def __call__(self, workflow: str, sections: Sections) -> list[Problem]:
        workflow_type = registry.find(workflow)
        if workflow_type is None:  # the schema reports an unknown type
            return []
        request, pin_problems = workflow_type.runtime_request(sections)
        runtime = current_environment()  # for a type with no pin, and a pin that is malformed
        if pin_problems:
            # No runtime for a malformed pin: the rest is still worth checking, against the
            # installed version, so every problem shows at once.
            found = self._run(runtime, workflow_type, sections)
            return list(dict.fromkeys(pin_problems + found))
        if request is not None:
            try:
                runtime = self.runtimes.for_pin(request.package, request.constraints)
            except RuntimeUnavailableError as exc:
                return [(request.field, exc.message)]
        return self._run(runtime, workflow_type, sections)

    def check_files(self, workflow: str, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        """The workflow type's checks of the study's files: in this process, they need no package."""
        return run_file_checks(workflow, data, files)

    def _run(self, runtime: RuntimeRef, workflow_type: WorkflowType, sections: Sections) -> list[Problem]:
        key = self.cache.key(runtime, workflow_type, sections)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if self._executor is None:
            from biomarkerflow.engine.executor import LocalExecutor

            self._executor = LocalExecutor(1)
        self.runtime_calls += 1
        reference = registry.reference(workflow_type.name)
        found = self._executor.call(runtime, CHECKS_FUNCTION, reference, sections).result()
        problems = [(str(field), str(message)) for field, message in found]
        self.cache.put(key, problems)
        return problems
