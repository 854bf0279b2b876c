"""RPCClient: the pooled client, against real runrpc processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import gevent
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_zrpc import RPCClient, clients, default_client
from django_zrpc.checks import check_settings
from django_zrpc.exceptions import (
    LostRemote,
    PoolExhausted,
    RemoteError,
    ServerUnavailable,
    TimeoutExpired,
    ZRPCConfigurationError,
)
from tests.conftest import free_port, slowest_failure


def established_to(port: int) -> int:
    """TCP connections from this machine to ``port`` that are established now."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def settle_established_to(port: int, count: int, timeout: float = 5.0) -> int:
    """Wait until ``count`` connections to ``port`` are established; return how many are.

    The module's tests share one server: connections that earlier tests closed
    can take a moment to leave the table.
    """
    deadline = time.monotonic() + timeout
    while (established := established_to(port)) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    return established


def test_calls_errors_and_streams(server):
    with RPCClient(server.endpoint, timeout=10) as client:
        assert client.echo(1) == 1
        assert client("echo", "x") == "x"
        with pytest.raises(RemoteError) as caught:
            client.fail("boom")
        assert (caught.value.name, caught.value.msg) == ("ValueError", "boom")
        assert [t["id"] for t in client.ticket_list(120)] == list(range(1, 121))
        assert client.connections() == 1  # one connection served every call


def test_fifty_greenlets_share_a_pool_of_five_connections_one_call_each(server):
    assert settle_established_to(server.port, 0) == 0  # none left by earlier tests
    peak = 0
    with RPCClient(server.endpoint, timeout=10, pool_size=5, calls_per_connection=1) as client:

        def calls(index: int) -> list:
            return [client.echo([index, n]) for n in range(20)]

        def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, established_to(server.port))
                gevent.sleep(0.01)

        watcher = gevent.spawn(watch)
        workers = [gevent.spawn(calls, i) for i in range(50)]
        gevent.joinall(workers, timeout=60, raise_error=True)
        watcher.kill()
        assert client.connections() == 5
    assert [w.value for w in workers] == [[[i, n] for n in range(20)] for i in range(50)]
    assert 1 <= peak <= 5


def test_sixty_four_greenlets_spread_over_the_pools_ten_connections(server):
    with RPCClient(server.endpoint, timeout=10) as client:
        workers = [
            gevent.spawn(lambda i=i: [client.echo([i, n]) for n in range(20)]) for i in range(64)
        ]
        gevent.joinall(workers, timeout=60, raise_error=True)
        # Spread over POOL_SIZE (10) connections, so over the processes behind
        # one address (runrpc --workers); about 6 calls share each.
        assert client.connections() == 10
        assert settle_established_to(server.port, 10) == 10
    assert [w.value for w in workers] == [[[i, n] for n in range(20)] for i in range(64)]


def test_calls_ride_one_connection_to_one_process_however_many_the_pool_holds(server):
    with RPCClient(server.endpoint, timeout=10) as client:
        # A burst opens the pool's ten connections, all to the one process.
        gevent.joinall([gevent.spawn(client.sleep, 0.2) for _ in range(64)], raise_error=True)
        pool = client._state().pools[server.endpoint]
        assert pool.connections == 10
        sleepers = [gevent.spawn(client.sleep, 0.5) for _ in range(64)]
        gevent.sleep(0.2)
        carrying = [count for count in pool.lending.calls.values() if count]
        gevent.joinall(sleepers, timeout=30, raise_error=True)
        # Calls in flight on one socket go out and come back in batches;
        # spread over ten sockets to the same process they cost more CPU on
        # both sides, for no other process to serve them.
        assert carrying == [64]
        assert client.connections() == 10  # the others wait, lent once it is full


def test_calls_share_connections_up_to_calls_per_connection(server):
    with RPCClient(
        server.endpoint, timeout=10, pool_size=2, calls_per_connection=3, pool_timeout=0.2
    ) as client:
        sleepers = [gevent.spawn(client.sleep, 1) for _ in range(6)]
        gevent.sleep(0.3)
        with pytest.raises(PoolExhausted):
            client.echo("a seventh call")  # 2 connections x 3 calls are taken
        gevent.joinall(sleepers, timeout=30, raise_error=True)
        assert client.connections() == 2


def test_eight_threads_without_monkey_patching(server):
    from gevent import monkey

    assert not monkey.is_module_patched("threading")
    client = RPCClient(server.endpoint, timeout=10, pool_size=2)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = [client.echo([index, n]) for n in range(50)]
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == {i: [[i, n] for n in range(50)] for i in range(8)}
    client.close()


def test_a_client_used_before_fork_works_in_the_child(server):
    client = RPCClient(server.endpoint, timeout=10)
    assert client.echo("parent") == "parent"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.write(write, repr(client.echo("child")).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 100).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == "'child'"
    assert client.echo("parent again") == "parent again"
    client.close()


