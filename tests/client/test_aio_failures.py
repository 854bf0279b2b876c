"""AsyncRPCClient when things go wrong (issue 16): cancellation, dead and silent servers,
hostile servers, CURVE refusals, retries over endpoints, the pool's bounds, event loops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

import pytest

from django_zrpc import AsyncRPCClient, HandshakeFailed, PoolExhausted, ServerUnavailable
from django_zrpc.client.aio.connection import AsyncConnection
from django_zrpc.exceptions import LostRemote, RemoteError
from tests.client.test_hostile_servers import HostileServer
from tests.client.test_rpcclient import established_to
from tests.conftest import free_port
from tests.transport.test_curve import Keys


async def wait_for_log(server, text: str, since: int, timeout: float) -> None:
    """Wait for ``text`` in the server's output without blocking this loop."""
    await asyncio.to_thread(server.wait_for, text, timeout, since)


# -- cancellation -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_task_stops_its_call_on_the_server(start_server):
    # One worker and no backlog: until the cancelled call's worker is free,
    # any other call is refused as busy.
    server = start_server("--concurrency", "1", "--backlog", "0")
    async with AsyncRPCClient(server.endpoint, timeout=10) as client:
        assert await client.echo("up") == "up"
        mark = server.mark()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await client.sleep(30)
        cancelled = time.monotonic()
        await wait_for_log(server, "rpc sleep stopped: its caller cancelled it", mark, 2)
        assert await client.call("echo", "free", timeout=1) == "free"
        assert time.monotonic() - cancelled < 1.5
        assert "ServerBusy" not in server.output_since(mark)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["aclose", "break"])
async def test_an_abandoned_stream_frees_its_worker(start_server, how):
    server = start_server("--concurrency", "1", "--backlog", "0")
    async with AsyncRPCClient(server.endpoint, timeout=10) as client:
        mark = server.mark()
        stream = await client.count_up(10**9)
        if how == "aclose":
            assert await anext(stream) == 0
            await stream.aclose()
        else:
            async for item in stream:
                assert item == 0
                break
            del stream  # as when the view that read it returns
        await wait_for_log(server, "rpc count_up stopped: its caller cancelled it", mark, 2)
        assert await client.echo("free") == "free"
        assert client.connections() == 1


# -- dead, killed and silent servers ----------------------------------------------------


@pytest.mark.asyncio
async def test_a_dead_endpoint_fails_fast_with_server_unavailable():
    dead = f"tcp://127.0.0.1:{free_port()}"
    # One connection: it gives up at connect_timeout, not at the call's timeout.
    connection = AsyncConnection(dead, timeout=10, connect_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"no connection to {dead} could be made"):
        await connection.echo(1)
    assert 0.3 <= time.monotonic() - started < 0.8
    connection.close()
    # The client tries again (the call never ran) until its own timeout, no later.
    async with AsyncRPCClient(dead, timeout=1.5, connect_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable):
            await client.echo(1)
        assert 1.2 <= time.monotonic() - started < 2.2


@pytest.mark.asyncio
async def test_calls_in_flight_fail_fast_when_the_server_is_killed(start_server):
    server = start_server("--heartbeat", "5")
    async with AsyncRPCClient(server.endpoint, timeout=30) as client:
        assert await client.echo(1) == 1
        calls = [asyncio.ensure_future(client.sleep(30)) for _ in range(8)]
        await asyncio.sleep(0.5)
        server.stop(signal.SIGKILL)
        killed = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(result, LostRemote) for result in results), results
        assert "closed while sleep was in flight" in str(results[0])
        assert time.monotonic() - killed < 1.5


@pytest.mark.asyncio
async def test_a_silent_server_is_lost_after_two_heartbeats(start_server):
    server = start_server("--heartbeat", "1")
    async with AsyncRPCClient(server.endpoint, timeout=30, heartbeat=1) as client:
        assert await client.sleep(2.5) == 2.5  # heartbeats kept it alive
        call = asyncio.ensure_future(client.sleep(10))
        await asyncio.sleep(1.2)  # both sides' beats are known by now
        server.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            with pytest.raises(LostRemote, match="without a heartbeat"):
                await call
            # Two periods of 1 s from the last word heard, up to 1 s before the stop.
            assert 0.9 < time.monotonic() - stopped < 4
        finally:
            server.proc.send_signal(signal.SIGCONT)


