"""The ORM stays healthy under runrpc, on a real PostgreSQL."""

from __future__ import annotations

import signal
import time
import uuid

import gevent
import psycopg
import pytest
import zerorpc

from tests.conftest import abandon_call, requires_postgres

pytestmark = requires_postgres


@pytest.fixture
def pg(live_database_url):
    """An autocommit connection of the test's own to the test database."""
    with psycopg.connect(live_database_url, autocommit=True) as conn:
        yield conn


def backends(pg, application_name: str) -> list[int]:
    rows = pg.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application_name]
    ).fetchall()
    return [pid for (pid,) in rows]


def wait_for_backends(pg, application_name: str, count: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = backends(pg, application_name)
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        gevent.sleep(0.05)  # lets this process's zerorpc calls go on meanwhile


def app_name() -> str:
    return f"zrpc-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def default_server(start_module_server):
    """``(application name, server)``: the default settings (CONN_MAX_AGE=0), shared.

    For the tests that leave it with no call running and no connection open.
    """
    name = app_name()
    return name, start_module_server(DB_APPLICATION_NAME=name)


def test_ten_pg_sleep_calls_run_concurrently_on_their_own_connections(default_server, pg):
    name, server = default_server
    with server.client(timeout=10) as client:
        started = time.monotonic()
        calls = [gevent.spawn(client.db_sleep, 2) for _ in range(10)]
        during = wait_for_backends(pg, name, 10, timeout=1.9)
        gevent.joinall(calls, timeout=30, raise_error=True)
        elapsed = time.monotonic() - started
    assert [call.value for call in calls] == [2] * 10
    # One after the other they would take 20 s.
    assert elapsed < 8, f"10 calls of pg_sleep(2) took {elapsed:.1f}s: not concurrent"
    assert len(during) == 10


def test_no_connection_outlives_its_call_with_conn_max_age_0(default_server, pg):
    name, server = default_server
    with server.client(timeout=10) as client:
        calls = [
            gevent.spawn(lambda: [client.db_backend_pid() for _ in range(10)]) for _ in range(20)
        ]
        gevent.joinall(calls, timeout=60, raise_error=True)
        with pytest.raises(Exception, match=r"DoesNotExist|does not exist"):
            client.get_ticket(10**9)  # a call that raises closes its connection too
        assert len(list(client.ticket_list(50))) == 50  # and so does a stream
    assert sum(len(call.value) for call in calls) == 200
    assert wait_for_backends(pg, name, 0) == []


def test_persistent_connection_is_reused_and_replaced_after_it_is_killed(start_server, pg):
    name = app_name()
    server = start_server("--concurrency", "1", DB_APPLICATION_NAME=name, CONN_MAX_AGE="300")
    with server.client(timeout=10) as client:
        first = client.db_backend_pid()
        assert client.db_backend_pid() == first  # reused across calls
        assert backends(pg, name) == [first]
        pg.execute("SELECT pg_terminate_backend(%s)", [first])
        assert wait_for_backends(pg, name, 0) == []
        second = client.db_backend_pid()  # the next call succeeds
    assert second != first
    assert backends(pg, name) == [second]


def test_a_call_lost_mid_query_leaves_the_next_call_a_working_connection(start_server, pg):
    name = app_name()
    server = start_server(
        "--heartbeat",
        "1",
        "--concurrency",
        "1",
        DB_APPLICATION_NAME=name,
        CONN_MAX_AGE="300",
        CONN_HEALTH_CHECKS="0",  # Django's default: no check before reuse
    )
    abandon_call(server, "db_sleep", 30)
    # Its query was cancelled, not left sleeping for 30 s in the database.
    assert wait_for_backends(pg, name, 0, timeout=5) == []
    with server.client(timeout=10, heartbeat=1) as client:
        assert isinstance(client.db_backend_pid(), int)
        assert client.get_ticket(1)["id"] == 1


def test_three_times_the_cap_of_pg_sleep_calls_keep_backends_bounded(start_server, pg):
    name = app_name()
    server = start_server(
        "--heartbeat", "1", "--concurrency", "4", "--backlog", "4", DB_APPLICATION_NAME=name
    )
    assert backends(pg, name) == []
    peak = 0
    with server.client(timeout=30, heartbeat=1) as client:
        calls = [gevent.spawn(client.db_sleep, 1) for _ in range(12)]
        while not all(call.ready() for call in calls):
            peak = max(peak, len(backends(pg, name)))
            gevent.sleep(0.05)
    outcomes = []
    for call in calls:
        if call.successful():
            outcomes.append("ok")
        else:
            error = call.exception
            assert isinstance(error, zerorpc.RemoteError), repr(error)  # no LostRemote
            assert "too many clients" not in str(error)
            outcomes.append(error.name)
    assert sorted(outcomes) == ["ServerBusy"] * 4 + ["ok"] * 8
    assert 1 <= peak <= 4
    assert wait_for_backends(pg, name, 0) == []  # back to none once the calls end


def test_a_blocking_function_closes_its_thread_connection(start_server, pg):
    name = app_name()
    server = start_server(DB_APPLICATION_NAME=name, CONN_MAX_AGE="300")
    with server.client(timeout=10) as client:
        for _ in range(5):
            assert client.count_tickets_blocking() == 300
    assert wait_for_backends(pg, name, 0) == []  # even with CONN_MAX_AGE


def test_sigterm_ends_a_call_past_the_grace_and_rolls_its_transaction_back(start_server, pg):
    server = start_server("--heartbeat", "1", "--graceful-timeout", "1")
    title = f"never-committed-{uuid.uuid4().hex[:8]}"
    with server.client(timeout=20, heartbeat=1) as client:
        call = gevent.spawn(client.write_then_sleep, title, 30)
        gevent.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(zerorpc.RemoteError) as caught:
            call.get(timeout=10)
    assert caught.value.name == "CallInterrupted"  # it had started: not ServerStopping
    assert server.stop() == 0
    rows = pg.execute("SELECT count(*) FROM tickets_ticket WHERE title = %s", [title]).fetchone()
    assert rows == (0,)
