"""The wire core in-process: what is easier to see from inside than over a process boundary."""

from __future__ import annotations

import gevent
import pytest
import zerorpc

from django_zrpc.core.server import ServedFunction, Server


@pytest.fixture
def core():
    servers = []

    def make(**kwargs) -> tuple[Server, str]:
        functions = {
            "echo": ServedFunction(lambda x: x),
            "nap": ServedFunction(lambda s: gevent.sleep(s) or s),
        }
        server = Server(functions, heartbeat=1, **kwargs)
        endpoint = server.bind("tcp://127.0.0.1:0")
        servers.append((server, gevent.spawn(server.run)))
        return server, endpoint

    yield make
    for server, runner in servers:
        if not runner.dead:
            server.stop()
            runner.join(5)
        server.close()


def test_every_worker_runs_its_exit_callback_when_the_server_stops(core):
    exits = []
    server, endpoint = core(concurrency=3, on_worker_exit=lambda: exits.append(1))
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    try:
        assert client.echo("x") == "x"
    finally:
        client.close()
    server.stop()
    gevent.sleep(0.1)
    assert len(exits) == 3


def test_stop_ends_a_call_past_the_grace_period_with_an_error(core):
    server, endpoint = core(concurrency=2)
    client = zerorpc.Client(endpoint, timeout=10, heartbeat=1)
    try:
        napping = gevent.spawn(client.nap, 30)
        gevent.sleep(0.3)
        gevent.spawn(server.stop, 0.5)
        with pytest.raises(zerorpc.RemoteError) as caught:
            napping.get(timeout=5)
        assert caught.value.name == "ServerStopping"
    finally:
        client.close()
