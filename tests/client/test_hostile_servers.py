"""A caller is safe from its server: credit, size and error limits (issue 13, item 5)."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Iterator

import gevent
import pytest

from django_zrpc import RPCClient
from django_zrpc.client.gevent.connection import MAX_ERROR_TEXT
from django_zrpc.exceptions import LostRemote, RemoteError
from tests.conftest import ROOT, free_port


class HostileServer:
    """tests/hostile_server.py in a process of its own, and every event name it received."""

    def __init__(self, mode: str) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, "tests/hostile_server.py", self.endpoint.rsplit(":", 1)[1], mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> list[str]:
        """Kill the server; return the names of the events it received."""
        self.proc.kill()
        output, _ = self.proc.communicate(timeout=10)
        return [line.removeprefix("got ") for line in output.splitlines()]


@pytest.fixture
def hostile() -> Iterator:
    started: list[HostileServer] = []

    def start(mode: str) -> HostileServer:
        started.append(HostileServer(mode))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_hostile_server_cannot_grow_its_caller_or_stop_its_other_calls(hostile, server):
    flood, huge, long_error = hostile("flood"), hostile("huge"), hostile("long_error")
    clients = [RPCClient(s.endpoint, timeout=10) for s in (flood, huge, long_error)]
    healthy = RPCClient(server.endpoint, timeout=10)
    try:
        for client in clients:
            assert client.echo(1) == 1  # connected
        gc.collect()
        before = rss_mb()
        # Calls to a healthy server go on all the while.
        echoes = gevent.spawn(lambda: [healthy.echo(n) for n in range(300)])
        started = time.monotonic()

        stream = clients[0].stream()
        assert next(stream) == 0

        def read_slowly() -> None:
            # A reader slower than the flood: what arrives past the credit it
            # granted is refused. (One that keeps up grants as it reads, and
            # holds no more than the credit all the same.)
            for _item in stream:
                gevent.sleep(0.001)

        with pytest.raises(RemoteError, match="past the credit this client granted") as flooded:
            read_slowly()
        assert flooded.value.name == "ProtocolError"

        with pytest.raises(LostRemote, match="closed while huge was in flight"):
            clients[1].huge()

        with pytest.raises(RemoteError) as error:
            clients[2].long_error()
        assert len(error.value.msg) < MAX_ERROR_TEXT + 100
        assert error.value.msg.endswith(f"[{10 * 1024 * 1024 - MAX_ERROR_TEXT} more characters]")

        assert time.monotonic() - started < 10  # each within its timeout
        assert echoes.get(timeout=10) == list(range(300))
        gc.collect()
        assert rss_mb() - before < 50
    finally:
        for client in [*clients, healthy]:
            client.close()


def test_closing_a_stream_of_a_stock_server_sends_it_nothing_new(hostile):
    plain = hostile("plain_stream")
    client = RPCClient(plain.endpoint, timeout=10)
    try:
        stream = client.count()
        assert next(stream) == 0
        stream.close()
        assert client.echo("after") == "after"  # the connection goes on
    finally:
        client.close()
    received = plain.stop()
    assert received == ["count", "echo"]  # no _zrpc_cancel
