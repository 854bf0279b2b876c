"""RPCClient retries what never ran, and what may have run only when told it is idempotent."""

from __future__ import annotations

import logging
import signal
import time

import gevent
import pytest

from django_zrpc import RPCClient
from django_zrpc.exceptions import LostRemote, RemoteError
from tests.conftest import free_port


def test_a_call_refused_as_busy_is_retried_until_a_worker_is_free(start_server, caplog):
    server = start_server("--concurrency", "1", "--backlog", "0")
    client = RPCClient(server.endpoint, timeout=10)
    try:
        busy = gevent.spawn(client.sleep, 1)
        gevent.sleep(0.3)
        with caplog.at_level(logging.INFO, logger="django_zrpc.client"):
            assert client.echo("after") == "after"
        assert busy.get(timeout=5) == 1
    finally:
        client.close()
    assert "Retrying rpc echo (attempt 2) after RemoteError" in caplog.text
    assert "ServerBusy" in caplog.text


def test_a_server_stopping_under_load_fails_no_call_of_a_client_with_two(start_server):
    stopping = start_server("--graceful-timeout", "2")
    staying = start_server()
    client = RPCClient([stopping.endpoint, staying.endpoint], timeout=10)
    failures: list[BaseException] = []
    results: list[bool] = []

    def caller(number: int) -> None:
        for call in range(200):
            value = [number, call]
            try:
                results.append(client.echo(value) == value)
            except Exception as err:
                failures.append(err)
            gevent.sleep(0.005)

    try:
        callers = [gevent.spawn(caller, number) for number in range(16)]
        gevent.sleep(0.3)
        stopping.proc.send_signal(signal.SIGTERM)
        gevent.joinall(callers, timeout=60, raise_error=True)
        assert stopping.wait_stopped() == 0
    finally:
        client.close()
    assert failures == []
    assert len(results) == 16 * 200
    assert all(results)  # every call got its own value back


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_call_lost_with_its_server_is_retried_only_when_idempotent(start_server, idempotent):
    doomed, other = start_server(), start_server()
    client = RPCClient([doomed.endpoint, other.endpoint], timeout=10)
    try:
        call = gevent.spawn(client.call, "sleep", 1, idempotent=idempotent)  # to doomed first
        gevent.sleep(0.5)
        doomed.stop(signal.SIGKILL)
        if idempotent:
            assert call.get(timeout=10) == 1  # sent again, to the other server
        else:
            with pytest.raises(LostRemote):
                call.get(timeout=10)  # it may have run: not sent again
    finally:
        client.close()


def test_an_endpoint_nobody_listens_on_is_given_up_after_connect_timeout(server):
    dead = f"tcp://127.0.0.1:{free_port()}"
    client = RPCClient([dead, server.endpoint], timeout=10, connect_timeout=0.5)
    try:
        started = time.monotonic()
        assert client.echo("delivered") == "delivered"  # to dead first, then again
        assert 0.5 <= time.monotonic() - started < 2
    finally:
        client.close()


def test_a_functions_own_exception_named_like_a_refusal_is_not_retried():
    from django_zrpc.registry import Registry
    from django_zrpc.testing import LiveRPCServer

    class ServerBusy(Exception):
        pass

    runs = []
    registry = Registry()

    @registry.register()
    def book() -> None:
        runs.append(1)
        raise ServerBusy("the function's own")

    with LiveRPCServer(registry) as live:
        client = live.client()
        try:
            with pytest.raises(RemoteError) as raised:
                client.book()
        finally:
            client.close()
    assert raised.value.name == "ServerBusy"
    assert runs == [1]  # it ran: not sent again
