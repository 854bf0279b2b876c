"""Signals a real ``runrpc`` gets in production: SIGHUP to one process, SIGKILL of a supervisor."""

from __future__ import annotations

import signal
import time

import gevent
import gevent.event
import zerorpc

from django_zrpc import RPCClient
from tests.server.test_workers import all_new, running, wait_until, worker_pids


def keep_calling(
    endpoint: str, stop: gevent.event.Event, served: list, failed: list, seconds: float = 0.0
) -> None:
    """Call sleep (echo if ``seconds`` is 0) on a stock zerorpc connection until ``stop``."""
    client = zerorpc.Client(endpoint, timeout=10, heartbeat=1)
    try:
        for n in range(1_000_000):
            if stop.is_set():
                return
            try:
                served.append(client.sleep(seconds) if seconds else client.echo(n))
            except Exception as err:
                failed.append(f"{type(err).__name__}: {err}")
                gevent.sleep(0.05)
    finally:
        client.close()


def test_a_killed_supervisors_workers_die_with_it_and_a_restart_takes_the_port(start_server):
    server = start_server("--workers", "2", "--heartbeat", "1")
    workers = worker_pids(server)
    assert len(workers) == 2
    stop = gevent.event.Event()
    served: list = []
    failed: list = []
    # Quick calls, and slow ones that a drain would wait for.
    callers = [gevent.spawn(keep_calling, server.endpoint, stop, served, failed) for _ in range(8)]
    callers += [
        gevent.spawn(keep_calling, server.endpoint, stop, [], failed, 3.0) for _ in range(4)
    ]
    try:
        wait_until(lambda: len(served) > 300, 30, "8 callers made no 300 calls")
        server.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # The kernel ends them (PR_SET_PDEATHSIG) with the supervisor: no drain
        # holds the port. 2 s is for a loaded machine to reap them.
        wait_until(lambda: not any(running(pid) for pid in workers), 10, "a worker outlived it")
        gone_after = time.monotonic() - killed
        assert gone_after < 2, f"the workers outlived their supervisor by {gone_after:.1f} s"
        # Started as a process manager restarts it: at once, on the same port.
        restarted = start_server("--workers", "2", "--heartbeat", "1", port=server.port)
        count = len(served)
        wait_until(lambda: len(served) > count + 100, 60, "the restarted server did not serve")
        serving_after = time.monotonic() - killed
    finally:
        stop.set()
        gevent.joinall(callers, timeout=30)
    assert "already in use" not in restarted.output, restarted.output
    assert worker_pids(restarted)
    assert not worker_pids(restarted) & workers
    print(
        f"workers gone {gone_after:.2f} s after the SIGKILL, "
        f"serving again after {serving_after:.2f} s"
    )


def test_sighup_to_one_process_keeps_it_serving_and_says_how_to_reload(start_server):
    server = start_server("--heartbeat", "1")
    stop = gevent.event.Event()
    served: list = []
    failed: list = []
    callers = [gevent.spawn(keep_calling, server.endpoint, stop, served, failed) for _ in range(8)]
    try:
        wait_until(lambda: len(served) > 300, 30, "8 callers made no 300 calls")
        mark = server.mark()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for("SIGHUP ignored", timeout=30, since=mark)
        count = len(served)
        wait_until(lambda: len(served) > count + 300, 30, "calls stopped after SIGHUP")
    finally:
        stop.set()
        gevent.joinall(callers, timeout=30)
    assert server.proc.poll() is None
    assert failed == []
    assert "Run runrpc --workers 2 (or more) to reload on SIGHUP" in server.output_since(mark)
    assert server.stop() == 0


def test_a_reload_fails_at_most_1_percent_of_stock_zerorpc_calls(start_server):
    server = start_server("--workers", "2", "--heartbeat", "1")
    first = worker_pids(server)
    stop = gevent.event.Event()
    served: list = []
    failed: list = []
    callers = [gevent.spawn(keep_calling, server.endpoint, stop, served, failed) for _ in range(8)]
    # django_zrpc callers beside them, refused and sent elsewhere as they are.
    client = RPCClient(server.endpoint, timeout=10)
    rich_failed: list = []

    def call_rich() -> None:
        for n in range(1_000_000):
            if stop.is_set():
                return
            try:
                client.echo(n)
            except Exception as err:
                rich_failed.append(f"{type(err).__name__}: {err}")

    callers += [gevent.spawn(call_rich) for _ in range(8)]
    try:
        wait_until(lambda: len(served) > 500, 30, "8 callers made no 500 calls")
        before = len(served) + len(failed)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: all_new(worker_pids(server), first), 60, "SIGHUP replaced no worker")
        # The old workers' last connections closed: every caller serves on the new ones.
        wait_until(lambda: not any(running(pid) for pid in first), 60, "an old worker is left")
        count = len(served)
        wait_until(lambda: len(served) > count + 500, 30, "calls stopped after SIGHUP")
    finally:
        stop.set()
        gevent.joinall(callers, timeout=30)
        client.close()
    calls = len(served) + len(failed) - before
    print(f"{len(failed)} of {calls} stock calls failed: {sorted(set(failed))[:5]}")
    assert len(failed) <= calls / 100, f"{len(failed)} of {calls}: {sorted(set(failed))[:5]}"
    assert rich_failed == []
