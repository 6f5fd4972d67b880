"""The runtime process (`python -m biomarkerflow.runtimes.process THREADS`): a warm Python
started with a runtime's interpreter.

It imports the algorithm package once, says hello (which Python, which packages), then
takes requests one at a time from stdin and answers on stdout, until stdin closes.
Messages are length-prefixed pickles of plain values and biomarkerflow's own
dataclasses, so the two sides may run different NumPy or SKDH versions.

This module is loaded by the runtime's Python: it imports nothing beyond the job
entrypoint and the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pickle
import platform
import struct
import sys
import threading
import time
import traceback
from importlib import metadata
from typing import IO, Any

HEADER = struct.Struct(">Q")
PROTOCOL = 5

# Request kinds.
EXECUTE = "execute"  # payload: JobSpec -> JobOutcome
CALL = "call"  # payload: ("module:function", args) -> return value; biomarkerflow functions only


def send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any | None:
    """The next message, or None when the other side has closed the stream."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    data = _read_exactly(stream, length)
    if data is None:
        return None
    return pickle.loads(data)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def installed_packages() -> dict[str, str]:
    """Every distribution installed in this environment, name -> version.

    Read from the head of each METADATA file: `dist.metadata` parses the whole file as an
    e-mail message, which took 0.1-0.3 s for ~150 packages at every command and worker start.
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "")
        if name and version:
            found[name] = version
    return found


def _name_and_version(text: str) -> tuple[str | None, str | None]:
    """`Name:` and `Version:` from a core-metadata header (they come first; a blank line ends it)."""
    name = version = None
    for line in text.splitlines():
        if not line:
            break
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            break
    return name, version


def packages_hash(packages: dict[str, str]) -> str:
    """A stable hash of a package set: the same set of versions gives the same hash."""
    lines = sorted(f"{name.lower().replace('_', '-')}=={version}" for name, version in packages.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _resolve(qualified: str) -> Any:
    module_name, _, function_name = qualified.partition(":")
    if not module_name.startswith("biomarkerflow.") or not function_name:
        raise ValueError(f"runtime processes only call biomarkerflow functions, not {qualified!r}")
    return getattr(importlib.import_module(module_name), function_name)


def _answer(kind: str, payload: Any) -> Any:
    from biomarkerflow.runtimes import entrypoint

    if kind == EXECUTE:
        return entrypoint.execute(payload)
    if kind == CALL:
        qualified, args = payload
        return _resolve(qualified)(*args)
    raise ValueError(f"unknown request kind {kind!r}")


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer (id, kind, payload) requests with (id, ok, value or error text) until stdin closes."""
    while True:
        request = receive(requests)
        if request is None:
            return
        request_id, kind, payload = request
        try:
            reply = (request_id, True, _answer(kind, payload))
        except Exception:  # noqa: BLE001 - the caller gets the error, the process stays up
            reply = (request_id, False, traceback.format_exc(limit=8))
        send(replies, reply)


PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this process within a second of the command that started it dying (kill -9).

    The next command gives that command's files to new jobs at once (catalog: Claims.recover);
    a job left running here would be a second run of the same file. A busy job never reads
    stdin, so the closed pipe alone would not stop it.
    """

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _exit_with_parent(os.getppid())
    threads = int(args[0]) if args else None
    # The reply channel is a private copy of stdout; anything a library prints goes to
    # stderr instead of corrupting the message stream.
    replies: IO[bytes] = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    from biomarkerflow.runtimes import entrypoint

    entrypoint.warm_up(threads)
    packages = installed_packages()
    send(
        replies,
        (
            0,
            True,
            {
                "pid": os.getpid(),
                "python": platform.python_version(),
                "executable": sys.executable,
                "packages": packages,
                "packages_hash": packages_hash(packages),
            },
        ),
    )
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        serve(requests, replies)
    # Every reply is written and flushed: skip the interpreter's teardown of SKDH, NumPy and
    # pandas (about 0.5 s that the caller's `close` would wait for at the end of each command).
    with contextlib.suppress(OSError, ValueError):
        replies.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