def test_calls_to_nothing_each_fail_within_their_timeout_and_keep_no_connection():
    # The core client's own test makes 1,100 such calls on one socket (zerorpc #236).
    with RPCClient(f"tcp://127.0.0.1:{free_port()}", timeout=0.005, pool_size=2) as client:
        slowest = slowest_failure(lambda: client.echo(1), ServerUnavailable, 50)
        assert client.connections() == 0  # each failed connection was discarded
    assert slowest < 0.5


def test_server_killed_mid_call_then_restarted(start_server):
    port = free_port()
    server = start_server("--heartbeat", "1", port=port)
    with RPCClient(server.endpoint, timeout=10, heartbeat=1) as client:
        assert client.echo(1) == 1
        call = gevent.spawn(client.sleep, 30)
        gevent.sleep(0.5)
        server.proc.send_signal(signal.SIGKILL)
        with pytest.raises(LostRemote):
            call.get(timeout=10)
        assert client.connections() == 0  # the connection that lost its server is gone
        start_server("--heartbeat", "1", port=port)
        assert client.echo("back") == "back"  # no restart of this process needed


def test_calls_spread_over_endpoints_and_avoid_one_that_is_down(server, start_server):
    first, second = server, start_server()
    dead = f"tcp://127.0.0.1:{free_port()}"
    endpoints = [first.endpoint, second.endpoint, dead]
    with RPCClient(endpoints, timeout=0.5, down_for=60) as client:
        pids = set()
        failures = 0
        for _ in range(30):
            try:
                pids.add(client.server_pid())
            except ServerUnavailable:
                failures += 1
        assert failures == 1  # the dead endpoint, once; then avoided
        assert pids == {first.proc.pid, second.proc.pid}


def test_an_abandoned_stream_gives_its_connection_back(server):
    with RPCClient(
        server.endpoint, timeout=10, pool_size=1, calls_per_connection=1, pool_timeout=1
    ) as client:
        stream = client.count_up(1000, 0.01)
        assert next(stream) == 0
        with pytest.raises(PoolExhausted, match="All 1 connections"):
            client.echo(1)  # the stream still holds the only connection
        del stream
        assert client.echo(2) == 2


def test_a_timed_out_call_leaves_its_connection_in_the_pool(server):
    with RPCClient(server.endpoint, timeout=0.5) as client:
        with pytest.raises(TimeoutExpired):
            client.sleep(1)
        # A slow function says nothing about the connection: it stays, and
        # the late reply, when it comes, is dropped by its message id.
        assert client.connections() == 1
        gevent.sleep(1)
        assert client.echo(3) == 3
        assert client.connections() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoints": "localhost:4242"}, "is not an endpoint"),
        ({"endpoints": []}, "non-empty list"),
        ({"endpoints": "tcp://127.0.0.1:4242", "pool_size": 0}, "pool_size must be"),
        ({"endpoints": "tcp://127.0.0.1:4242", "timeout": 0}, "timeout must be"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RPCClient(**kwargs)


def test_named_clients_from_settings(server):
    config = {"default": {"ENDPOINTS": [server.endpoint], "TIMEOUT": 5, "POOL_SIZE": 2}}
    with override_settings(ZRPC_CLIENTS=config):
        assert clients["default"].echo("named") == "named"
        assert clients["default"] is clients["default"]
        assert default_client.echo("shortcut") == "shortcut"
        assert default_client("echo", 1) == 1
        with pytest.raises(ZRPCConfigurationError, match="No RPC client named 'other'"):
            clients["other"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"default": {"ENDPOINTS": "nope"}}, "is not an endpoint"),
        ({"default": {"ENDPOINTS": ["tcp://127.0.0.1:1"], "POOL_SIZE": 0}}, "POOL_SIZE"),
        ({"default": {"ENDPOINTS": ["tcp://127.0.0.1:1"], "TIMEOUT": "5"}}, "TIMEOUT"),
        ({"default": {"ENDPOINTS": ["tcp://127.0.0.1:1"], "TIMOUT": 5}}, "unknown keys"),
        ({"default": "tcp://127.0.0.1:1"}, "must be a dict"),
        (["tcp://127.0.0.1:1"], "must be a dict of named clients"),
    ],
)
def test_bad_client_settings_are_check_errors(config, message):
    with override_settings(ZRPC_CLIENTS=config):
        errors = check_settings()
        assert [e.id for e in errors] == ["django_zrpc.E008"]
        assert message in errors[0].msg
        with pytest.raises(SystemCheckError, match=r"django_zrpc\.E008"):
            call_command("check")


def test_threads_that_end_leave_no_threads_or_sockets_behind(server):
    import gc

    def os_threads() -> int:
        return len(os.listdir("/proc/self/task"))

    client = RPCClient(server.endpoint, timeout=10)
    assert client.echo("warm") == "warm"  # this thread's pool, and the shared context
    threads_before = os_threads()
    for batch in range(4):
        workers = [threading.Thread(target=client.echo, args=(f"{batch}-{i}",)) for i in range(5)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
    gc.collect()
    # 20 threads each made a pool and a connection, then ended: no ZeroMQ
    # context (two I/O threads each) and no connection of theirs is left.
    assert os_threads() - threads_before <= 2
    assert settle_established_to(server.port, 1) == 1  # this thread's own
    client.close()
