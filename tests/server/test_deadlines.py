"""Deadlines (issue 17): the time left travels with the call, and the server keeps to it."""

from __future__ import annotations

import time
import uuid

import gevent
import psycopg
import pytest

from django_zrpc import RPCClient
from django_zrpc.exceptions import TimeoutExpired
from tests.conftest import requires_postgres


@pytest.fixture(scope="module")
def one_worker(start_module_server):
    """``(application name, server)``: a runrpc with one worker and room for ten calls queued."""
    name = f"zrpc-deadline-{uuid.uuid4().hex[:12]}"
    server = start_module_server(
        "--concurrency", "1", "--backlog", "10", "--heartbeat", "1", DB_APPLICATION_NAME=name
    )
    return name, server


@pytest.fixture
def pg(live_database_url):
    with psycopg.connect(live_database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def prefix(pg):
    """A title prefix for this test's tickets; they are deleted after it.

    Other modules count the demo's 300 tickets: the tests here leave none.
    """
    prefix = f"deadline-{uuid.uuid4().hex[:8]}-"
    yield prefix
    pg.execute("DELETE FROM tickets_ticket WHERE title LIKE %s", [f"{prefix}%"])


def rows(pg, prefix: str) -> int:
    (count,) = pg.execute(
        "SELECT count(*) FROM tickets_ticket WHERE title LIKE %s", [f"{prefix}%"]
    ).fetchone()
    return count


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s")
        gevent.sleep(0.05)


def pg_sleeping(pg, application_name: str) -> bool:
    (count,) = pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'",
        [application_name],
    ).fetchone()
    return count == 1


@requires_postgres
def test_calls_whose_caller_stopped_waiting_in_the_queue_never_run(one_worker, pg, prefix):
    # The test: the only worker busy for 3 s, five calls with a 1 s
    # timeout that would each write a row: none is written.
    name, server = one_worker
    with RPCClient(server.endpoint, timeout=10) as holder, RPCClient(server.endpoint) as client:
        hold = gevent.spawn(holder.db_sleep, 3)
        wait_until(lambda: pg_sleeping(pg, name), 10, "the worker did not start pg_sleep")
        mark = server.mark()

        def insert(title: str) -> BaseException | None:
            try:
                client.call("insert_ticket", title, timeout=1)
            except TimeoutExpired as err:
                return err
            return None

        calls = [gevent.spawn(insert, f"{prefix}{i}") for i in range(5)]
        gevent.joinall(calls, timeout=5)
        assert [type(call.value) for call in calls] == [TimeoutExpired] * 5
        assert hold.get(timeout=10) == 3
        # The same call, with time to wait, writes its row; queued after the
        # five, it runs once the worker has taken (or dropped) each of them.
        assert client.call("insert_ticket", f"{prefix}waited", timeout=5) == f"{prefix}waited"
        assert rows(pg, prefix) == 1
    assert server.output_since(mark).count("rpc insert_ticket dropped unstarted") == 5


@requires_postgres
def test_a_call_running_past_its_deadline_is_interrupted_and_its_transaction_undone(
    one_worker, pg, prefix
):
    _, server = one_worker
    title = f"{prefix}interrupted"
    mark = server.mark()
    with RPCClient(server.endpoint, timeout=1) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            client.write_then_sleep(title, 3)
        server.wait_for("rpc write_then_sleep interrupted: the caller's deadline passed", 5, mark)
        # Interrupted at its deadline, not when its sleep would have ended.
        assert time.monotonic() - started < 2.5
        assert rows(pg, title) == 0
        # The worker is free at once for the next call.
        assert client.echo(1) == 1


def test_the_function_knows_its_callers_time_left(one_worker):
    _, server = one_worker
    with RPCClient(server.endpoint, timeout=5) as client:
        assert 4.0 < client.time_left() <= 5.0
    with server.client(timeout=5) as stock:
        assert stock.time_left() is None  # a stock zerorpc client sends no deadline


def test_a_nested_call_gets_what_is_left_of_its_callers_deadline(server):
    with RPCClient(server.endpoint, timeout=2) as client:
        # Its own timeout is 30 s; its caller waits 2 s at most.
        assert 1.0 < client.nested_time_left(server.endpoint, 30) <= 2.0
        # A nested timeout shorter than what is left is kept.
        assert 0.0 < client.call("nested_time_left", server.endpoint, 0.5, timeout=10) <= 0.5


def test_a_stream_may_outlast_its_timeout_once_its_first_item_came(server):
    # The caller's timeout runs only until the first item, as for zerorpc:
    # the server must not stop the stream at the deadline after that.
    with RPCClient(server.endpoint, timeout=1) as client:
        started = time.monotonic()
        assert list(client.count_up(4, delay=0.4)) == [0, 1, 2, 3]
        assert time.monotonic() - started > 1.5
