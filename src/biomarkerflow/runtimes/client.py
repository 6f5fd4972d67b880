"""The platform's side of one warm worker process running in a runtime.

`RuntimeProcess` starts `python -m biomarkerflow.runtimes.process` with the runtime's
Python and sends it requests; each request gets a Future. When the process dies, only
the requests it held fail (with `RuntimeProcessDied`), so one crashed job never takes its
neighbours down with it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from biomarkerflow.runtimes import process as protocol
from biomarkerflow.runtimes.environment import RuntimeRef

STDERR_TAIL_LINES = 30
START_TIMEOUT_SECONDS = 600.0  # a cold import of SKDH on a busy node can take a while


class RuntimeProcessDied(RuntimeError):
    """The worker process ended while it held this request (killed, out of memory, crashed)."""


class RuntimeCallError(RuntimeError):
    """The function raised inside the worker; the message carries its traceback."""


class RuntimeProcess:
    """One worker process of one runtime, kept warm across requests."""

    def __init__(self, runtime: RuntimeRef, threads: int | None = None) -> None:
        self.runtime = runtime
        self.last_used = time.monotonic()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._died: RuntimeProcessDied | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.hello: Future[dict[str, Any]] = Future()
        command = [runtime.python, "-m", "biomarkerflow.runtimes.process"]
        if threads is not None:
            command.append(str(threads))
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=runtime.worker_environment(),
            )
        except OSError as exc:
            raise RuntimeProcessDied(f"cannot start a worker in {runtime.label} ({runtime.python}): {exc}") from exc
        threading.Thread(target=self._read_replies, name=f"worker-{self.pid}-replies", daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"worker-{self.pid}-stderr", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def alive(self) -> bool:
        return self._died is None and self._process.poll() is None

    def request(self, kind: str, payload: Any) -> Future[Any]:
        """Send one request; the Future resolves with the worker's answer."""
        future: Future[Any] = Future()
        with self._lock:
            if self._died is not None:
                future.set_exception(self._died)
                return future
            request_id = next(self._ids)
            self._pending[request_id] = future
        self.last_used = time.monotonic()
        try:
            with self._write_lock:
                assert self._process.stdin is not None
                protocol.send(self._process.stdin, (request_id, kind, payload))
        except (BrokenPipeError, OSError, ValueError):
            # The reader thread fails every pending request once it sees the process end.
            pass
        return future

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The worker's hello (its Python and package versions), once it has started."""
        return self.hello.result(timeout=timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)

    def close(self, timeout: float = 10.0) -> None:
        """Let the worker finish what it holds and exit; kill it if it does not. A worker that
        holds nothing is stopped at once: one started ahead of work that never came would
        otherwise be waited for until it has imported its packages (seconds, for nothing)."""
        if self.in_flight == 0:
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout)
            return
        with contextlib.suppress(OSError, ValueError):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._process.wait()

    def _read_replies(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        try:
            while (message := protocol.receive(stream)) is not None:
                self._deliver(*message)
        except Exception as exc:  # noqa: BLE001 - a garbled stream ends this worker like a crash
            self._stderr_tail.append(f"reply stream unreadable: {exc}")
            self.kill()
        self._fail_all()

    def _deliver(self, request_id: int, ok: bool, value: Any) -> None:
        if request_id == 0:
            self.hello.set_result(value)
            return
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is None:
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(RuntimeCallError(value))

    def _read_stderr(self) -> None:
        # Forwarded so warnings stay visible, and kept so a crash report can quote them.
        stream = self._process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self._stderr_tail.append(line)
            sys.stderr.write(line + "\n")

    def _fail_all(self) -> None:
        code = self._process.wait()
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        tail = "\n".join(list(self._stderr_tail)[-8:])
        message = f"worker process {self.pid} in {self.runtime.label} ended ({how})"
        died = RuntimeProcessDied(message + (f":\n{tail}" if tail else ""))
        with self._lock:
            self._died = died
            pending = list(self._pending.values())
            self._pending.clear()
        if not self.hello.done():
            self.hello.set_exception(died)
        for future in pending:
            future.set_exception(died)
