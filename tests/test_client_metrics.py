"""RPCClient's Prometheus metrics, in this process's default registry, after real calls."""

from __future__ import annotations

import gevent
import pytest
from django.test import override_settings

from django_zrpc import RPCClient
from django_zrpc.exceptions import RemoteError, ServerUnavailable
from tests.conftest import free_port

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
