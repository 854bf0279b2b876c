"""runrpc --ops: /livez, /readyz and /metrics beside the RPC socket (issue 17), for real."""

from __future__ import annotations

import http.client
import resource
import signal
import socket
import time
from collections.abc import Callable

import gevent
import pytest

from django_zrpc.client.gevent.connection import Client
from django_zrpc.exceptions import HandshakeFailed, RemoteError
from tests.conftest import ServerProcess, free_port, raw_dealer, requires_postgres
from tests.ops_http import get, scrape, scrape_counted, value, wait_until
from tests.transport.test_curve import Keys

pytest.importorskip("prometheus_client")

CALLS = "zrpc_server_calls_total"


@pytest.fixture(scope="module")
def ops_server(start_module_server) -> tuple[ServerProcess, str]:
    """A server of two workers and no backlog, so that a third call is refused ServerBusy."""
    port = free_port()
    server = start_module_server(
        "--heartbeat", "1", "--concurrency", "2", "--backlog", "0", "--ops", f"127.0.0.1:{port}"
    )
    server.wait_for(f"Ops endpoint at http://127.0.0.1:{port}/")
    return server, f"http://127.0.0.1:{port}"


def test_livez_answers_while_the_loop_turns_and_not_while_it_is_held(ops_server):
    server, ops = ops_server
    assert get(f"{ops}/livez") == (200, "alive\n")
    client = Client(server.endpoint, timeout=10)
    try:
        # A function that never yields holds the event loop for 3 s; the
        # server's stall watch says so after 1 s.
        mark = server.mark()
        holding = gevent.spawn(client.call, "burn_cpu_inline", 3.0)
        wait_until(
            lambda: "The event loop has not turned" in server.output_since(mark),
            5,
            "the stall was reported",
        )
        with pytest.raises(OSError, match="timed out"):
            get(f"{ops}/livez", timeout=0.5)
        holding.get(timeout=10)
    finally:
        client.close()
    assert get(f"{ops}/livez") == (200, "alive\n")


def test_readyz_is_ready_while_serving_and_404_elsewhere(ops_server):
    _, ops = ops_server
    assert get(f"{ops}/readyz") == (200, "ready\n")
    assert get(f"{ops}/nothing")[0] == 404


def test_metrics_count_calls_by_function_and_outcome(ops_server):
    server, ops = ops_server
    before = scrape(ops)
    client = Client(server.endpoint, timeout=10)
    try:
        for n in range(3):
            assert client.call("echo", n) == n
        with pytest.raises(RemoteError, match="ValueError"):
            client.call("fail", "counted")
        with pytest.raises(RemoteError, match="NameError"):
            client.call("no_such_function")
        # Both workers asleep and no backlog: the third call is refused at once.
        sleepers = [gevent.spawn(client.call, "sleep", 1.0) for _ in range(2)]
        wait_until(lambda: value(scrape(ops), "zrpc_server_calls_running") == 2, 5, "2 running")
        with pytest.raises(RemoteError, match="ServerBusy"):
            client.call("echo", "refused")
        gevent.joinall(sleepers, timeout=10, raise_error=True)
    finally:
        client.close()
    after = scrape_counted(ops, 8, before)  # 3 echoes, fail, unknown, refused, 2 sleeps

    def delta(**labels: str) -> float:
        return value(after, CALLS, **labels) - value(before, CALLS, **labels)

    assert delta(function="echo", outcome="ok", error="") == 3
    assert delta(function="fail", outcome="error", error="ValueError") == 1
    assert delta(function="_unknown", outcome="error", error="NameError") == 1
    assert delta(function="echo", outcome="busy", error="") == 1
    assert delta(function="sleep", outcome="ok", error="") == 2
    assert value(after, "zrpc_server_workers") == 2


def test_latency_histograms_put_calls_in_their_buckets(ops_server):
    server, ops = ops_server
    before = scrape(ops)
    client = Client(server.endpoint, timeout=10)
    try:
        for _ in range(2):
            client.call("sleep", 0.3)
    finally:
        client.close()
    after = scrape_counted(ops, 2, before)
    bucket = "zrpc_server_call_duration_seconds_bucket"

    def delta(le: str) -> float:
        return value(after, bucket, function="sleep", le=le) - value(
            before, bucket, function="sleep", le=le
        )

    # Cumulative buckets: 0.3 s calls are past 0.25 and within 0.5.
    assert delta("0.25") == 0
    assert delta("0.5") == 2
    assert delta("+Inf") == 2
    waited = "zrpc_server_call_wait_seconds_count"
    assert value(after, waited) - value(before, waited) == 2


def test_metrics_count_stream_items_and_dropped_frames(ops_server):
    server, ops = ops_server
    before = scrape(ops)
    client = Client(server.endpoint, timeout=10)
    try:
        assert list(client.call("count_up", 5)) == [0, 1, 2, 3, 4]
    finally:
        client.close()
    dealer = raw_dealer(server.endpoint)
    try:
        dealer.send_multipart([b"", b"\xc1 not msgpack"])
        wait_until(
            lambda: (
                value(scrape(ops), "zrpc_server_bad_frames_dropped_total")
                > value(before, "zrpc_server_bad_frames_dropped_total")
            ),
            5,
            "the bad frame counted",
        )
    finally:
        dealer.close()
    after = scrape(ops)
    items = "zrpc_server_stream_items_sent_total"
    assert value(after, items, function="count_up") - value(before, items, function="count_up") == 5


