"""One small interface over fsspec: list files with fingerprints, read, write atomically.

Locations are local paths or URLs (`s3://bucket/prefix`, `file:///...`). Everything
else in biomarkerflow goes through here, so adding a backend is an fsspec matter.

S3 (s3fs) takes its endpoint, region and credentials from the usual AWS environment
variables: `AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`), `AWS_REGION` (else
`AWS_DEFAULT_REGION`), and whatever botocore's credential chain finds
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance roles ...).
Listings are never cached between calls, so a rescan always sees the store as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from biomarkerflow.errors import StorageError

logger = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
"""Written last into a published run folder; readers trust only folders that have it."""

_S3_PROTOCOLS = ("s3", "s3a")
# Everything that decides which endpoint, region and identity an S3 client uses: a
# change to any of them (tests point at another endpoint) must give a new client.
_AWS_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
_s3_filesystems: dict[tuple[str | int | None, ...], fsspec.AbstractFileSystem] = {}


@dataclass(frozen=True)
class FileEntry:
    """A file as listed: its URL and what tells us whether it changed."""

    url: str
    relative_path: str
    size: int
    mtime: float | None
    etag: str | None

    @property
    def name(self) -> str:
        return PurePosixPath(self.relative_path).name

    @property
    def fingerprint(self) -> str:
        """Changes whenever the content may have changed (etag if the store has one)."""
        return self.etag or f"{self.size}:{self.mtime}"


def s3_endpoint() -> str | None:
    """The S3 endpoint the environment names (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_options() -> dict[str, Any]:
    """s3fs options from the environment (endpoint and region; credentials stay with botocore)."""
    options: dict[str, Any] = {"use_listings_cache": False}
    endpoint = s3_endpoint()
    if endpoint:
        options["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["client_kwargs"] = {"region_name": region}
    return options


def _s3_filesystem() -> fsspec.AbstractFileSystem:
    state = (os.getpid(), *(os.environ.get(name) for name in _AWS_ENV))
    fs = _s3_filesystems.get(state)
    if fs is None:
        try:
            import s3fs
        except ImportError as exc:
            raise StorageError("s3:// locations need the s3fs package", hint="Install it: pip install s3fs") from exc
        _s3_filesystems.clear()  # the environment changed (or we were forked): old clients are no use
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options())
        _quiet_abandoned_resets(fs.loop)
        _s3_filesystems[state] = fs
    return fs


def _quiet_abandoned_resets(loop: asyncio.AbstractEventLoop) -> None:
    """Keep aiohttp's leftovers of a reset connection out of the user's terminal.

    When an endpoint resets a connection mid-request, aiohttp leaves behind a task whose
    ConnectionResetError nobody collects; asyncio then prints its traceback. The request
    itself has already failed and been retried (or reported), so this is only noise.
    """

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), ConnectionResetError):
            logger.debug("storage connection reset: %s", context.get("message"))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def filesystem(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a location and the path within it (`bucket/key` on S3)."""
    protocol, _ = fsspec.core.split_protocol(location)
    try:
        if protocol in _S3_PROTOCOLS:
            fs = _s3_filesystem()
            return fs, str(fs._strip_protocol(location))
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open location {location!r}: {exc}") from exc
    return fs, path


def _join(location: str, relative: str) -> str:
    return location.rstrip("/") + "/" + relative.lstrip("/")


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _botocore_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


def _explain(exc: BaseException, location: str) -> tuple[str, str | None]:
    """What went wrong, in words, and a hint naming the fix."""
    kind = type(exc).__name__
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError", "ConnectionClosedError"):
        endpoint = s3_endpoint() or "the AWS S3 endpoint"
        return (
            f"cannot connect to the storage endpoint {endpoint}: {exc}",
            "Check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and that the service is up.",
        )
    if kind in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (
            f"no usable storage credentials: {exc}",
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE).",
        )
    if isinstance(exc, PermissionError):
        return (
            f"access denied: {exc}",
            "Check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and the bucket's policy.",
        )
    if isinstance(exc, FileNotFoundError):
        if not is_local(location) and "bucket" in str(exc).lower():
            bucket = location.split("://", 1)[1].split("/", 1)[0]
            return f"bucket {bucket!r} does not exist ({exc})", "Create the bucket or fix the location."
        return f"not found: {exc}", None
    return f"{kind}: {exc}" if not str(exc).startswith(kind) else str(exc), None


@contextlib.contextmanager
def failures(action: str, location: str) -> Iterator[None]:
    """Turn any storage failure (OS, s3fs, botocore) into a StorageError naming the location."""
    caught: tuple[type[BaseException], ...] = (OSError, *_botocore_errors())
    try:
        yield
    except StorageError:
        raise
    except caught as exc:
        message, hint = _explain(exc, location)
        raise StorageError(f"cannot {action} {location}: {message}", hint=hint) from exc


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified", info.get("created")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def matches(relative: str, patterns: list[str]) -> bool:
    """Whether a relative path matches any of the glob patterns (as `include` reads them)."""
    return _matches(relative, patterns)


def _matches(relative: str, patterns: list[str]) -> bool:
    # fnmatch's '*' crosses '/', so '**/*.bin' would miss top-level files: also try
    # the pattern with a leading '**/' removed.
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(relative, pattern[3:]):
            return True
    return False


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    with failures("reach", location):
        return bool(fs.exists(path))


def _missing(fs: fsspec.AbstractFileSystem, location: str, root: str) -> StorageError:
    hint = "Check data.location in the study config (relative paths start at the config file)."
    if not is_local(location):
        bucket = root.split("/", 1)[0]
        if bucket != root.rstrip("/") and not fs.exists(bucket):
            return StorageError(
                f"location {location!r}: bucket {bucket!r} does not exist (or these credentials cannot see it)",
                hint=hint,
            )
    return StorageError(f"data location {location!r} does not exist or is not a folder", hint=hint)


def list_files(location: str, include: list[str], exclude: list[str] | None = None) -> list[FileEntry]:
    """Every file under `location` matching `include` and not `exclude`, sorted by path.

    One recursive listing (on S3: one LIST request per 1000 objects, nothing read);
    each entry's fingerprint is the object's etag where the store has one.
    """
    fs, root = filesystem(location)
    root = root.rstrip("/") or root
    with failures("list", location):
        fs.invalidate_cache(root)
        listing: dict[str, dict[str, Any]] = fs.find(root, detail=True)
        files = {p: i for p, i in listing.items() if i.get("type") != "directory" and not p.endswith("/")}
        if (not files or set(files) == {root}) and not fs.isdir(root):
            raise _missing(fs, location, root)
    entries: list[FileEntry] = []
    prefix = root.rstrip("/") + "/"
    for path, info in files.items():
        relative = path[len(prefix) :] if path.startswith(prefix) else PurePosixPath(path).name
        if not _matches(relative, include) or _matches(relative, exclude or []):
            continue
        etag = info.get("ETag") or info.get("etag")
        entries.append(
            FileEntry(
                url=_join(location, relative),
                relative_path=relative,
                size=int(info.get("size") or 0),
                mtime=_mtime(info),
                etag=str(etag).strip('"') if etag else None,
            )
        )
    return sorted(entries, key=lambda e: e.relative_path)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    try:
        with failures("read", url):
            return bytes(fs.cat_file(path))
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            raise StorageError(f"file not found: {url}") from exc.__cause__
        raise


def read_head(url: str, size: int) -> bytes:
    """The first `size` bytes of a file (all of it if shorter): one ranged GET on S3."""
    fs, path = filesystem(url)
    with failures("read", url):
        return bytes(fs.cat_file(path, start=0, end=size))


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """A local path for `url`: the file itself when local, else a temporary download.

    SKDH's readers are C code that need a real file on disk. The download is removed
    when the block ends.
    """
    if is_local(url):
        yield Path(url.removeprefix("file://"))
        return
    fs, path = filesystem(url)
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-") as tmp:
        target = Path(tmp) / PurePosixPath(path).name
        with failures("download", url):
            fs.get_file(path, str(target))
        yield target


def publish_folder(local_folder: Path, destination: str) -> None:
    """Make a finished local folder visible at `destination` in one step.

    Locally this is a rename of a fully written sibling folder, so a reader sees
    all of it or nothing. Object stores have no rename: every file is uploaded
    first and the `_SUCCESS` marker last; readers only trust folders that have it.
    """
    marker = local_folder / SUCCESS_MARKER
    marker.write_text("")
    fs, path = filesystem(destination)
    with failures("write results to", destination):
        if is_local(destination):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy beside the target (same filesystem), then one rename makes it visible.
            staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            shutil.copytree(local_folder, staging)
            os.replace(staging, target)
        else:
            files = sorted(p for p in local_folder.rglob("*") if p.is_file() and p.name != SUCCESS_MARKER)
            for file in files:
                fs.put_file(str(file), _join(path, file.relative_to(local_folder).as_posix()))
            fs.put_file(str(marker), _join(path, SUCCESS_MARKER))


def replace_folder(local_folder: Path, destination: str) -> None:
    """Make `destination` hold exactly the files of `local_folder`, each replaced atomically.

    Each file is swapped in whole (rename locally, one PUT on object stores), so a
    reader sees either the old or the new version of a file, never a partial one.
    """
    fs, root = filesystem(destination)
    names = {p.name for p in local_folder.iterdir() if p.is_file()}
    with failures("write", destination):
        if is_local(destination):
            fs.makedirs(root, exist_ok=True)
        # Marker files (leading "_") go last: they vouch for everything before them.
        for name in sorted(names, key=lambda n: (n.startswith("_"), n)):
            if is_local(destination):
                temporary = Path(root) / f".{name}.{uuid.uuid4().hex}.tmp"
                shutil.copyfile(local_folder / name, temporary)
                os.replace(temporary, Path(root) / name)
            else:
                fs.put_file(str(local_folder / name), _join(root, name))
        fs.invalidate_cache(root)
        for path in fs.ls(root, detail=False):
            name = PurePosixPath(path).name
            if name not in names and not name.startswith("."):
                fs.rm(path)


def write_atomic(url: str, data: bytes) -> None:
    """Replace the file at `url` in one step: a reader sees the old bytes or the new ones."""
    fs, path = filesystem(url)
    with failures("write", url):
        if is_local(url):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            temporary.write_bytes(data)
            os.replace(temporary, target)
        else:
            fs.pipe_file(path, data)  # one PUT: S3 replaces an object whole


def remove(url: str) -> None:
    """Delete one file (gone already: nothing to do)."""
    fs, path = filesystem(url)
    with failures("delete", url), contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def remove_folder(url: str) -> None:
    """Delete a folder and everything in it (gone already: nothing to do)."""
    fs, path = filesystem(url)
    with failures("delete", url), contextlib.suppress(FileNotFoundError):
        if is_local(url):
            shutil.rmtree(path)
        else:
            fs.rm(path, recursive=True)
        fs.invalidate_cache(path)
