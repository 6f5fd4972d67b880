"""Per-run profiles: where a job's time goes inside its runtime, kept with the run.

A job asked to be profiled (`JobSpec.profile`: `process --profile`, or a study's
`profile: {every: N}`) runs under pyinstrument's sampling profiler, which every runtime
installs (`spec.JOB_REQUIREMENTS`). The profile covers the job itself: fetching its
input and the workflow type's `run_job`; not the writing of its results, which it is
published with. It is written as two files of the run folder:

    profile.html              pyinstrument's page (self-contained: call tree and timeline)
    profile.speedscope.json   the same samples for speedscope and other flame-graph viewers

and described under "profile" in the run's provenance. A profiler that cannot start or
write never fails the run: the run goes on (or is published) without a profile, and its
provenance says why.

This module is loaded by a runtime's Python: it imports only the standard library at
module level, and pyinstrument when a profile is asked for.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROFILE_FILE = "profile.html"
SPEEDSCOPE_FILE = "profile.speedscope.json"
# One sample per millisecond at most: pyinstrument's cost is a C check at each Python call
# and return, whatever the interval; a coarser one only shrinks the files of long jobs.
INTERVAL_SECONDS = 0.001

# pyinstrument's page keeps its view options in localStorage. The dashboard serves the page
# sandboxed (an origin of its own: it can read neither the session nor the dashboard), where
# reading localStorage throws; an in-memory stand-in lets the page run there too.
_STORAGE_SHIM = (
    "<script>(function(){function memory(){var d={};return{getItem:function(k){return k in d?d[k]:null},"
    "setItem:function(k,v){d[k]=String(v)},removeItem:function(k){delete d[k]},clear:function(){d={}},"
    "key:function(i){return Object.keys(d)[i]||null},get length(){return Object.keys(d).length}}}"
    "['localStorage','sessionStorage'].forEach(function(n){try{window[n].length}catch(e){"
    "Object.defineProperty(window,n,{value:memory(),configurable:true})}})})();</script>"
)


class Recorder:
    """One job's profile: `recording()` around the work, then `files()` and `provenance()`.

    Disabled (`enabled=False`) it does nothing and costs nothing. Use it as a context
    manager: the folder holding the written files is removed on exit.
    """

    def __init__(self, enabled: bool, interval: float = INTERVAL_SECONDS) -> None:
        self.enabled = enabled
        self.interval = interval
        self._profiler: Any = None
        self._folder: Path | None = None
        self._files: dict[str, Path] = {}
        self._facts: dict[str, Any] = {}
        self._error: str | None = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Sample the calling thread while the block runs (when enabled and the profiler starts)."""
        if self.enabled:
            self._start()
        try:
            yield
        finally:
            self._stop()

    def _start(self) -> None:
        try:
            from pyinstrument import Profiler

            profiler = Profiler(interval=self.interval, async_mode="disabled")
            profiler.start()
            self._profiler = profiler
        except Exception as exc:  # noqa: BLE001 - no profile is no reason to fail the run
            self._error = f"the profiler did not start: {type(exc).__name__}: {exc}"

    def _stop(self) -> None:
        if self._profiler is None or not self._profiler.is_running:
            return
        try:
            self._profiler.stop()
        except Exception as exc:  # noqa: BLE001
            self._profiler = None
            self._error = f"the profiler did not stop: {type(exc).__name__}: {exc}"

    def files(self) -> dict[str, Path]:
        """The profile's files (name -> local path), written on first call; {} when there is none."""
        if self._profiler is None or self._files:
            return self._files
        try:
            self._files = self._write()
        except Exception as exc:  # noqa: BLE001
            self._files = {}
            self._error = f"the profile could not be written: {type(exc).__name__}: {exc}"
        return self._files

    def _write(self) -> dict[str, Path]:
        from pyinstrument import __version__ as version
        from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer

        session = self._profiler.last_session
        self._folder = Path(tempfile.mkdtemp(prefix="biomarkerflow-profile-"))
        page = self._folder / PROFILE_FILE
        page.write_text(with_storage_shim(self._profiler.output(HTMLRenderer())), encoding="utf-8")
        flames = self._folder / SPEEDSCOPE_FILE
        flames.write_text(self._profiler.output(SpeedscopeRenderer()), encoding="utf-8")
        self._facts = {
            "profiler": f"pyinstrument {version}",
            "interval_seconds": self.interval,
            "seconds": round(float(session.duration), 3),
            "cpu_seconds": round(float(session.cpu_time), 3),
            "samples": int(session.sample_count),
        }
        return {PROFILE_FILE: page, SPEEDSCOPE_FILE: flames}

    def provenance(self) -> dict[str, Any] | None:
        """What the run's provenance says of its profile (None: none was asked for)."""
        if not self.enabled:
            return None
        if self._files:
            return {"file": PROFILE_FILE, "speedscope": SPEEDSCOPE_FILE, **self._facts}
        return {"file": None, "error": self._error or "no profile was recorded"}

    @property
    def error(self) -> str | None:
        """Why a profile asked for is missing, for the run's warnings."""
        return self._error if self.enabled and not self._files else None


def with_storage_shim(page: str) -> str:
    """pyinstrument's page with the localStorage stand-in first in its <head> (unchanged without one)."""
    head = page.find("<head>")
    if head < 0:
        return page
    at = head + len("<head>")
    return page[:at] + _STORAGE_SHIM + page[at:]
