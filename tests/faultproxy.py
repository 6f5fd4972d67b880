"""A TCP proxy on loopback that can take the service behind it down for a while.

Clients are pointed at the proxy instead of the service. `outage()` makes the service
unreachable: every open connection is reset, and every new connection is accepted and
reset at once (what clients see when a server process dies behind a load balancer),
until the block ends. The proxy counts what it did, so a test can prove traffic really
met the outage instead of slipping past it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ProxyCounts:
    forwarded: int = 0  # connections passed through to the service
    cut: int = 0  # open connections reset when an outage began
    refused: int = 0  # connections reset during an outage
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the peer gets 'connection reset', as from a dead server."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.counts = ProxyCounts()
        self._down = threading.Event()
        self._closing = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def outage(self) -> Iterator[ProxyCounts]:
        """The service is unreachable inside the block; it answers again afterwards."""
        self._down.set()
        with self._open_lock:
            victims, self._open = self._open, set()
        for sock in victims:
            self.counts.add("cut")
            _reset(sock)
        try:
            yield self.counts
        finally:
            self._down.clear()

    def close(self) -> None:
        self._closing.set()
        _reset(self._listener)
        with self._open_lock:
            for sock in self._open:
                _reset(sock)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                self.counts.add("refused")
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            self.counts.add("forwarded")
            with self._open_lock:
                self._open.update((client, upstream))
            remaining = [2]  # directions still flowing; the pair closes when both end
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink, remaining), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, remaining: list[int]) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # pass the half-close on
        with self._open_lock:
            remaining[0] -= 1
            if remaining[0]:
                return
            self._open.difference_update((source, sink))
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()
