"""Per-run profiles: where a job's time goes inside its runtime, kept with the run.

A job asked to be profiled (`JobSpec.profile`: `process --profile`, or a study's
`profile: {every: N}`) is sampled while it runs: every INTERVAL_SECONDS of wall-clock time
a timer's signal has the job's thread note its own Python stack (a job off the main thread,
which cannot receive signals, is sampled by a thread beside it instead), and the samples
are rendered by pyinstrument, which every runtime installs (`spec.JOB_REQUIREMENTS`). The
profile covers the job itself: fetching its input and the workflow type's `run_job`; not
the writing of its results, which it is published with. It is written as two files of the
run folder:

    profile.html              pyinstrument's page (self-contained: call tree and timeline)
    profile.speedscope.json   the same samples for speedscope and other flame-graph viewers

and described under "profile" in the run's provenance. A profiler that cannot start or
write never fails the run: the run goes on (or is published) without a profile, and its
provenance says why.

Why not pyinstrument's own sampler: it hooks every Python call and return (`sys.setprofile`),
which on Python 3.11 slows all Python code while it is set; the wrist pipeline of SKDH ran
45 % slower under it, at any interval. A sampling thread costs the job a GIL hand-over per
sample (4-10 % at 5 ms on a loaded 2-core machine); the signal costs one stack walk
(benchmarks/README.md: "Per-run profiling"). The price of both: a signal is handled, and
a thread gets the GIL, only between Python bytecodes, so time in one long C call is counted
at the sample after it, in the function the job is in by then (usually that call's caller).

This module is loaded by a runtime's Python: it imports only the standard library at
module level, and pyinstrument when a profile is written.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PROFILE_FILE = "profile.html"
SPEEDSCOPE_FILE = "profile.speedscope.json"
# 50 samples a second: enough to see where a job of seconds or hours goes. Sampling and
# writing the profile cost about 1 % of a job's CPU time each at this rate (twice at 100).
INTERVAL_SECONDS = 0.02
# pyinstrument's page holds every stack it shows (about 0.8 kB each, with SKDH's deep
# stacks): longer jobs are shown resampled to this many; the speedscope file keeps all.
PAGE_STACKS = 4000

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

Stack = list[str]  # pyinstrument's frame identifiers, outermost first


class _Sampler(threading.Thread):
    """Reads one thread's stack every `interval` seconds until `done` is set."""

    def __init__(self, target: int, interval: float) -> None:
        super().__init__(name="biomarkerflow-profiler", daemon=True)
        self.target = target
        self.interval = interval
        self.done = threading.Event()
        self.records: list[tuple[Stack, float]] = []  # (stack, seconds since the sample before)
        self.samples = 0
        self.busy = 0.0  # seconds spent taking samples (the job's, or the GIL's it waits for)
        self._names: dict[tuple[CodeType, int | None], str] = {}  # one string per line, however many samples

    def run(self) -> None:
        last = time.perf_counter()
        while not self.done.wait(self.interval):
            frame = sys._current_frames().get(self.target)
            now = time.perf_counter()
            if frame is not None:
                self.add(self.stack(frame), now - last)
            del frame  # a frame keeps the job's locals alive
            last = now
            self.busy += time.perf_counter() - now

    def add(self, stack: Stack, seconds: float) -> None:
        """One sample; the same stack as the sample before (a long call) extends that one, which
        changes neither the call tree nor the timeline and keeps the profile small and quick to write."""
        self.samples += 1
        if self.records and self.records[-1][0] == stack:
            self.records[-1] = (stack, self.records[-1][1] + seconds)
        else:
            self.records.append((stack, seconds))

    def stack(self, frame: FrameType | None) -> Stack:
        """A frame's stack as pyinstrument identifies frames: qualified name, file, first line; line."""
        stack: Stack = []
        while frame is not None:
            code, line = frame.f_code, frame.f_lineno
            name = self._names.get((code, line))
            if name is None:
                name = f"{code.co_qualname}\x00{code.co_filename}\x00{code.co_firstlineno}\x01l{line}"
                self._names[(code, line)] = name
            stack.append(name)
            frame = frame.f_back
        stack.reverse()
        return stack


class _SignalSampler(_Sampler):
    """Samples the main thread from a wall-clock timer's signal (SIGALRM), in that thread itself.

    No other thread has to take the GIL from the job, so a sample costs one stack walk and
    the job is never switched out for it. Interrupted system calls are restarted (as without
    the timer). Only the main thread receives Python signal handlers, and only one timer
    exists per process: used when the job runs there and the timer is free.
    """

    def start(self) -> None:
        self._last = time.perf_counter()
        self._previous = signal.signal(signal.SIGALRM, self._sample)
        signal.siginterrupt(signal.SIGALRM, False)  # system calls go on after a sample
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        if self.done.is_set():
            return  # a signal raised just before the timer stopped
        now = time.perf_counter()
        with contextlib.suppress(Exception):  # a sample lost is better than a job failed
            self.add(self.stack(frame), now - self._last)
        self._last = now
        self.busy += time.perf_counter() - now

    def join(self, timeout: float | None = None) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # Never back to the default action (end the process) while a late signal may be pending.
        previous = self._previous
        signal.signal(signal.SIGALRM, _late_signal if previous in (signal.SIG_DFL, None) else previous)

    @staticmethod
    def usable() -> bool:
        main = threading.current_thread() is threading.main_thread()
        return main and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def _late_signal(signum: int, frame: FrameType | None) -> None:
    """SIGALRM after a profile: ignored (its default action would end the runtime process)."""


