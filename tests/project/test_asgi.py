"""Async views calling runrpc through AsyncRPCClient, served by uvicorn (issue 16).

A real uvicorn process serves the test project over ASGI; its async views
call the module's runrpc server with ``async_clients``, and the test sends
real HTTP requests: concurrent ones, ones that carry a request id, one that
hangs up while its view waits.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.conftest import ROOT, free_port, subprocess_env
from tests.project.test_views import get

pytest.importorskip("uvicorn")


@contextmanager
def uvicorn(rpc_endpoint: str, **env: str) -> Iterator[str]:
    """Run uvicorn serving testproject.asgi, its views calling ``rpc_endpoint``; yield its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "testproject.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=subprocess_env(ZRPC_ENDPOINT=rpc_endpoint, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
                assert time.monotonic() < deadline, "uvicorn did not listen within 30 s"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def web(server) -> Iterator[str]:
    with uvicorn(server.endpoint) as base:
        yield base


def test_async_ticket_views_end_to_end(web):
    status, body = get(f"{web}/async/tickets/7/")
    assert status == 200
    assert json.loads(body)["title"] == "Ticket 7"
    assert get(f"{web}/async/tickets/999999/")[0] == 404  # Ticket.DoesNotExist, raised here
    status, body = get(f"{web}/async/tickets/?n=250")
    assert status == 200
    assert [json.loads(line)["id"] for line in body.splitlines()] == list(range(1, 251))


def test_twenty_concurrent_requests_wait_together_on_one_loop(web):
    with ThreadPoolExecutor(20) as pool:
        assert get(f"{web}/probes/sleep/?s=0.01")[0] == 200  # connections made
        started = time.monotonic()
        answers = list(pool.map(lambda _: get(f"{web}/probes/sleep/?s=1"), range(20)))
        elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [200] * 20
    assert all(json.loads(body) == {"slept": 1} for _, body in answers)
    # One after the other they would take 20 s; together, one and a bit.
    assert elapsed < 4, elapsed
    ids = [1 + i % 200 for i in range(100)]
    with ThreadPoolExecutor(20) as pool:
        tickets = list(pool.map(lambda i: get(f"{web}/async/tickets/{i}/"), ids))
    assert [json.loads(body)["id"] for _, body in tickets] == ids


def test_the_request_id_reaches_the_rpc_function(web):
    request = urllib.request.Request(
        f"{web}/probes/call_context/", headers={"X-Request-ID": "async-view-42"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        context = json.loads(response.read())
        assert response.headers["X-Request-ID"] == "async-view-42"
    assert context["request_id"] == "async-view-42"
    assert context["function"] == "call_context"


def test_a_client_that_hangs_up_stops_its_views_call_on_the_server(web, server):
    mark = server.mark()
    host, port = web.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /probes/sleep/?s=30 HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.5)  # the view's call is in flight on the server
    hung_up = time.monotonic()
    server.wait_for("rpc sleep stopped: its caller cancelled it", timeout=5, since=mark)
    assert time.monotonic() - hung_up < 3


def test_a_dead_rpc_server_is_a_503_within_the_timeout():
    with uvicorn(f"tcp://127.0.0.1:{free_port()}", ZRPC_TIMEOUT="0.5") as base:
        started = time.monotonic()
        status, body = get(f"{base}/async/tickets/1/")
        assert status == 503
        assert b"did not answer" in body
        assert time.monotonic() - started < 3
