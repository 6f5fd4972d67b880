"""Every error biomarkerflow raises on purpose, grouped by what the caller should do.

    BiomarkerflowError            message + hint + exit code (the CLI prints these)
    ├── UsageError                the command line names something wrong    (exit 2)
    ├── ConfigError               a study config is invalid: fix the YAML   (exit 2)
    ├── QueryError                SQL over results failed                   (exit 2)
    ├── RuntimeUnavailableError   the pinned package version cannot run here (exit 2)
    ├── StorageError              a location cannot be listed/read/written  (exit 3)
    ├── ExecutorError             the executor cannot be used               (exit 3)
    ├── CatalogError              the catalog cannot be opened or used      (exit 4)
    │   └── NotFoundError         a study, workflow or model is not in it   (exit 4)
    └── JobError                  one file's processing failed              (exit 1)
        (retryable=True when trying again may help: lost worker, I/O hiccup)

Exit codes are documented in the README; the CLI maps errors to them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


class BiomarkerflowError(Exception):
    """Base error: a user-facing message, a hint naming the fix, and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a study config, located as precisely as we can."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(BiomarkerflowError):
    """A study config cannot be used; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem], *, hint: str | None = None) -> None:
        self.problems = problems
        message = "\n".join(str(p) for p in problems) or "invalid study config"
        super().__init__(message, hint=hint or "Fix the lines above, then run `biomarkerflow validate CONFIG`.")


class UsageError(BiomarkerflowError):
    """An option or argument names something that does not exist or cannot be used."""

    exit_code = 2


class QueryError(BiomarkerflowError):
    exit_code = 2


class RuntimeUnavailableError(BiomarkerflowError):
    exit_code = 2


class StorageError(BiomarkerflowError):
    exit_code = 3


class CatalogError(BiomarkerflowError):
    exit_code = 4


class NotFoundError(CatalogError):
    """What a command asked for (a study, a workflow's cost model, a model version) is not in the catalog."""


class JobError(BiomarkerflowError):
    """Processing one file failed. `retryable` says whether another attempt may succeed."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class ExecutorError(BiomarkerflowError):
    """The executor asked for cannot be used (unknown kind, scheduler unreachable)."""

    exit_code = 3
