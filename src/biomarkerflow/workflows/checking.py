"""Check a study config against the algorithm package version it pins.

Step names and parameters differ between SKDH versions (0.17 removed
`GaitLumbar(provide_leg_length=...)`), so a config is checked by the SKDH of its own
runtime: the pin is checked here, the runtime is found (or built), and the section
checks run in a worker of that runtime. A pin no runtime can be built for is a
problem of the config at `pipeline.package`, not a crash.
"""

from __future__ import annotations

from types import TracebackType

from biomarkerflow.config.schema import PipelineConfig
from biomarkerflow.config.validate import Problem, Section, checker, section
from biomarkerflow.engine.executor import Executor, LocalExecutor
from biomarkerflow.errors import RuntimeUnavailableError
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, current_environment

CHECKS_FUNCTION = "biomarkerflow.config.validate:run_workflow_checks"


class RuntimeChecks:
    """`SectionChecks` that run in each study's runtime; use as a context manager.

    Without an executor, it starts one worker per runtime on first use and stops them
    on exit (for `biomarkerflow validate`); with one, it borrows its workers.
    """

    def __init__(self, runtimes: Runtimes, executor: Executor | None = None) -> None:
        self.runtimes = runtimes
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

    def _run(self, runtime: RuntimeRef, workflow: str, pipeline: Section, data: Section) -> list[Problem]:
        if self._executor is None:
            self._executor = LocalExecutor(1)
        found = self._executor.call(runtime, CHECKS_FUNCTION, workflow, pipeline, data).result()
        return [(str(field), str(message)) for field, message in found]
