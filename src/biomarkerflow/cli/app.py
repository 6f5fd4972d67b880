"""The command line's frame: the Typer app, the global options, the one error handler.

Commands live in the sibling modules (one per group of use cases); each parses its
options, calls the `Platform` (biomarkerflow.service) and renders what it returns.
Exit codes: `biomarkerflow.errors.EXIT_CODES` (the README's table).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import click
import typer
from rich.text import Text

from biomarkerflow.errors import EXIT_CODES, BiomarkerflowError, Category
from biomarkerflow.terminal import line, make_console, styled

if TYPE_CHECKING:  # heavy imports (SQLAlchemy, pandas, pyarrow) wait until a command needs them
    from biomarkerflow.service.platform import Platform

app = typer.Typer(
    help="Turn raw wearable-sensor files into digital biomarkers, study by study.\n\n"
    "Everyday use:  biomarkerflow run --configs studies/",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = make_console()
errors = make_console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def say(*parts: str | Text, indent: int = 0) -> None:
    """Print to stdout; plain strings are literal (file names, regexes, SQL are never markup)."""
    line(console, *parts, indent=indent)


def tell(*parts: str | Text, indent: int = 0) -> None:
    """Print to stderr, literally."""
    line(errors, *parts, indent=indent)


def report_error(message: str, hint: str | None, label: str = "error: ") -> None:
    tell(styled(label, "bold red"), message)
    if hint:
        tell(styled("hint: ", "yellow"), hint)


def exit_with(category: Category | None) -> None:
    """End the command with the README's exit code for `category` (0 for None)."""
    raise typer.Exit(0 if category is None else EXIT_CODES[category])


class _State:
    """The global options, and the Platform built from them on first use (inside error handling)."""

    home_option: Path | None = None
    catalog_url: str | None = None
    debug: bool = False
    _platform: Platform | None = None

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            from biomarkerflow.service.platform import Platform

            self._platform = Platform(self.home_option, self.catalog_url, announce=lambda message: tell(message))
        return self._platform


state = _State()


def platform() -> Platform:
    """The composition root for this command (home, catalog, runtimes, settings)."""
    return state.platform


def handled(command: F) -> F:
    """The one place that turns errors into a message, a hint and the README's exit code.

    With --debug the traceback is printed too, and the exit code stays the same.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BiomarkerflowError as exc:
            _print_traceback()
            report_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            tell("interrupted: files being processed went back to READY and will run next time")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.BadParameter, click.exceptions.ClickException):
            raise
        except Exception as exc:
            _print_traceback()
            report_error(
                f"{type(exc).__name__}: {exc}",
                "this is a bug: run again with --debug for the traceback, and report it.",
                label="unexpected error: ",
            )
            raise typer.Exit(EXIT_CODES[Category.INTERNAL]) from None
        finally:
            if state._platform is not None:
                state._platform.close()
                state._platform = None

    return wrapper  # type: ignore[return-value]


def _print_traceback() -> None:
    if state.debug:
        import traceback

        errors.print(Text(traceback.format_exc()), soft_wrap=True)


def _plain_argument_help() -> None:
    """Arguments in the usage line as a scientist reads them: `SQL`, `[CONFIG]...`.

    Typer prints a required argument as `{SQL}`, which reads as a set or a template.
    """
    from typer.core import TyperArgument

    def usage_pieces(self: TyperArgument, ctx: object) -> list[str]:
        name = self.metavar or (self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]

    TyperArgument.get_usage_pieces = usage_pieces  # type: ignore[method-assign]


_plain_argument_help()


def _show_version(value: bool) -> None:
    if not value:
        return
    import importlib.metadata

    import biomarkerflow

    try:
        skdh = f"scikit-digital-health {importlib.metadata.version('scikit-digital-health')} installed"
    except importlib.metadata.PackageNotFoundError:
        skdh = "scikit-digital-health not installed"
    print(f"biomarkerflow {biomarkerflow.__version__} (Python {sys.version.split()[0]}); {skdh}")
    print("Studies run the SKDH version they pin; `biomarkerflow runtimes list` shows the others built.")
    raise typer.Exit(0)


@app.callback()
def main_options(
    home: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder holding the catalog. Default: $BIOMARKERFLOW_HOME, else the nearest .biomarkerflow "
            "in this folder or above it (as git finds .git), else ./.biomarkerflow (created).",
            show_default=False,
        ),
    ] = None,
    catalog: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            envvar="BIOMARKERFLOW_CATALOG",
            help="Catalog database URL, e.g. postgresql://user@host:5432/biomarkerflow (default: SQLite in the home).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks (exit codes stay the same).")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the versions and exit."),
    ] = False,
) -> None:
    state.home_option = home
    state.catalog_url = catalog
    state.debug = debug
    state._platform = None


StudyOption = Annotated[
    list[str] | None, typer.Option("--study", metavar="STUDY", help="Only this study (repeatable).")
]
ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        metavar="EXECUTOR",
        envvar="BIOMARKERFLOW_EXECUTOR",
        help="Where jobs run: local (worker processes here), local-dask:N, or dask://HOST:PORT.",
    ),
]
WorkersOption = Annotated[int, typer.Option(metavar="N", min=1, help="Worker processes running files in parallel.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FORMATS = ("table", "csv", "json")


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"'{value}' is not one of: {', '.join(FORMATS)}", param_hint="--format")
    return value
