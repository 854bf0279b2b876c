"""``runrpc --workers N``: one port, N supervised processes (issue 14), against real processes."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
import uuid
from pathlib import Path

import gevent
import gevent.event
import pytest
from django.test import override_settings

from django_zrpc import RPCClient
from django_zrpc.checks import check_settings
from django_zrpc.client.gevent.connection import Client
from tests.conftest import ROOT, ServerProcess, free_port, requires_postgres, subprocess_env

TEST_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_zrpc",
    "testproject.tickets",
    "tests.probes",
]


def worker_pids(server: ServerProcess) -> set[int]:
    """The supervisor's child processes (runrpc re-executes itself: the same pid)."""
    found: set[int] = set()
    for task in Path(f"/proc/{server.proc.pid}/task").glob("*"):
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        gevent.sleep(step)
    pytest.fail(f"{what} within {timeout}s")


def all_new(pids: set[int], before: set[int]) -> set[int] | None:
    """``pids`` if they are two and none of them is in ``before``."""
    return pids if len(pids) == 2 and not pids & before else None


def pids_over_new_connections(endpoint: str, count: int) -> list[int]:
    """Call ``server_pid`` once on each of ``count`` new connections."""
    pids = []
    for _ in range(count):
        client = Client(endpoint, timeout=10)
        try:
            pids.append(client.server_pid())
        finally:
            client.close()
    return pids


def test_workers_setting_and_option_are_checked(start_server):
    with override_settings(ZRPC_WORKERS=0):
        assert [m.id for m in check_settings()] == ["django_zrpc.E013"]
    with override_settings(ZRPC_WORKERS=2):
        assert check_settings() == []
    server = start_server("--workers", "0", wait=False)
    server.proc.wait(30)
    assert server.stop() == 1
    assert "--workers must be 1 or more, not 0." in server.output


def test_n_distinct_worker_processes_serve_one_port(start_server):
    server = start_server("--workers", "3")
    assert "with 3 workers (each: heartbeat" in server.output
    workers = worker_pids(server)
    assert len(workers) == 3
    pids = pids_over_new_connections(server.endpoint, 60)
    assert set(pids) == workers, f"60 connections served by {sorted(set(pids))}, not {workers}"
    assert server.proc.pid not in pids


def test_rpcclient_spreads_calls_over_the_worker_processes_not_over_connections(start_server):
    server = start_server("--workers", "3")
    with RPCClient(server.endpoint, timeout=10, pool_size=12) as client:
        # A burst opens the pool's twelve connections; the kernel gives each to a worker.
        gevent.joinall([gevent.spawn(client.sleep, 0.2) for _ in range(64)], raise_error=True)
        pool = client._state().pools[server.endpoint]
        connections = list(pool.lending.calls)
        assert len(connections) == 12
        # Each connection learned which process it reaches: one name per worker.
        pids = {connection.call("server_pid"): connection.peer for connection in connections}
        named = {connection.peer for connection in connections}
        assert None not in named
        assert len(named) == len(pids) >= 2
        assert set(pids) <= worker_pids(server)
        sleepers = [gevent.spawn(client.sleep, 0.5) for _ in range(64)]
        gevent.sleep(0.2)
        carrying = {c: count for c, count in pool.lending.calls.items() if count}
        gevent.joinall(sleepers, timeout=30, raise_error=True)
    # One connection a worker process, the calls shared evenly among them.
    assert sorted(c.peer for c in carrying) == sorted(named)
    assert max(carrying.values()) - min(carrying.values()) <= 1


