"""Every error biomarkerflow raises on purpose, grouped by what the caller should do.

    BiomarkerflowError            message + hint + category
    ├── UsageError                the command line names something wrong    invalid input
    ├── ConfigError               a study config is invalid: fix the YAML   invalid input
    ├── QueryError                SQL over results failed                   invalid input
    ├── RuntimeUnavailableError   the pinned package version cannot run here invalid input
    ├── StorageError              a location cannot be listed/read/written  unavailable
    ├── ExecutorError             the executor cannot be used               unavailable
    ├── CatalogError              the catalog cannot be opened or used      catalog
    │   └── NotFoundError         a study, pipeline or model is not in it   not found
    ├── ConflictError             two things claim one name                 conflict
    ├── AccessError               no valid API token, or too little scope   invalid input (HTTP 401/403)
    └── JobError                  one file's processing failed              failed
        (retryable=True when trying again may help: lost worker, I/O hiccup)

Each front door maps the category in one place: the CLI to the exit codes of the
README's table (`EXIT_CODES`), the API to HTTP statuses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Category(enum.Enum):
    """What kind of failure, i.e. what the caller should do about it."""

    INVALID_INPUT = "invalid input"  # fix the config, the command line or the query
    NOT_FOUND = "not found"  # the study, pipeline or model asked for is not in the catalog
    CONFLICT = "conflict"  # two things claim the same name or the same file
    UNAVAILABLE = "unavailable"  # a location or the scheduler cannot be reached: retry later
    CATALOG = "catalog"  # the catalog database cannot be opened or used
    FAILED = "failed"  # processing a file failed
    INTERNAL = "internal"  # a bug


# The README's exit-code table.
EXIT_CODES: dict[Category, int] = {
    Category.FAILED: 1,
    Category.INVALID_INPUT: 2,
    Category.CONFLICT: 2,
    Category.UNAVAILABLE: 3,
    Category.CATALOG: 4,
    Category.NOT_FOUND: 4,
    Category.INTERNAL: 5,
}


# The same categories as HTTP statuses, for the REST API and the dashboard (an AccessError
# is 401 without a valid token and 403 with too little scope: see `http_status`).
HTTP_STATUS: dict[Category, int] = {
    Category.INVALID_INPUT: 400,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.UNAVAILABLE: 503,
    Category.CATALOG: 503,
    Category.FAILED: 500,
    Category.INTERNAL: 500,
}


class BiomarkerflowError(Exception):
    """Base error: a user-facing message, a hint naming the fix, and a category."""

    category = Category.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.category]


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

    category = Category.INVALID_INPUT

    def __init__(self, problems: list[ConfigProblem], *, hint: str | None = None) -> None:
        self.problems = problems
        message = "\n".join(str(p) for p in problems) or "invalid study config"
        super().__init__(message, hint=hint or "Fix the lines above, then run `biomarkerflow validate CONFIG`.")


class UsageError(BiomarkerflowError):
    """An option or argument names something that does not exist or cannot be used."""

    category = Category.INVALID_INPUT


class QueryError(BiomarkerflowError):
    category = Category.INVALID_INPUT


class RuntimeUnavailableError(BiomarkerflowError):
    """No runtime can be built for a study's pin: the config must name another one."""

    category = Category.INVALID_INPUT


class StorageError(BiomarkerflowError):
    category = Category.UNAVAILABLE


class CatalogError(BiomarkerflowError):
    category = Category.CATALOG


class NotFoundError(CatalogError):
    """What a command asked for (a study, a pipeline's cost model, a model version) is not in the catalog."""

    category = Category.NOT_FOUND


class ConflictError(BiomarkerflowError):
    """Two things claim one name (e.g. a token name that exists already)."""

    category = Category.CONFLICT


class AccessError(BiomarkerflowError):
    """An API request without a valid token, or with too little scope for what it asks."""

    category = Category.INVALID_INPUT

    def __init__(self, message: str, *, hint: str | None = None, authenticated: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.authenticated = authenticated  # True: the token is valid, its scope is too small (HTTP 403)


def http_status(error: BiomarkerflowError) -> int:
    """The HTTP status of an error: its category's, and 401/403 for a missing token or scope."""
    if isinstance(error, AccessError):
        return 403 if error.authenticated else 401
    return HTTP_STATUS[error.category]


class JobError(BiomarkerflowError):
    """Processing one file failed. `retryable` says whether another attempt may succeed."""

    category = Category.FAILED

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class ExecutorError(BiomarkerflowError):
    """The executor asked for cannot be used (unknown kind, scheduler unreachable)."""

    category = Category.UNAVAILABLE
