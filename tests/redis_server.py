"""A real ``redis-server`` for the tests that need one: started on a free 127.0.0.1 port with
no persistence, waited for with a bounded loop, stopped after.

Import the fixture into a test module (``from tests.redis_server import redis_url_fixture``)
and take ``redis_url`` as a parameter. Without ``redis-server`` on PATH the tests skip, unless
``CI`` is set: there a missing server is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

STARTUP_TIMEOUT = 10.0  # seconds; a loaded machine may be slow to start a process


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running_redis_server(executable: str) -> Iterator[str]:
    """A ``redis-server`` on loopback for the duration of the block; yields its ``redis://`` URL."""
    with tempfile.TemporaryDirectory(prefix="unenroll-redis-") as workdir:
        for _attempt in range(3):  # the free port may be taken between the probe and the bind
            port = _free_port()
            server = subprocess.Popen(
                [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", workdir],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while server.poll() is None and time.monotonic() < deadline and not _answers_ping(port):
                time.sleep(0.02)
            if server.poll() is None and _answers_ping(port):
                break
            server.kill()
            server.wait()
        else:
            raise RuntimeError("redis-server did not start on a loopback port")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module", name="redis_url")
def redis_url_fixture() -> Iterator[str]:
    """The URL of a fresh ``redis-server`` shared by the tests of one module."""
    executable = shutil.which("redis-server")
    if executable is None:
        if _in_ci():
            pytest.fail("redis-server is not installed; .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with running_redis_server(executable) as url:
        yield url