def test_a_killed_worker_is_replaced_and_only_its_calls_fail(start_server):
    server = start_server("--workers", "2", "--heartbeat", "1")
    victim, survivor = sorted(worker_pids(server))
    served: dict[int, int] = {}
    failures: list[tuple[int | None, str]] = []  # (the pid of the caller's connection, the error)
    stop = gevent.event.Event()

    def caller() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            client = Client(server.endpoint, timeout=10)
            pid = None
            try:
                pid = client.server_pid()
                for _ in range(20):
                    client.sleep(0.01)
                    served[pid] = served.get(pid, 0) + 1
            except Exception as err:
                failures.append((pid, f"{type(err).__name__}: {err}"))
            finally:
                client.close()

    callers = [gevent.spawn(caller) for _ in range(16)]
    try:
        wait_until(lambda: served.get(victim, 0) > 50, 15, "the victim did not serve")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        new = wait_until(lambda: worker_pids(server) - {victim, survivor}, 2, "no new worker")
        assert time.monotonic() - killed < 2
        (replacement,) = new
        wait_until(lambda: served.get(replacement, 0) > 20, 20, "the new worker did not serve")
        # The port kept answering: the survivor served on throughout.
        assert pids_over_new_connections(server.endpoint, 1)
    finally:
        stop.set()
        gevent.joinall(callers, timeout=20)
    assert all(c.dead for c in callers)
    assert failures, "no call was on the killed worker"
    # None: the first call on a new connection, accepted by the victim as it died.
    assert {pid for pid, _ in failures} <= {victim, None}, failures
    assert all("LostRemote" in error for _, error in failures), sorted(
        {error.split(":")[0] + f" ({pid})" for pid, error in failures}
    )
    assert f"Worker {victim} was killed by SIGKILL; starting another." in server.output


def test_sigterm_drains_every_worker_and_leaves_no_process(start_server):
    server = start_server("--workers", "2", "--graceful-timeout", "5")
    workers = worker_pids(server)
    clients = [Client(server.endpoint, timeout=10) for _ in range(8)]
    try:
        calls = [gevent.spawn(client.sleep, 1) for client in clients]
        gevent.sleep(0.3)  # the calls are running
        server.proc.send_signal(signal.SIGTERM)
        gevent.joinall(calls, timeout=10)
    finally:
        for client in clients:
            client.close()
    assert [call.value for call in calls] == [1] * 8, [call.exception for call in calls]
    assert server.stop() == 0
    assert server.output.rstrip().endswith("Server stopped."), server.output
    wait_until(lambda: not any(running(pid) for pid in workers), 5, "a worker is left")


