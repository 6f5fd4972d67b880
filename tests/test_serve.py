"""`biomarkerflow serve` and `tokens` as a user runs them: a real server process on a loopback
port, tokens made on the command line, a revoked token refused at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.test_first_hour import bmf


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_tokens_made_on_the_command_line_open_a_served_api(tmp_path: Path) -> None:
    created = bmf("tokens", "create", "--name", "alice", "--scope", "operate", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("bmf_") and "shown only this once" in created.stderr
    again = bmf("tokens", "create", "--name", "alice", cwd=tmp_path)
    assert again.returncode == 2 and "a token named 'alice' exists already" in again.stderr
    listed = json.loads(bmf("tokens", "list", "--json", cwd=tmp_path).stdout)
    assert [(t["name"], t["scope"]) for t in listed] == [("alice", "operate")]
    assert token not in json.dumps(listed) and listed[0]["prefix"] == token[:10]

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "biomarkerflow.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/healthz", server)
        assert httpx.get(f"{base}/api/v1/studies").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/studies", headers=auth).json() == []
        asked = httpx.post(f"{base}/api/v1/work", json={"kind": "retrain"}, headers=auth)
        assert asked.status_code == 202 and asked.json()["watched_here"] is False
        assert bmf("tokens", "revoke", "alice", cwd=tmp_path).returncode == 0
        assert httpx.get(f"{base}/api/v1/studies", headers=auth).status_code == 401
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}" in out, err


def _wait_until_up(url: str, server: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited: {server.communicate()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")
