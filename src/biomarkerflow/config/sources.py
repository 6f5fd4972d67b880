"""Where study configs come from: telling URLs from local paths, reading and decoding files.

A config lives in a local folder or at a URL (`s3://...`); the locations written in it
are relative to its own folder. Every failure to read is a `ConfigError` with one
located `ConfigProblem`, as for the problems found inside the file.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from biomarkerflow.errors import ConfigError, ConfigProblem

__all__ = ["decode_text", "is_url", "normalise_source", "read_bytes", "resolve_location"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | Path) -> bool:
    """True for `s3://...`, `https://...` and other URLs; False for local paths."""
    return isinstance(location, str) and bool(_URL.match(location))


def resolve_location(source: str, location: str) -> str:
    """An absolute local path or URL for a location written in the config at `source`.

    Relative locations are relative to the config file's folder, also when the
    config itself lives at a URL: for `s3://b/configs/x.yaml`, `data/raw` becomes
    `s3://b/configs/data/raw`. Absolute paths and URLs come back unchanged.
    """
    if is_url(location):
        return location
    location = os.path.expanduser(location)
    if os.path.isabs(location):
        return location
    if is_url(source):
        scheme, rest = source.split("://", 1)
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(rest), location))
        return f"{scheme}://{joined}"
    return os.path.normpath(os.path.join(os.path.dirname(source), location))


def normalise_source(source: str | Path) -> str:
    if is_url(source):
        return str(source)
    return os.path.abspath(os.path.expanduser(os.fspath(source)))


def read_bytes(source: str) -> bytes:
    if is_url(source):
        # Through the storage layer: the same S3 endpoint, region and credentials as the data.
        from biomarkerflow.errors import StorageError
        from biomarkerflow.storage import store

        try:
            return store.read_bytes(source)
        except StorageError as exc:
            missing = isinstance(exc.__cause__, FileNotFoundError)
            message = "file not found" if missing else f"cannot read the file: {exc.message}"
            raise ConfigError([ConfigProblem(source, None, None, "", message)]) from exc
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(source, None, None, "", "file not found")]) from None
    except IsADirectoryError:
        message = "this is a folder, not a config file"
        raise ConfigError([ConfigProblem(source, None, None, "", message)]) from None
    except OSError as exc:
        message = f"cannot read the file: {exc}"
        raise ConfigError([ConfigProblem(source, None, None, "", message)]) from exc


def decode_text(source: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        message = "the file is not UTF-8 text; save it as UTF-8"
        raise ConfigError([ConfigProblem(source, line, column, "", message)]) from None
