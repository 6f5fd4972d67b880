"""Files appear whole or not at all: readers (a scan, a watcher) may look at the folder meanwhile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing under a temporary name in the same folder; rename
    it into place on success, remove it on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
