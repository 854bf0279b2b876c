"""CPU-bound functions: blocking=True keeps the loop turning; without it, stalls are logged."""

from __future__ import annotations

import time

import gevent
import pytest

from django_zrpc.exceptions import ZRPCConfigurationError
from django_zrpc.registry import Registry


def test_a_blocking_function_leaves_heartbeats_and_pings_flowing(server):
    mark = server.mark()
    with server.client(timeout=20, heartbeat=1) as client:
        burning = gevent.spawn(client.burn_cpu, 4)
        slowest = 0.0
        while not burning.ready():
            started = time.monotonic()
            assert client.echo("ping") == "ping"
            slowest = max(slowest, time.monotonic() - started)
            gevent.sleep(0.2)
        assert burning.get() is True  # and no LostRemote with a 1 s heartbeat
    assert slowest < 1.0, f"a ping waited {slowest:.2f}s while a blocking call ran"
    assert "has not turned" not in server.output_since(mark)


def test_the_orm_works_in_a_blocking_function(server):
    with server.client(timeout=10) as client:
        assert client.count_tickets_blocking() == 300
        assert client._zerorpc_args("burn_cpu") == [["seconds"], None, None, None]


def test_a_stall_on_the_loop_is_logged_with_the_function_name(server):
    mark = server.mark()
    with server.client(timeout=10) as client:
        assert client.burn_cpu_inline(2) is True
    server.wait_for("held by rpc burn_cpu_inline", since=mark)


def test_blocking_streams_are_refused():
    with pytest.raises(ZRPCConfigurationError, match="blocking=True is not supported for streams"):
        Registry().register(stream=True, blocking=True)
