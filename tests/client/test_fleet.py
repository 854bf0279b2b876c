"""Clients that follow a fleet through Redis or DNS, balance across it, and ride out its changes.

Servers announce themselves in a redis-server of the test's own
(``runrpc --announce``); the load is 64 greenlets of one client process
calling ``server_pid``, so each answer says which instance served it.
``tests/client/test_fleet_hosts.py`` does the same across test hosts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.exceptions import LostRemote, ServerUnavailable
from tests.conftest import ROOT, free_port, subprocess_env
from tests.fleet_load import Load, wait_until

SERVICE = "tickets"


def announced(redis_server, start_server, *args: str, count: int = 1, **env: str):
    """Start ``count`` runrpc that announce themselves in ``redis_server``; wait until listed.

    Returns the server, or a list of ``count`` > 1. Waits with gevent's
    sleep, as every wait here does while a load runs: a blocking wait would
    stop the load's greenlets.
    """
    url = redis_server.url(SERVICE)
    servers = [
        start_server("--heartbeat", "1", "--announce", url, *args, wait=False, **env)
        for _ in range(count)
    ]
    listed = redis_server.client()
    for server in servers:
        key = f"zrpc:{SERVICE}:instance:{server.endpoint}"
        assert wait_until(lambda k=key: listed.get(k) == b"up", 30), server.output
    return servers if count > 1 else servers[0]


def printed(server, text: str, since: int, timeout: float = 5) -> bool:
    return wait_until(lambda: text in server.output_since(since), timeout)


def stop(server, signum: int = signal.SIGTERM) -> int | None:
    """Signal ``server`` and wait for it to end without blocking the load."""
    server.signal(signum)
    wait_until(lambda: server.proc.poll() is not None, 15)
    return server.proc.poll()


def pid_of(server) -> int:
    return server.proc.pid


def test_calls_spread_evenly_over_three_servers_and_a_new_one_gets_calls_at_once(
    redis_server, start_server
):
    servers = announced(redis_server, start_server, count=3)
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    # Paced below what the servers can take: saturated, each endpoint gets
    # calls as fast as it answers (fewest in flight), and on a CPU shared with
    # other tests one server answered 30% more than another. The spread of
    # equal servers is what is judged here, not the scheduler's.
    load = Load(client, callers=64, pause=0.01)
    try:
        load.run_for(2.0)
        shares = load.shares()
        assert set(shares) == {pid_of(s) for s in servers}
        mean = sum(shares.values()) / 3
        assert all(abs(count - mean) <= 0.15 * mean for count in shares.values()), shares

        newcomer = announced(redis_server, start_server)
        announced_at = time.monotonic()
        assert wait_until(lambda: load.first_answer_from(pid_of(newcomer)) is not None, 5)
        assert load.first_answer_from(pid_of(newcomer)) - announced_at < 5.0
    finally:
        load.stop()
        client.close()
    assert not load.failures, load.failures[:3]


def test_a_server_stopped_gracefully_under_load_fails_no_call(redis_server, start_server):
    leaving, staying = announced(redis_server, start_server, "--graceful-timeout", "3", count=2)
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    load = Load(client, callers=64)
    try:
        load.run_for(1.0)
        stopped_at = time.monotonic()
        assert stop(leaving) == 0
        load.run_for(1.0)
    finally:
        load.stop()
        client.close()
    assert not load.failures, load.failures[:3]
    assert load.shares(since=stopped_at + 1.5)[pid_of(leaving)] == 0
    assert load.shares(since=stopped_at + 0.5)[pid_of(staying)] > 0
    members = redis_server.client().smembers(f"zrpc:{SERVICE}:instances")
    assert members == {staying.endpoint.encode()}


def test_a_killed_server_fails_only_its_calls_in_flight(redis_server, start_server):
    killed, staying = announced(redis_server, start_server, count=2)
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    load = Load(client, callers=64)
    try:
        load.run_for(1.0)
        killed_at = time.monotonic()
        stop(killed, signal.SIGKILL)
        load.run_for(1.5)
    finally:
        load.stop()
        client.close()
    # At most the calls in flight failed (one per caller), soon after the kill.
    assert len(load.failures) <= 64
    for at, error in load.failures:
        assert isinstance(error, LostRemote | ServerUnavailable), error
        assert at - killed_at < 2.0
    later = load.shares(since=killed_at + 1.0)
    assert later[pid_of(staying)] > 0
    assert later[pid_of(killed)] == 0


def test_servers_and_clients_ride_out_a_redis_outage(
    redis_server, start_server, project_settings, caplog
):
    args, env = project_settings(ZRPC_ANNOUNCE_TTL=1.5)  # refreshed every 0.5 s
    servers = announced(redis_server, start_server, *args, count=2, **env)
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    load = Load(client, callers=16)
    caplog.set_level(logging.WARNING, logger="django_zrpc.discovery")
    try:
        load.run_for(0.5)
        marks = [server.mark() for server in servers]
        redis_server.stop()
        for server, mark in zip(servers, marks, strict=True):
            assert printed(server, "Cannot announce", mark), server.output_since(mark)
        assert wait_until(lambda: "is unreachable" in caplog.text, 5), caplog.text
        noticed = time.monotonic()
        load.run_for(0.5)
        assert set(load.shares(since=noticed)) == {pid_of(s) for s in servers}

        redis_server.start()  # empty: the servers announce themselves again
        for server, mark in zip(servers, marks, strict=True):
            assert printed(server, "again after", mark), server.output_since(mark)
        assert wait_until(lambda: "reachable again" in caplog.text, 5), caplog.text
        newcomer = announced(redis_server, start_server, *args, **env)
        assert wait_until(lambda: load.first_answer_from(pid_of(newcomer)) is not None, 5)
    finally:
        load.stop()
        client.close()
    assert not load.failures, load.failures[:3]


def test_a_client_that_starts_while_redis_is_down_fails_clearly_within_its_timeout():
    url = f"redis://127.0.0.1:{free_port()}/0?service={SERVICE}"
    client = RPCClient(url, timeout=1)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"No RPC server is known for .* is unreachable"):
        client.echo(1)
    assert 0.5 < time.monotonic() - started < 1.5
    client.close()


def test_workers_announce_one_address_for_the_host(redis_server, start_server):
    server = announced(redis_server, start_server, "--workers", "2")
    members = redis_server.client().smembers(f"zrpc:{SERVICE}:instances")
    assert members == {server.endpoint.encode()}
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    try:
        assert client.echo("via redis") == "via redis"
    finally:
        client.close()
    assert stop(server) == 0
    assert not redis_server.client().smembers(f"zrpc:{SERVICE}:instances")


def test_dns_endpoints_follow_the_name(start_server):
    server = start_server()
    client = RPCClient(f"dns:///localhost:{server.port}", timeout=5)
    try:
        assert client.echo("by name") == "by name"
        assert client._balancer.directory.addresses == (server.endpoint,)
    finally:
        client.close()


def test_a_name_that_does_not_resolve_fails_clearly_within_the_timeout():
    client = RPCClient("dns:///no-such-host.invalid:4242", timeout=1)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"Cannot resolve 'no-such-host\.invalid'"):
        client.echo(1)
    assert time.monotonic() - started < 2.5
    client.close()


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ("dns://8.8.8.8/tickets:4242", "is not a DNS endpoint"),
        ("dns:///tickets", "is not a DNS endpoint"),
        ("redis://127.0.0.1:6379/0", "is not a Redis endpoint"),
        ("redis://127.0.0.1:6379/0?service=a:b", "may not hold"),
        (["dns:///tickets:4242", "tcp://127.0.0.1:4242"], "give it alone"),
    ],
)
def test_a_bad_source_of_endpoints_is_refused_with_the_reason(endpoints, message):
    with pytest.raises(ValueError, match=message):
        RPCClient(endpoints)


def test_without_redis_py_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import django; django.setup()\n"
        "from django_zrpc import RPCClient\n"
        "RPCClient('redis://127.0.0.1:1/0?service=x')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert 'pip install "django-zrpc[redis]"' in done.stderr


def test_runrpc_on_every_interface_asks_for_the_address_to_announce(redis_server):
    command = ["manage.py", "runrpc", "--noreload", "0.0.0.0:4999"]
    done = subprocess.run(
        [sys.executable, *command, "--announce", redis_server.url(SERVICE)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "give the address they should use with --announce-address" in done.stderr


def test_a_child_made_by_fork_follows_redis_with_a_lookup_of_its_own(redis_server, start_server):
    server = announced(redis_server, start_server)
    client = RPCClient(redis_server.url(SERVICE), timeout=10)
    assert client.echo("parent") == "parent"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            assert client.echo("child") == "child"
            # Announce a second address: only a lookup running in the child sees it.
            newcomer = "tcp://127.0.0.1:1"
            registry = redis_server.client()
            registry.sadd(f"zrpc:{SERVICE}:instances", newcomer)
            registry.set(f"zrpc:{SERVICE}:instance:{newcomer}", "up", px=60_000)
            registry.publish(f"zrpc:{SERVICE}:changes", newcomer)
            deadline = time.monotonic() + 5
            directory = client._balancer.directory  # the child's own, made at its first call
            while newcomer not in directory.addresses and time.monotonic() < deadline:
                time.sleep(0.02)
            os.write(write, repr(directory.addresses).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 1000).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == repr(("tcp://127.0.0.1:1", server.endpoint))
    client.close()


@pytest.mark.asyncio
async def test_the_asyncio_client_follows_redis_and_rides_out_a_graceful_stop(
    redis_server, start_server
):
    leaving, staying = announced(redis_server, start_server, "--graceful-timeout", "3", count=2)
    client = AsyncRPCClient(redis_server.url(SERVICE), timeout=10)
    answers: list[tuple[float, int]] = []
    failures: list[BaseException] = []

    async def caller(until: float) -> None:
        while time.monotonic() < until:
            try:
                answers.append((time.monotonic(), await client.server_pid()))
            except Exception as err:
                failures.append(err)
                await asyncio.sleep(0.01)

    try:
        callers = [asyncio.create_task(caller(time.monotonic() + 3.0)) for _ in range(32)]
        await asyncio.sleep(1.0)
        assert {pid for _, pid in answers} == {pid_of(leaving), pid_of(staying)}
        stopped_at = time.monotonic()
        leaving.signal()
        await asyncio.gather(*callers)
    finally:
        await client.aclose()
    assert not failures, failures[:3]
    later = {pid for at, pid in answers if at > stopped_at + 1.0}
    assert later == {pid_of(staying)}


def _dead_address() -> str:
    """An address on 127.0.0.1 that nothing listens on: a connection there is never made."""
    return f"tcp://127.0.0.1:{free_port()}"


def _attempts_on(endpoint: str, load: Load) -> float:
    """Calls that tried ``endpoint`` and could not reach it: retried elsewhere, or failed."""
    from prometheus_client import REGISTRY

    retried = sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "zrpc_client_retries"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("endpoint") == endpoint
    )
    failed = sum(1 for _, err in load.failures if endpoint in str(err))
    return retried + failed


def test_an_entry_without_a_ttl_is_refused_with_a_warning(redis_server, start_server, caplog):
    pytest.importorskip("prometheus_client")
    server = announced(redis_server, start_server)
    dead = _dead_address()
    writer = redis_server.client()
    writer.sadd(f"zrpc:{SERVICE}:instances", dead)
    writer.set(f"zrpc:{SERVICE}:instance:{dead}", "up")  # no TTL: it would stay for ever
    client = RPCClient(redis_server.url(SERVICE), timeout=10, connect_timeout=1)
    load = Load(client, callers=8)
    try:
        with caplog.at_level(logging.WARNING, logger="django_zrpc.discovery"):
            load.run_for(3.0)
    finally:
        load.stop()
        client.close()
    assert _attempts_on(dead, load) == 0
    assert not load.failures, load.failures[:3]
    assert load.shares()[pid_of(server)] > 0
    refused = [r.getMessage() for r in caplog.records if "has no TTL" in r.getMessage()]
    assert len(refused) == 1, refused
    assert f"'zrpc:{SERVICE}:instance:{dead}' has no TTL" in refused[0]
    assert "SET ... PX" in refused[0]


def test_an_address_that_cannot_be_reached_is_tried_less_and_less_often(redis_server, start_server):
    pytest.importorskip("prometheus_client")
    server = announced(redis_server, start_server)
    dead = _dead_address()
    writer = redis_server.client()
    writer.sadd(f"zrpc:{SERVICE}:instances", dead)
    writer.set(f"zrpc:{SERVICE}:instance:{dead}", "up", px=120_000)  # listed, yet dead
    # down_for 2 s: before, the dead address was tried again every 2 s by
    # whichever callers chose it first; now by one call, after 2, 4, 8 s.
    client = RPCClient(redis_server.url(SERVICE), timeout=10, connect_timeout=1, down_for=2)
    load = Load(client, callers=16)
    try:
        # The first calls find it dead (those sent before the first failure).
        assert wait_until(lambda: _attempts_on(dead, load) > 0, 10)
        load.run_for(1.5)
        first = _attempts_on(dead, load)
        load.run_for(13.0)
        later = _attempts_on(dead, load) - first
    finally:
        load.stop()
        client.close()
    # Down 2 s, tried (1 s), down 4 s, tried, down 8 s: two tries in 13 s.
    assert later <= 3, f"{later:g} calls tried the dead address after the first {first:g}"
    assert load.shares()[pid_of(server)] > 0
    assert not load.failures, load.failures[:3]
