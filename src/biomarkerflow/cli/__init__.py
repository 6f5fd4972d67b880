# ruff: noqa: I001  (the command modules are imported in the order --help lists them)
"""The `biomarkerflow` command line: thin commands over `biomarkerflow.service.Platform`.

Run `biomarkerflow --help` for the commands; exit codes are the README's table
(`biomarkerflow.errors.EXIT_CODES`).
"""

from __future__ import annotations

# Each module registers its commands; imported in the order `--help` lists them.
from biomarkerflow.cli import work  # noqa: F401
from biomarkerflow.cli import reports  # noqa: F401
from biomarkerflow.cli import costs  # noqa: F401
from biomarkerflow.cli import runtimes  # noqa: F401
from biomarkerflow.cli import cleanup  # noqa: F401
from biomarkerflow.cli import serve  # noqa: F401
from biomarkerflow.cli import demo  # noqa: F401
from biomarkerflow.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