@pytest.mark.asyncio
async def test_stream_items_past_the_credit_granted_end_the_stream():
    flood = HostileServer("flood")
    try:
        async with AsyncRPCClient(flood.endpoint, timeout=10) as client:
            assert await client.echo("up") == "up"
            stream = await client.call("items")

            async def read_all() -> None:
                async for _ in stream:
                    await asyncio.sleep(0)

            with pytest.raises(RemoteError, match="past the credit this client granted") as err:
                await read_all()
            assert err.value.name == "ProtocolError"
            assert await client.echo("still up") == "still up"
    finally:
        flood.stop()


# -- CURVE ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_curve_admits_its_key_and_refuses_another_at_once(start_server, tmp_path):
    keys = Keys(tmp_path)
    server = start_server(*keys.server_args())
    admitted = AsyncRPCClient(
        server.endpoint,
        timeout=20,
        curve_secret=keys.secret("web"),
        curve_server=keys.server_public,
    )
    intruder = AsyncRPCClient(
        server.endpoint,
        timeout=20,
        curve_secret=keys.secret("intruder"),
        curve_server=keys.server_public,
    )
    try:
        assert (await admitted.call_context())["client_key"] == "web"
        started = time.monotonic()
        with pytest.raises(HandshakeFailed, match="refused this client's CURVE key"):
            await intruder.echo(1)
        assert time.monotonic() - started < 5
    finally:
        await admitted.aclose()
        await intruder.aclose()


# -- several endpoints, retries -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dead_endpoint_is_given_up_after_connect_timeout_for_a_live_one(server):
    dead = f"tcp://127.0.0.1:{free_port()}"
    async with AsyncRPCClient([dead, server.endpoint], timeout=10, connect_timeout=0.5) as client:
        started = time.monotonic()
        results = [await client.echo(n) for n in range(4)]
        assert results == [0, 1, 2, 3]
        # At most one call waited for the dead endpoint; it is then avoided.
        assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_a_call_refused_as_busy_is_retried_until_a_worker_is_free(start_server, caplog):
    server = start_server("--concurrency", "1", "--backlog", "0")
    async with AsyncRPCClient(server.endpoint, timeout=10) as client:
        busy = asyncio.ensure_future(client.sleep(1))
        await asyncio.sleep(0.3)
        with caplog.at_level(logging.INFO, logger="django_zrpc.client"):
            assert await client.echo("after") == "after"
        assert await busy == 1
    assert "Retrying rpc echo (attempt 2) after RemoteError" in caplog.text
    assert "ServerBusy" in caplog.text


# -- the pool's bounds -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_calls_past_the_pools_bounds_wait_then_give_up(server):
    async with AsyncRPCClient(
        server.endpoint, timeout=10, pool_size=1, calls_per_connection=2, pool_timeout=0.3
    ) as client:
        first = time.monotonic()
        sleepers = [asyncio.ensure_future(client.sleep(1)) for _ in range(2)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(PoolExhausted, match="All 1 connections"):
            await client.echo(1)
        assert 0.3 <= time.monotonic() - started < 0.7
        # A caller that waits within pool_timeout gets the first place freed.
        await asyncio.sleep(first + 0.85 - time.monotonic())
        assert await client.call("echo", 2) == 2
        assert await asyncio.gather(*sleepers) == [1, 1]
        assert client.connections() == 1


# -- event loops ---------------------------------------------------------------------------


def test_each_event_loop_has_its_own_connections_closed_with_it(server):
    client = AsyncRPCClient(server.endpoint, timeout=10)
    seen: list[int] = []

    # Kept, and so their pools: only the loops' shutdown can close the sockets.
    loops: list[asyncio.AbstractEventLoop] = []

    async def use() -> None:
        assert await client.echo("loop") == "loop"
        seen.append(client.connections())
        loops.append(asyncio.get_running_loop())

    def two_runs() -> None:
        asyncio.run(use())
        asyncio.run(use())

    before = established_to(server.port)
    # Two loops one after the other, and one in another thread at the same time.
    other = threading.Thread(target=asyncio.run, args=(use(),))
    other.start()
    two_runs()
    other.join(10)
    assert seen == [1, 1, 1]
    client.close()  # outside any loop: those loops are gone, nothing left to close
    with pytest.raises(RuntimeError, match="is closed"):
        asyncio.run(client.echo("closed"))
    deadline = time.monotonic() + 5
    while established_to(server.port) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert established_to(server.port) <= before
