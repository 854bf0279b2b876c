"""A redis-server of the test's own, on a free port: tests may stop and restart it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis


class RedisServer:
    """One ``redis-server`` process that keeps nothing on disk."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server on the PATH")
        self.host = host
        with socket.socket() as sock:  # conftest's free_port; conftest imports this module
            sock.bind((host, 0))
            self.port = sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, service: str) -> str:
        return f"redis://{self.host}:{self.port}/0?service={service}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", self.host, "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_server():
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
