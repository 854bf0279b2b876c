"""RPCClient's Prometheus metrics, in this process's default registry, after real calls."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import gevent
import pytest
from django.test import override_settings

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.exceptions import PoolExhausted, RemoteError, ServerUnavailable
from tests.conftest import ROOT, free_port

prometheus_client = pytest.importorskip("prometheus_client")
REGISTRY = prometheus_client.REGISTRY


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_calls_are_counted_by_endpoint_function_and_outcome(server):
    endpoint = server.endpoint
    ok = {"endpoint": endpoint, "function": "echo", "outcome": "ok", "error": ""}
    failed = {"endpoint": endpoint, "function": "fail", "outcome": "error", "error": "ValueError"}
    latency = {"endpoint": endpoint, "function": "echo"}
    before = [
        sample("zrpc_client_calls_total", **ok),
        sample("zrpc_client_calls_total", **failed),
        sample("zrpc_client_call_duration_seconds_count", **latency),
    ]
    with RPCClient(endpoint, timeout=10) as client:
        assert client.echo(1) == 1
        assert client.echo(2) == 2
        with pytest.raises(RemoteError):
            client.fail("counted")
    assert sample("zrpc_client_calls_total", **ok) - before[0] == 2
    assert sample("zrpc_client_calls_total", **failed) - before[1] == 1
    assert sample("zrpc_client_call_duration_seconds_count", **latency) - before[2] == 2
    assert sample("zrpc_client_endpoint_up", endpoint=endpoint) == 1


def test_pool_waits_and_retries_are_counted(start_server):
    # One worker and no backlog: a second call at once is refused ServerBusy
    # and retried; a pool of one connection for one call makes the next wait.
    server = start_server("--concurrency", "1", "--backlog", "0")
    endpoint = server.endpoint
    retried = {"endpoint": endpoint, "function": "echo", "error": "ServerBusy"}
    waits_before = sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint)
    retries_before = sample("zrpc_client_retries_total", **retried)
    with RPCClient(endpoint, timeout=10) as client:
        sleeping = gevent.spawn(client.sleep, 0.5)
        gevent.sleep(0.2)
        assert client.echo("after a retry") == "after a retry"
        sleeping.get(timeout=10)
    with RPCClient(endpoint, timeout=10, pool_size=1, calls_per_connection=1) as client:
        calls = [gevent.spawn(client.sleep, 0.2) for _ in range(2)]
        gevent.joinall(calls, timeout=10, raise_error=True)
    assert sample("zrpc_client_retries_total", **retried) - retries_before >= 1
    assert sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint) - waits_before == 1


def test_a_wait_in_vain_for_a_full_pool_is_counted_too(server):
    endpoint = server.endpoint
    waits_before = sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint)
    options = {"timeout": 10, "pool_size": 1, "calls_per_connection": 1, "pool_timeout": 0.1}
    with RPCClient(endpoint, **options) as client:
        sleeping = gevent.spawn(client.sleep, 0.5)
        gevent.sleep(0.1)
        with pytest.raises(PoolExhausted):
            client.echo(1)
        sleeping.get(timeout=10)
    assert sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint) - waits_before == 1


def test_the_asyncio_client_counts_its_calls_and_pool_waits(server):
    endpoint = server.endpoint
    ok = {"endpoint": endpoint, "function": "echo", "outcome": "ok", "error": ""}
    before = [
        sample("zrpc_client_calls_total", **ok),
        sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint),
    ]

    async def calls() -> None:
        options = {"timeout": 10, "pool_size": 1, "calls_per_connection": 1}
        async with AsyncRPCClient(endpoint, **options) as client:
            assert await asyncio.gather(client.echo(1), client.echo(2)) == [1, 2]

    asyncio.run(calls())
    assert sample("zrpc_client_calls_total", **ok) - before[0] == 2
    # The second call waited for the one connection the first was on.
    assert sample("zrpc_client_pool_wait_seconds_count", endpoint=endpoint) - before[1] == 1
    assert sample("zrpc_client_endpoint_up", endpoint=endpoint) == 1


def test_an_endpoint_that_fails_is_down():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with RPCClient(endpoint, timeout=0.5, connect_timeout=0.2) as client:
        with pytest.raises(ServerUnavailable):
            client.echo(1)
    assert sample("zrpc_client_endpoint_up", endpoint=endpoint) == 0


def test_no_client_metrics_when_switched_off(server):
    labels = {"endpoint": server.endpoint, "function": "echo", "outcome": "ok", "error": ""}
    before = sample("zrpc_client_calls_total", **labels)
    with override_settings(ZRPC_METRICS=False), RPCClient(server.endpoint) as client:
        assert client.echo(1) == 1
    assert sample("zrpc_client_calls_total", **labels) == before


def test_latency_buckets_hold_each_call_once_at_its_bound(server):
    labels = {"endpoint": server.endpoint, "function": "sleep"}

    def bucket(bound: str) -> float:
        return sample("zrpc_client_call_duration_seconds_bucket", **labels, le=bound)

    with RPCClient(server.endpoint) as client:
        client.echo(1)  # connected: the call below is timed alone
        before = {bound: bucket(bound) for bound in ("0.0005", "0.05", "0.1", "+Inf")}
        client.sleep(0.06)
    assert bucket("0.0005") - before["0.0005"] == 0
    assert bucket("0.05") - before["0.05"] == 0
    assert bucket("0.1") - before["0.1"] == 1  # cumulative: every bound from 0.1 up
    assert bucket("+Inf") - before["+Inf"] == 1
    assert sample("zrpc_client_call_duration_seconds_sum", **labels) >= 0.06


MULTIPROCESS_SCRIPT = """
import django
django.setup()
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from django_zrpc.metrics import client
client.record_call("tcp://127.0.0.1:1", "echo", "ok", 0.002)
client.record_call("tcp://127.0.0.1:1", "echo", "error", 0.002, "ValueError")
registry = CollectorRegistry()
MultiProcessCollector(registry)
labels = {"endpoint": "tcp://127.0.0.1:1", "function": "echo"}
print(
    registry.get_sample_value("zrpc_client_calls_total", {**labels, "outcome": "ok", "error": ""}),
    registry.get_sample_value("zrpc_client_call_duration_seconds_count", labels),
)
"""


def test_multiprocess_mode_counts_in_prometheus_clients_files(tmp_path):
    """gunicorn's workers summed by prometheus_client's multiprocess collector."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1.0", "2.0"]