def test_sighup_twice_under_64_callers_fails_no_call_and_gives_new_workers(start_server, caplog):
    server = start_server("--workers", "2", "--heartbeat", "1")
    first = worker_pids(server)
    results: list[tuple[str, object]] = []
    errors: list[str] = []
    stop = gevent.event.Event()
    # One Django process's client, which retries what never ran (ServerStopping).
    client = RPCClient(server.endpoint, timeout=10)

    def caller(index: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            value = f"{index}-{n}-{uuid.uuid4().hex}"
            try:
                results.append((value, client.echo(value)))
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")

    caplog.set_level(logging.INFO, logger="django_zrpc.client")
    callers = [gevent.spawn(caller, i) for i in range(64)]
    try:
        wait_until(lambda: len(results) > 500, 20, "64 callers made no 500 calls")
        seen = [first]
        for _ in range(2):
            before = seen[-1]
            server.proc.send_signal(signal.SIGHUP)
            after = wait_until(
                lambda b=before: all_new(worker_pids(server), b),
                60,
                "SIGHUP did not replace both workers",
            )
            seen.append(after)
            count = len(results)
            wait_until(lambda c=count: len(results) > c + 500, 20, "calls stopped after SIGHUP")
    finally:
        stop.set()
        gevent.joinall(callers, timeout=30)
        client.close()
    assert all(c.dead for c in callers)
    assert errors == []
    assert all(value == answer for value, answer in results)
    assert len({value for value, _ in results}) == len(results)  # none answered twice
    assert len(set().union(*seen)) == 6
    assert server.output.count("SIGHUP: workers replaced") == 2
    retried = caplog.text.count("Retrying rpc echo")
    print(f"{len(results)} calls, {retried} retries")


BROKEN_LATER = """
from pathlib import Path

from django_zrpc import rpc

if Path(__file__).with_name("broken").exists():
    import no_such_module_for_workers  # noqa: F401


@rpc.register()
def hello():
    return "hello"
"""


def test_workers_that_cannot_start_stop_the_supervisor_with_their_error(project_settings, tmp_path):
    args, env = project_settings(INSTALLED_APPS=[*TEST_APPS, "flaky"])
    (tmp_path / "flaky").mkdir()
    (tmp_path / "flaky" / "__init__.py").write_text("")
    (tmp_path / "flaky" / "rpcs.py").write_text(BROKEN_LATER)
    port = free_port()
    env = subprocess_env(**env)
    env.pop("DATABASE_URL", None)
    server = ServerProcess(
        [*args, "--noreload", "--workers", "2", f"127.0.0.1:{port}"], env, ROOT, port
    )
    try:
        server.wait_for("Serving ")
        # A deploy broke rpcs.py on disk; then a worker dies and must be replaced.
        (tmp_path / "flaky" / "broken").write_text("")
        os.kill(min(worker_pids(server)), signal.SIGKILL)
        server.proc.wait(30)
    finally:
        code = server.stop()
    assert code == 1, server.output
    assert "3 workers in a row ended before serving" in server.output
    assert "No module named 'no_such_module_for_workers'" in server.output
    assert "trying again in 0.5 s" in server.output
    assert worker_pids(server) == set()


def test_a_broken_rpcs_py_stops_the_supervisor_at_once(project_settings, tmp_path):
    args, env = project_settings(INSTALLED_APPS=[*TEST_APPS, "flaky"])
    (tmp_path / "flaky").mkdir()
    (tmp_path / "flaky" / "__init__.py").write_text("")
    (tmp_path / "flaky" / "rpcs.py").write_text(BROKEN_LATER)
    (tmp_path / "flaky" / "broken").write_text("")
    port = free_port()
    env = subprocess_env(**env)
    env.pop("DATABASE_URL", None)
    server = ServerProcess(
        [*args, "--noreload", "--workers", "2", f"127.0.0.1:{port}"], env, ROOT, port
    )
    server.proc.wait(30)
    assert server.stop() != 0
    assert "No module named 'no_such_module_for_workers'" in server.output


@requires_postgres
def test_database_backends_stay_within_workers_times_concurrency(start_server, live_database_url):
    import psycopg

    name = f"zrpc-workers-{uuid.uuid4().hex[:12]}"
    server = start_server(
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--backlog",
        "64",
        DB_APPLICATION_NAME=name,
        CONN_MAX_AGE="60",
    )
    workers = worker_pids(server)
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    with psycopg.connect(live_database_url, autocommit=True) as pg:
        assert pg.execute(query, [name]).fetchone()[0] == 0  # the supervisor holds none
        backend_pids: set[int] = set()
        clients = [Client(server.endpoint, timeout=20) for _ in range(16)]

        def caller(client: Client) -> None:
            for _ in range(30):
                backend_pids.add(client.db_backend_pid())

        try:
            callers = [gevent.spawn(caller, client) for client in clients]
            most = 0
            deadline = time.monotonic() + 60
            while not all(c.dead for c in callers) and time.monotonic() < deadline:
                most = max(most, pg.execute(query, [name]).fetchone()[0])
                gevent.sleep(0.05)
            gevent.joinall(callers, timeout=5, raise_error=True)
        finally:
            for client in clients:
                client.close()
        assert 2 <= most <= 2 * 4, f"{most} backends for 2 workers of concurrency 4"
        assert len(backend_pids) <= 8
        assert server.stop() == 0
        wait_until(lambda: not any(running(pid) for pid in workers), 5, "a worker is left")
        wait_until(lambda: pg.execute(query, [name]).fetchone()[0] == 0, 10, "backends remained")
