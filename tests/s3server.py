"""A real S3 HTTP endpoint on loopback for the tests: moto's server in its own process.

Import the fixtures into conftest.py (`from tests.s3server import s3_bucket, s3_endpoint`).
`s3_endpoint` points the usual AWS environment variables at the server for the rest of
the session, so everything started afterwards (CLI runs, worker processes) talks to it
too. Nothing patches a client: requests go over HTTP to a separate process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SETTINGS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# The developer's own AWS set-up must not reach a test (nor a test reach the real AWS).
CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with code {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:  # refused while starting (URLError is an OSError)
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not answer at {url} within {timeout:.0f} s:\n{log.read_text()}")


@contextlib.contextmanager
def moto_server(folder: Path) -> Iterator[str]:
    """moto's S3 server in its own process on a free loopback port; yields its URL.

    Its log (and the request recording, see `recorded_requests`) go to `folder`.
    """
    log = folder / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "MOTO_RECORDER_FILEPATH": str(folder / "recording.jsonl")}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        _wait_until_up(url, process, log)
        yield url
    finally:
        stop_process(process, timeout=10)


@contextlib.contextmanager
def aws_environment(endpoint: str) -> Iterator[None]:
    """Point the usual AWS_* variables at `endpoint` (test credentials) inside the block."""
    names = (*SETTINGS, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", *CLEARED)
    previous = {name: os.environ.get(name) for name in names}
    for name in CLEARED:
        os.environ.pop(name, None)
    os.environ.update(SETTINGS, AWS_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL_S3=endpoint)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; the URL, with AWS_* set to use it."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url, aws_environment(url):
        yield url


def _moto_api(endpoint: str, action: str) -> str:
    request = urllib.request.Request(f"{endpoint}/moto-api/recorder/{action}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


@contextlib.contextmanager
def recorded_requests(endpoint: str) -> Iterator[list[tuple[str, str]]]:
    """(method, path) of every request the server received inside the block, in arrival order.

    Uses moto's request recorder on the server side, so it shows what really went over HTTP.
    """
    requests: list[tuple[str, str]] = []
    _moto_api(endpoint, "reset-recording")
    _moto_api(endpoint, "start-recording")
    try:
        yield requests
    finally:
        _moto_api(endpoint, "stop-recording")
        for line in _moto_api(endpoint, "download-recording").splitlines():
            if line.strip():
                entry = json.loads(line)
                requests.append((entry["method"], urllib.parse.urlsplit(entry["url"]).path))


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the session's S3 server: `s3://<name>`."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"