def test_readyz_turns_503_at_sigterm_while_a_call_still_drains(start_server):
    port = free_port()
    ops = f"http://127.0.0.1:{port}"
    server = start_server("--graceful-timeout", "10", "--ops", f"127.0.0.1:{port}")
    client = Client(server.endpoint, timeout=20)
    try:
        long_call = gevent.spawn(client.call, "sleep", 3.0)
        wait_until(lambda: value(scrape(ops), "zrpc_server_calls_running"), 5, "the call started")
        assert get(f"{ops}/readyz")[0] == 200
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)

        def not_ready() -> str | None:
            status, body = get(f"{ops}/readyz")
            return body if status == 503 else None

        body = wait_until(not_ready, 2, "/readyz said 503")
        assert "The server is stopping." in body
        assert time.monotonic() - signalled < 2
        assert not long_call.ready(), "the drain should still be running"
        assert get(f"{ops}/livez")[0] == 200  # alive while it drains
        assert long_call.get(timeout=10) == 3.0  # the call finished in the drain
    finally:
        client.close()
    assert server.wait_stopped() == 0


@requires_postgres
def test_readyz_is_503_when_a_database_does_not_answer(start_server, tmp_path):
    closed = free_port()
    (tmp_path / "unreachable_db.py").write_text(
        "from tests.settings import *\n"
        f"DATABASES = {{**DATABASES, 'reports': {{**DATABASES['default'], 'PORT': '{closed}'}}}}\n"
    )
    port = free_port()
    ops = f"http://127.0.0.1:{port}"
    server = start_server(
        "--settings=unreachable_db", "--ops", f"127.0.0.1:{port}", PYTHONPATH=str(tmp_path)
    )
    status, body = get(f"{ops}/readyz")
    assert status == 503
    assert body.startswith("Database 'reports' does not answer: ")
    assert "default" not in body
    client = Client(server.endpoint, timeout=10)
    try:
        assert client.call("echo", 1) == 1  # serving, though not ready
    finally:
        client.close()


def test_ops_port_in_use_is_a_one_line_error(start_server):
    taken = free_port()
    start_server("--ops", f"127.0.0.1:{taken}")
    second = start_server("--ops", f"127.0.0.1:{taken}", wait=False)
    assert second.wait_stopped() == 1
    assert f"Port {taken} on 127.0.0.1 is already in use." in second.output


@requires_postgres
def test_database_connections_open_are_a_gauge(ops_server):
    server, ops = ops_server
    client = Client(server.endpoint, timeout=10)
    try:
        # CONN_MAX_AGE is 0 here: a worker's connection lives for its call.
        querying = gevent.spawn(client.call, "db_sleep", 1.0)
        wait_until(
            lambda: value(scrape(ops), "zrpc_server_db_connections", database="default") == 1,
            5,
            "one connection open during the query",
        )
        assert querying.get(timeout=10) == 1.0
    finally:
        client.close()
    wait_until(
        lambda: value(scrape(ops), "zrpc_server_db_connections", database="default") == 0,
        5,
        "the connection closed with its call",
    )


def test_refused_handshakes_are_counted_and_the_zap_handler_keeps_it_ready(start_server, tmp_path):
    keys = Keys(tmp_path)
    port = free_port()
    ops = f"http://127.0.0.1:{port}"
    server = start_server(*keys.server_args(), "--ops", f"127.0.0.1:{port}")
    before = value(scrape(ops), "zrpc_server_handshakes_refused_total")
    with pytest.raises(HandshakeFailed):
        keys.client(server.endpoint, "intruder").echo(1)
    wait_until(
        lambda: value(scrape(ops), "zrpc_server_handshakes_refused_total") > before,
        5,
        "the refused handshake counted",
    )
    assert get(f"{ops}/readyz") == (200, "ready\n")


def test_methods_other_than_get_and_head_get_405(ops_server):
    _, ops = ops_server
    host, port = ops.removeprefix("http://").split(":")
    for method, path in [("FOO", "/livez"), ("DELETE", "/livez"), ("POST", "/metrics")]:
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            assert (response.status, response.getheader("Allow")) == (405, "GET, HEAD"), method
            assert response.read() == b"Only GET and HEAD are served here.\n"
        finally:
            connection.close()
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("HEAD", "/livez")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def _lower_open_files(limit: int) -> Callable[[], None]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return lower


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (read what it sent, if anything, first)."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset


def test_half_open_ops_connections_leave_rpc_and_livez_answered(start_server, project_settings):
    # More half-open connections than the process may open files: before
    # the cap they took every descriptor, and the RPC socket could accept no
    # new peer.
    limit, header_timeout = 256, 10.0
    port = free_port()
    args, env = project_settings(ZRPC_OPS_HEADER_TIMEOUT=header_timeout)
    server = start_server(
        *args, "--ops", f"127.0.0.1:{port}", preexec_fn=_lower_open_files(limit), **env
    )
    server.wait_for(f"Ops endpoint at http://127.0.0.1:{port}/")
    ops = f"http://127.0.0.1:{port}"
    half_open: list[socket.socket] = []
    try:
        for _ in range(limit + 100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            half_open.append(sock)
        for n in range(5):  # each a new peer of the RPC socket
            client = Client(server.endpoint, timeout=5)
            try:
                assert client.call("echo", n) == n
            finally:
                client.close()
        assert get(f"{ops}/livez", timeout=2) == (200, "alive\n")
        for sock in half_open:
            sock.setblocking(False)
        # The newest is still open: the flood was on while RPC and /livez
        # were answered.
        assert not _closed(half_open[-1])
        closed: set[int] = set()

        def all_closed() -> bool:
            closed.update(n for n, s in enumerate(half_open) if n not in closed and _closed(s))
            return len(closed) == len(half_open)

        wait_until(
            all_closed,
            header_timeout + 15,
            "every half-open connection closed by the server",
            step=0.2,
        )
    finally:
        for sock in half_open:
            sock.close()