class Recorder:
    """One job's profile: `recording()` around the work, then `files()` and `provenance()`.

    Disabled (`enabled=False`) it does nothing and costs nothing. Use it as a context
    manager: the folder holding the written files is removed on exit.
    """

    def __init__(self, enabled: bool, description: str = "job", interval: float = INTERVAL_SECONDS) -> None:
        self.enabled = enabled
        self.description = description
        self.interval = interval
        self._sampler: _Sampler | None = None
        self._started: tuple[float, float, float] = (0.0, 0.0, 0.0)  # time, perf_counter, process_time
        self._ended: tuple[float, float] = (0.0, 0.0)  # perf_counter, process_time
        self._start_stack: Stack = []
        self._folder: Path | None = None
        self._files: dict[str, Path] = {}
        self._facts: dict[str, Any] = {}
        self._error: str | None = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Sample the calling thread while the block runs (when enabled and the sampler starts)."""
        if self.enabled:
            self._start()
        try:
            yield
        finally:
            self._stop()

    def _start(self) -> None:
        try:
            kind = _SignalSampler if _SignalSampler.usable() else _Sampler
            sampler = kind(threading.get_ident(), self.interval)
            self._start_stack = sampler.stack(sys._getframe(1))
            self._started = (time.time(), time.perf_counter(), time.process_time())
            sampler.start()
            self._sampler = sampler
        except Exception as exc:  # noqa: BLE001 - no profile is no reason to fail the run
            self._error = f"the profiler did not start: {type(exc).__name__}: {exc}"

    def _stop(self) -> None:
        sampler = self._sampler
        if sampler is None or sampler.done.is_set():
            return
        self._ended = (time.perf_counter(), time.process_time())
        sampler.done.set()
        sampler.join(timeout=5)

    def files(self) -> dict[str, Path]:
        """The profile's files (name -> local path), written on first call; {} when there is none."""
        if self._sampler is None or self._files or self._error:
            return self._files
        try:
            began = time.perf_counter()
            self._files = self._write()
            self._facts["write_seconds"] = round(time.perf_counter() - began, 3)
        except Exception as exc:  # noqa: BLE001
            self._files = {}
            self._error = f"the profile could not be written: {type(exc).__name__}: {exc}"
        return self._files

    def _write(self) -> dict[str, Path]:
        from pyinstrument import __version__ as version
        from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer

        assert self._sampler is not None
        session = self._session(self._sampler.records)
        shown = session
        if len(session.frame_records) > PAGE_STACKS:
            shown = session.resample(session.duration / PAGE_STACKS)
        self._folder = Path(tempfile.mkdtemp(prefix="biomarkerflow-profile-"))
        page = self._folder / PROFILE_FILE
        page.write_text(with_storage_shim(HTMLRenderer(resample_interval=0).render(shown)), encoding="utf-8")
        flames = self._folder / SPEEDSCOPE_FILE
        flames.write_text(SpeedscopeRenderer().render(session), encoding="utf-8")
        self._facts = {
            "profiler": f"biomarkerflow stack sampler, rendered by pyinstrument {version}",
            "interval_seconds": self.interval,
            "seconds": round(session.duration, 3),
            "cpu_seconds": round(session.cpu_time, 3),
            "samples": self._sampler.samples,
            "sampling_seconds": round(self._sampler.busy, 4),
            "stacks": len(session.frame_records),  # consecutive samples of one stack are one
            "page_stacks": len(shown.frame_records),
        }
        return {PROFILE_FILE: page, SPEEDSCOPE_FILE: flames}

    def _session(self, records: list[tuple[Stack, float]]) -> Any:
        from pyinstrument.session import Session

        wall_start, perf_start, cpu_start = self._started
        perf_end, cpu_end = self._ended
        return Session(
            frame_records=records,
            start_time=wall_start,
            duration=perf_end - perf_start,
            min_interval=self.interval,
            max_interval=self.interval,
            sample_count=self._sampler.samples if self._sampler else len(records),
            start_call_stack=self._start_stack,
            target_description=self.description,
            cpu_time=cpu_end - cpu_start,
            sys_path=sys.path,
            sys_prefixes=Session.current_sys_prefixes(),
        )

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
