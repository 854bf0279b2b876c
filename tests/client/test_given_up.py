"""Both clients alike: a call given up stops on the server; a nested call inherits the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import gevent
import pytest

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.context import CallContext, _current
from django_zrpc.exceptions import TimeoutExpired
from tests.client.test_hostile_servers import HostileServer


def run_gevent(endpoint: str, work: Callable[[Any], Any]) -> Any:
    with RPCClient(endpoint, timeout=10) as client:
        return work(client)


def run_aio(endpoint: str, work: Callable[[Any], Any]) -> Any:
    async def main() -> Any:
        async with AsyncRPCClient(endpoint, timeout=10) as client:
            return await work(client)

    return asyncio.run(main())


def give_up_gevent_timeout(client: RPCClient) -> None:
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.5):
            client.sleep(30)


def give_up_gevent_kill(client: RPCClient) -> None:
    caller = gevent.spawn(client.sleep, 30)
    gevent.sleep(0.5)
    caller.kill()
    assert isinstance(caller.value, gevent.GreenletExit)


async def give_up_aio(client: AsyncRPCClient) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.sleep(30)


@pytest.mark.parametrize(
    ("run", "give_up"),
    [
        (run_gevent, give_up_gevent_timeout),
        (run_gevent, give_up_gevent_kill),
        (run_aio, give_up_aio),
    ],
    ids=["gevent-timeout", "gevent-kill", "aio-cancel"],
)
def test_a_call_given_up_by_its_caller_stops_on_the_server(start_server, run, give_up):
    # One worker and no backlog: until the given-up call's worker is free,
    # any other call is refused as busy.
    server = start_server("--concurrency", "1", "--backlog", "0")
    stopped = "rpc sleep stopped: its caller cancelled it"

    def sync_work(client: Any) -> Any:
        assert client.echo("up") == "up"
        mark = server.mark()
        give_up(client)
        server.wait_for(stopped, 5, mark)
        return client.call("echo", "free", timeout=2)

    async def async_work(client: Any) -> Any:
        assert await client.echo("up") == "up"
        mark = server.mark()
        await give_up(client)
        await asyncio.to_thread(server.wait_for, stopped, 5, mark)
        return await client.call("echo", "free", timeout=2)

    # The connection stays open meanwhile: the server learns it from the
    # cancel, not from a connection that closed.
    mark = server.mark()
    assert run(server.endpoint, async_work if run is run_aio else sync_work) == "free"
    assert "ServerBusy" not in server.output_since(mark)
    assert "lost its caller" not in server.output_since(mark)


@pytest.mark.parametrize("run", [run_gevent, run_aio], ids=["gevent", "aio"])
def test_a_call_made_while_serving_one_waits_no_longer_than_its_caller(run):
    silent = HostileServer("silent")  # answers echo only
    # As inside an RPC function: the call being served has 1 s left.
    token = _current.set(CallContext("outer", deadline=time.monotonic() + 1.0))
    started = time.monotonic()
    try:

        def sync_work(client: Any) -> None:
            with pytest.raises(TimeoutExpired):
                client.call("never_answered", timeout=30)

        async def async_work(client: Any) -> None:
            with pytest.raises(TimeoutExpired):
                await client.call("never_answered", timeout=30)

        run(silent.endpoint, async_work if run is run_aio else sync_work)
    finally:
        _current.reset(token)
        silent.stop()
    assert 0.9 < time.monotonic() - started < 5


@pytest.mark.parametrize("run", [run_gevent, run_aio], ids=["gevent", "aio"])
def test_a_connection_lost_while_asking_what_the_server_reads_is_retried(run):
    # As when runrpc reloads on a changed file: the call itself was not sent
    # yet, so it never ran and goes again, once the server is back.
    restarting = HostileServer("drop_on_name")
    try:

        def sync_work(client: Any) -> Any:
            return client.echo(Decimal("1.5"))

        async def async_work(client: Any) -> Any:
            return await client.echo(Decimal("1.5"))

        # A server that is not django_zrpc's gets a Decimal as its text.
        assert run(restarting.endpoint, async_work if run is run_aio else sync_work) == "1.5"
    finally:
        events = restarting.stop()
    assert events.count("_zerorpc_name") == 2
