"""Which versions of a package the index has: for the message when a pinned version does not exist.

uv says only that no solution was found; the scientist needs to know which versions they
could pin instead. The index is asked the way uv would ask it (the same environment
variables, PEP 691 JSON or PEP 503 HTML), and only after uv failed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

_VERSIONS_SHOWN = 5
_ANCHOR = re.compile(r"<a\s(?P<attributes>[^>]*)>(?P<text>[^<]+)</a>", re.IGNORECASE)
_INDEX_TIMEOUT_SECONDS = 20


def no_such_version(name: str, version: str) -> tuple[str, str]:
    """(reason, hint) for a pinned version the index does not have, naming versions it does have."""
    reason = f"{name} {version} does not exist on the package index"
    try:
        available = newest_versions(name)
    except OSError as exc:  # the index answered uv but not us: say what we know
        return reason, f"Look up the versions of {name} on the package index ({exc}), then pin one of them."
    if not available:
        return reason, f"The package index lists no installable version of {name}."
    return (
        f"{reason}; versions available include {', '.join(available)}",
        f"Pin one of these instead (in the study's pipeline.package or pipeline.constraints), "
        f"e.g. {name}=={available[0]}.",
    )


def newest_versions(name: str, count: int = _VERSIONS_SHOWN) -> list[str]:
    """The newest releases of `name` on the index uv uses, newest first.

    Final releases with a wheel for this Python and machine come first (a runtime installs the
    pinned package from a wheel only), then any final release, then pre-releases. Yanked files
    do not count. Raises OSError when no index could be read.
    """
    supported = set(sys_tags())
    releases: dict[Version, bool] = {}  # version -> has a wheel for this interpreter
    for filename, yanked in _index_files(name):
        parsed = _file_version(filename, supported)
        if parsed is not None and not yanked:
            releases[parsed[0]] = releases.get(parsed[0], False) or parsed[1]
    final = [v for v in releases if not (v.is_prerelease or v.is_devrelease)]
    for choice in ([v for v in final if releases[v]], final, list(releases)):
        if choice:
            return [str(v) for v in sorted(choice, reverse=True)[:count]]
    return []


def _index_files(name: str) -> list[tuple[str, bool]]:
    """(file name, yanked) for `name` from every index uv would ask; OSError if none answered."""
    indexes = _index_urls(os.environ)
    if not indexes:
        raise OSError("uv is set to work offline or without an index (UV_OFFLINE, UV_NO_INDEX)")
    files: list[tuple[str, bool]] = []
    errors: list[str] = []
    for index in indexes:
        try:
            files += _project_files(index, name)
        except OSError as exc:
            errors.append(str(exc))
    if errors and not files:
        raise OSError("; ".join(errors))
    return files


def _index_urls(env: Mapping[str, str]) -> list[str]:
    """The Simple-API indexes uv reads by its environment variables (uv.toml settings are not read)."""
    if env.get("UV_OFFLINE") or env.get("UV_NO_INDEX"):
        return []
    extra = [
        entry.split("=", 1)[-1] if "=" in entry.split("://", 1)[0] else entry
        for entry in env.get("UV_INDEX", "").split()
    ]
    extra += env.get("UV_EXTRA_INDEX_URL", "").split()
    default = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL") or "https://pypi.org/simple"
    return [url for url in (*extra, default) if url.startswith(("http://", "https://"))]


def _project_files(index: str, name: str) -> list[tuple[str, bool]]:
    """(file name, yanked) of every file `index` lists for project `name` (PEP 691 JSON or PEP 503 HTML)."""
    parts = urllib.parse.urlsplit(index.rstrip("/") + f"/{name}/")
    # Credentials in the URL (https://user:token@host/simple) go in a header; urllib cannot use them there.
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
        headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"},
    )
    if parts.username:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=_INDEX_TIMEOUT_SECONDS) as response:
            kind = response.headers.get_content_type()
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise OSError(f"{netloc} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise OSError(f"cannot reach {netloc}: {getattr(exc, 'reason', exc)}") from exc
    if kind.endswith("json"):
        try:
            return [(str(f["filename"]), bool(f.get("yanked"))) for f in json.loads(body)["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise OSError(f"{netloc} sent an unreadable project page") from exc
    return [(m["text"].strip(), "data-yanked" in m["attributes"]) for m in _ANCHOR.finditer(body)]


def _file_version(filename: str, supported: set[Tag]) -> tuple[Version, bool] | None:
    """(version, whether it is a wheel for this interpreter) of a distribution file, else None."""
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return version, not tags.isdisjoint(supported)
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1], False
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None
