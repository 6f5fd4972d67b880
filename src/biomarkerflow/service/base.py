"""The resources of the composition root: home, catalog, runtimes, settings.

Each is opened once, on first use, so a command pays only for what it touches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from biomarkerflow.errors import NotFoundError
from biomarkerflow.service.cache import RecentValues

if TYPE_CHECKING:
    from biomarkerflow.catalog.manager import Catalog
    from biomarkerflow.catalog.records import StudyRecord
    from biomarkerflow.home import HomeLocation
    from biomarkerflow.runtimes.environment import Runtimes
    from biomarkerflow.settings import Settings

__all__ = ["PlatformBase"]


class PlatformBase:
    """The resources every use case shares; the use cases are mixins over this class."""

    def __init__(
        self,
        home: str | Path | None = None,
        catalog_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        announce: Callable[[str], None] | None = None,
        summary_max_age: float = 0.0,
    ) -> None:
        """`home`: the --home option (None: BIOMARKERFLOW_HOME, else the nearest .biomarkerflow
        above `cwd`, else a new one); `catalog_url`: a database URL instead of SQLite in the home;
        `announce`: where to say that a runtime is being built (it takes seconds to minutes);
        `summary_max_age`: how many seconds old a study's totals may be when shown (0: always
        counted afresh; the API serves many readers from one count every few seconds)."""
        self._home_option = home
        self._catalog_url = catalog_url
        self._env = os.environ if env is None else env
        self._cwd = cwd
        self._announce = announce
        self._location: HomeLocation | None = None
        self._catalog: Catalog | None = None
        self._runtimes: Runtimes | None = None
        self._settings: Settings | None = None
        self.recent = RecentValues(summary_max_age)
        # One Platform may serve several threads (a Watcher beside the API or a test): each
        # resource is opened once, by one of them (two first opens of a new SQLite catalog
        # would both create its schema and one would find the database locked).
        self._opening = threading.RLock()

    # ---- resources, opened once on first use ----------------------------------------------

    @property
    def location(self) -> HomeLocation:
        """The home and how it was found (raises CatalogError when it cannot be a folder)."""
        if self._location is None:
            with self._opening:
                if self._location is None:
                    from biomarkerflow.home import find_home

                    self._location = find_home(self._home_option, self._env, self._cwd or Path.cwd())
        return self._location

    @property
    def home(self) -> Path:
        return self.location.path

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            with self._opening:
                if self._catalog is None:
                    from biomarkerflow.catalog.manager import Catalog

                    self._catalog = Catalog(self._catalog_url) if self._catalog_url else Catalog.for_home(self.home)
        return self._catalog

    @property
    def runtimes(self) -> Runtimes:
        if self._runtimes is None:
            with self._opening:
                if self._runtimes is None:
                    from biomarkerflow.runtimes.environment import Runtimes

                    self._runtimes = Runtimes.for_home(self.home, progress=self._announce)
        return self._runtimes

    @property
    def settings(self) -> Settings:
        """The home's settings.yaml (written with its defaults the first time)."""
        if self._settings is None:
            with self._opening:
                if self._settings is None:
                    from biomarkerflow.settings import load_settings

                    self._settings = load_settings(self.home)
        return self._settings

    def catalog_name(self) -> str:
        """Where the catalog is, for messages: a database URL without its password, or the
        home and how it was found (a home found in a parent folder surprises less when named)."""
        if not self._catalog_url:
            return self.location.describe()
        from sqlalchemy import make_url

        return make_url(self._catalog_url).render_as_string(hide_password=True)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    # ---- shared checks ---------------------------------------------------------------------

    def known_studies(self, fresh: bool = False) -> dict[str, StudyRecord]:
        """The catalog's studies by id; a serving Platform shares one reading for a few seconds."""
        if fresh:
            return {s.id: s for s in self.catalog.studies()}
        return self.recent.get(("studies",), lambda: self.known_studies(fresh=True))

    def require_studies(self, studies: list[str] | None) -> dict[str, StudyRecord]:
        """An unknown study is an error (not found), never a silent no-op; the known studies by id."""
        known = self.known_studies()
        unknown = [s for s in studies or [] if s not in known]
        if unknown:  # or added since the shared reading: read again before saying so
            known = self.known_studies(fresh=True)
            unknown = [s for s in studies or [] if s not in known]
        if unknown:
            listed = ", ".join(sorted(known)) or "none (run `biomarkerflow scan --configs DIR`)"
            raise NotFoundError(
                f"no study {', '.join(repr(s) for s in unknown)} in the catalog at {self.catalog_name()}",
                hint=f"Known studies: {listed}.",
            )
        return known
