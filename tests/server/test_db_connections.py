"""runrpc holds about as many database connections as calls it runs (issue 13, item 1)."""

from __future__ import annotations

import time
import uuid

import gevent
import psycopg
import pytest

from django_zrpc import RPCClient
from tests.conftest import requires_postgres

pytestmark = requires_postgres


@pytest.fixture
def pg(live_database_url):
    """An autocommit connection of the test's own to the test database."""
    with psycopg.connect(live_database_url, autocommit=True) as conn:
        yield conn


def backends(pg, application_name: str) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    return pg.execute(query, [application_name]).fetchone()[0]


def test_connections_follow_the_load_and_idle_ones_close_after_conn_max_age(start_server, pg):
    name = f"zrpc-load-{uuid.uuid4().hex[:12]}"
    # runrpc's defaults (100 workers) and PostgreSQL's (max_connections 100);
    # the probes have blocking functions, whose threads open connections too.
    server = start_server(DB_APPLICATION_NAME=name, CONN_MAX_AGE="2")
    assert (
        "runrpc may open up to 200 connections to database 'default' (100 workers and as "
        "many threads for blocking functions), and it admits 97"
    ) in server.output
    client = RPCClient(server.endpoint, timeout=10)
    pids: set[int] = set()

    def caller() -> None:
        for _ in range(40):
            pids.add(client.db_backend_pid())

    try:
        callers = [gevent.spawn(caller) for _ in range(16)]
        most = 0
        deadline = time.monotonic() + 30
        while not all(c.dead for c in callers) and time.monotonic() < deadline:
            most = max(most, backends(pg, name))
            gevent.sleep(0.05)
        gevent.joinall(callers, timeout=5, raise_error=True)
        assert len(pids) <= 24, f"16 callers were served on {len(pids)} connections"
        assert most <= 24
        # Idle, every connection closes once CONN_MAX_AGE (2 s) has passed,
        # though no call comes to its worker.
        loaded = time.monotonic()
        while backends(pg, name) and time.monotonic() < loaded + 10:
            gevent.sleep(0.1)
        assert backends(pg, name) == 0
        assert time.monotonic() - loaded < 4
    finally:
        client.close()
