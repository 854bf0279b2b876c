"""runrpc --workers 2 --ops: one ops address for the whole server, metrics summed over workers."""

from __future__ import annotations

import signal

import pytest

from django_zrpc.client.gevent.connection import Client
from tests.conftest import free_port
from tests.ops_http import calls_counted, get, scrape, value, wait_until

pytest.importorskip("prometheus_client")

CALLS = "zrpc_server_calls_total"


def test_one_ops_port_sums_the_metrics_of_every_worker(start_server):
    port = free_port()
    ops = f"http://127.0.0.1:{port}"
    server = start_server(
        "--workers",
        "2",
        "--concurrency",
        "3",
        "--graceful-timeout",
        "2",
        "--ops",
        f"127.0.0.1:{port}",
    )
    assert get(f"{ops}/readyz") == (200, "ready\n")
    # Each connection lands on one worker, by the kernel's choice: open
    # connections until calls have reached both, and count every call made.
    pids: set[int] = set()
    made = 0
    for _ in range(40):
        client = Client(server.endpoint, timeout=10)
        try:
            for _ in range(3):
                pids.add(client.call("server_pid"))
                made += 1
        finally:
            client.close()
        if len(pids) == 2:
            break
    assert len(pids) == 2, "the calls never reached the second worker"

    def summed() -> dict | None:
        # The gauges are sampled every second in each worker, and the last
        # call may be counted just after its reply.
        samples = scrape(ops)
        summed = value(samples, "zrpc_server_workers") == 6 and calls_counted(samples) >= made
        return samples if summed else None

    samples = wait_until(summed, 5, "both workers' gauges and every call were summed")
    assert value(samples, CALLS, function="server_pid", outcome="ok", error="") == made
    bucket = "zrpc_server_call_duration_seconds_bucket"
    assert value(samples, bucket, function="server_pid", le="+Inf") == made

    server.signal(signal.SIGTERM)

    def not_ready() -> tuple[int, str] | None:
        answer = _readyz(ops)
        return answer if answer[0] != 200 else None

    status, body = wait_until(not_ready, 2, "/readyz stopped saying ready")
    assert status == 503
    assert "The server is stopping." in body
    assert server.wait_stopped() == 0


def _readyz(ops: str) -> tuple[int, str]:
    try:
        return get(f"{ops}/readyz", timeout=1)
    except OSError as err:  # the supervisor has stopped: not ready either
        return 0, str(err)
