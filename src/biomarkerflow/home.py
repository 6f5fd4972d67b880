"""Which home a command uses: the folder holding the catalog, settings and (by default) runtimes.

The home is chosen once per command, in this order:

1. ``--home DIR`` (the option);
2. else ``BIOMARKERFLOW_HOME``;
3. else the nearest existing ``.biomarkerflow`` folder in the current folder or any folder
   above it, as git finds ``.git``: running from ``proj/studies/`` uses ``proj/.biomarkerflow``
   instead of silently starting a second, empty catalog there;
4. else ``.biomarkerflow`` in the current folder, created on first use.

A folder named ``.biomarkerflow`` is enough to count as a home in step 3, whatever it holds:
a home is created empty and filled lazily (catalog on first open, settings on first read), so
requiring a catalog or settings file would skip a home that was just made and start another.
A *file* named ``.biomarkerflow`` is not a home and the search looks further up.

The result is always an absolute path, so nothing that runs later in another folder (uv
building a runtime, a worker process, a Dask worker) can read it differently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from biomarkerflow.errors import CatalogError

HOME_ENV = "BIOMARKERFLOW_HOME"
HOME_FOLDER = ".biomarkerflow"

Source = Literal["option", "environment", "found", "new"]

_HINT = (
    "Point --home (or BIOMARKERFLOW_HOME) at a folder you can write to, e.g. --home ~/biomarkerflow-home; "
    "without either, biomarkerflow uses the nearest .biomarkerflow folder in the current folder or above it."
)


@dataclass(frozen=True)
class HomeLocation:
    """The home a command uses (absolute) and why it was chosen, for messages and `status`."""

    path: Path
    source: Source
    # The folder the search started from; only used to word `describe()`.
    cwd: Path | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. ``/x/proj/.biomarkerflow (found above the current folder)``."""
        return f"{self.path} ({self._why()})"

    def _why(self) -> str:
        if self.source == "option":
            return "from --home"
        if self.source == "environment":
            return f"from {HOME_ENV}"
        if self.source == "found":
            in_cwd = self.cwd is not None and self.path.parent == self.cwd
            return "found in the current folder" if in_cwd else "found above the current folder"
        return "new: no .biomarkerflow folder in the current folder or above it"


def find_home(
    option: str | Path | None, env: Mapping[str, str], cwd: Path, *, stop_at: Path | None = None
) -> HomeLocation:
    """The home to use: `option` (--home), else env[BIOMARKERFLOW_HOME], else the nearest
    `.biomarkerflow` folder in `cwd` or above, else `cwd/.biomarkerflow` (new).

    Reads the filesystem but changes nothing. `cwd` and `env` are passed in (normally
    ``Path.cwd()`` and ``os.environ``) so callers and tests choose them. `stop_at` limits the
    upward search to that folder and those below it (tests use it so a stray `.biomarkerflow`
    above their temporary folder cannot leak in).

    Raises CatalogError (exit code 4) when the home is a file, or cannot be created because
    the folder it would go in is a file or not writable.
    """
    cwd = Path(cwd).resolve()  # real folders: the upward search and describe() compare paths
    if option is not None:
        if str(option).strip() == "":
            raise CatalogError("--home is empty", hint=_HINT)
        return _checked(HomeLocation(_absolute(option, env, cwd), "option", cwd), "--home ")
    configured = env.get(HOME_ENV, "").strip()
    if configured:
        return _checked(HomeLocation(_absolute(configured, env, cwd), "environment", cwd), f"{HOME_ENV}=")
    found = _search_upwards(cwd, stop_at)
    if found is not None:
        return HomeLocation(found, "found", cwd)
    return _checked(HomeLocation(_absolute(HOME_FOLDER, env, cwd), "new", cwd), "the home ")


def _absolute(text: str | Path, env: Mapping[str, str], cwd: Path) -> Path:
    """`text` as an absolute, normalised path: `~` expanded, relative paths taken from `cwd`.

    Symbolic links are resolved too, so two spellings of one folder are one home (and a link
    to a folder yet to be made becomes that folder).
    """
    raw = str(text)
    user_home = env.get("HOME")
    if user_home and (raw == "~" or raw.startswith("~/")):
        raw = user_home + raw[1:]
    path = cwd / os.path.expanduser(raw)  # ~user, or ~ when env has no HOME; absolute stays absolute
    try:
        return path.resolve()
    except RuntimeError:  # a symbolic-link loop: keep the spelling; creating it will say what is wrong
        return Path(os.path.abspath(path))


def _search_upwards(cwd: Path, stop_at: Path | None) -> Path | None:
    """The nearest `.biomarkerflow` folder in `cwd` or a parent, up to the root (or `stop_at`)."""
    ceiling = stop_at.resolve() if stop_at is not None else None
    for folder in (cwd, *cwd.parents):
        candidate = folder / HOME_FOLDER
        if _is_folder(candidate):
            return candidate
        if folder == ceiling:
            break
    return None


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # an unreadable parent folder: not a home we could use anyway
        return False


def _checked(location: HomeLocation, named: str) -> HomeLocation:
    """`location`, once sure it is (or can become) a folder; `named` starts the message."""
    path = location.path
    if path.is_dir():
        return location
    if path.exists():
        raise CatalogError(f"{named}{path} is a file, not a folder", hint=_HINT)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise CatalogError(f"{named}{path} cannot be created: {existing} is a file, not a folder", hint=_HINT)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CatalogError(f"{named}{path} cannot be created: you may not write to the folder {existing}", hint=_HINT)
    return location


def _nearest_existing(path: Path) -> Path:
    """`path`'s nearest ancestor that exists (the home's parents are created along with it)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor)
