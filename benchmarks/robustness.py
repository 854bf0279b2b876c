"""Robustness: what runrpc does when the load, a peer or a stream goes wrong.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/robustness.py

Run by hand, not in CI (issue 13, items 1 to 4). Against real ``manage.py
runrpc`` processes on 127.0.0.1 (free ports), from this process, it measures:

1. database connections under light load: runrpc on its defaults (100
   workers) and ``CONN_MAX_AGE=60``, 16 greenlets sharing one ``RPCClient``
   call ``get_ticket`` for 10 s; the calls made and failed, the most backends
   of runrpc's ``application_name`` in ``pg_stat_activity`` at once (polled
   every 0.1 s), and what runrpc warned of about connections. Then a second
   server with ``CONN_MAX_AGE=5`` under the same load: seconds from the end of
   the load until none of its backends remains. Needs PostgreSQL
   (``DATABASE_URL``); the database ``zrpc_bench`` of the benchmarks is made
   and filled as ``benchmarks/run.py`` does;
2. a caller SIGKILLed 0.5 s into a ``sleep 30`` call: seconds until runrpc
   logs that the call lost its caller (default heartbeat, 5 s);
3. a server SIGKILLed under 8 ``sleep 30`` calls of an ``RPCClient``: seconds
   until all 8 raised ``LostRemote``;
4. a stream closed after its first item, on runrpc ``--concurrency 1
   --backlog 0``: seconds until another call is served (``ticket_list`` of
   the benchmarks' settings on PostgreSQL, else the test project's
   ``count_up``);
5. runrpc ``--heartbeat 1`` with a stock ``zerorpc.Client`` (heartbeat 5 s)
   and an ``RPCClient`` on its defaults each calling ``sleep 3``;
6. a stalled server of three (issue 24): 32 greenlets sharing one
   ``RPCClient`` (1 s timeout) call ``server_pid`` for 5 s, then one server
   is sent SIGSTOP for 13 s: the calls made after its first 3 s, how many
   failed, the rate against the three servers' rate; then SIGCONT: seconds
   until it answers 15% of the calls of the last 2 s again (at most 60 s).
   Then the same with 32 tasks sharing one ``AsyncRPCClient``, on an event
   loop of a thread of its own;
7. overload and a slow server (``benchmarks/overload.py``): 2,000 callers
   against ``runrpc --concurrency 10 --backlog 10``, then 24, with the
   client's retry budget on and off.

Parts 2, 3, 5 and 6 call ``sleep`` or ``server_pid``, which ``benchmarks.settings`` does not
serve: their servers run the test project's settings (its probes app).
Parts 2 to 4 are repeated ``--repeat`` times (min/median/max). One line per
figure on stdout, then the whole as one JSON line; progress on stderr.

Bounded: every loop has a deadline and a most count of turns; every process
it starts is stopped by its process id (SIGTERM, then SIGKILL), and only those.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SETTINGS, TICKET_IDS, free_port, log  # noqa: E402

TEST_SETTINGS = "tests.settings"  # serves sleep and count_up (the test probes app)
STARTUP_TIMEOUT = 60.0
MAX_LINES = 10_000  # runrpc output kept per server; the rest is read and dropped
LOAD_SECONDS = 10.0
LOAD_CALLERS = 16
DRAIN_TIMEOUT = 30.0  # for the backends of CONN_MAX_AGE=5 to close
POLL = 0.1  # seconds between two looks at pg_stat_activity
DETECT_TIMEOUT = 15.0  # for a dead caller or server to be noticed
FREE_TIMEOUT = 10.0  # for the worker of an abandoned stream to be free again
LONG_STREAM = 10**6  # items of count_up; ticket_list streams all TICKET_IDS tickets
SLEEP_CALL_TIMEOUT = 60.0
CALLS_IN_FLIGHT = 8  # when the server is killed

CALLER = """
import sys, time, msgpack, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
header = {"message_id": b"c" * 32, "v": 3}
sock.send_multipart([b"", msgpack.packb([header, "sleep", [30]], use_bin_type=True)])
print("sent", flush=True)
time.sleep(60)
"""


def report(label: str, value: Any) -> None:
    print(f"{label}: {value}", flush=True)


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def spread_text(values: list[float], of: int) -> str:
    figures = spread(values)
    if figures is None:
        return f"none of {of} measured"
    text = "min {min:.3f} s, median {median:.3f} s, max {max:.3f} s".format(**figures)
    return text + (f" ({len(values)} of {of} measured)" if len(values) < of else "")


# -- runrpc processes --------------------------------------------------------


class Runrpc:
    """A ``manage.py runrpc`` process we started, and its output, each line timed."""

    def __init__(self, settings: str, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.lines: list[tuple[float, str]] = []
        command = ["manage.py", "runrpc", "--noreload", f"--settings={settings}", *args]
        self.proc = subprocess.Popen(
            [sys.executable, *command, f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # to the end, so that a full pipe never blocks it
            if len(self.lines) < MAX_LINES:
                self.lines.append((time.monotonic(), line.rstrip()))

    def wait_for(self, text: str, timeout: float, start: int = 0) -> tuple[float, str] | None:
        """Return (when, line) of the first line from ``start`` on holding ``text``, or None."""
        import gevent

        deadline = time.monotonic() + timeout
        seen = start
        while time.monotonic() < deadline:
            for when, line in self.lines[seen:]:
                if text in line:
                    return when, line
            seen = max(seen, len(self.lines))
            if self.proc.poll() is not None:
                gevent.sleep(0.2)  # the reader may be behind
                return next(((w, ln) for w, ln in self.lines[seen:] if text in ln), None)
            gevent.sleep(0.02)
        return None

    def warnings(self) -> list[str]:
        return [line for _, line in self.lines if line.startswith("Warning:")]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def runrpc(settings: str, args: list[str], env: dict[str, str]) -> Iterator[Runrpc]:
    """Start runrpc, wait until it serves, and stop it by its process id at the end."""
    server = Runrpc(settings, args, env)
    try:
        if server.wait_for("Serving ", STARTUP_TIMEOUT) is None:
            tail = "\n".join(line for _, line in server.lines[-20:])
            raise RuntimeError(f"runrpc did not start within {STARTUP_TIMEOUT:.0f}s:\n{tail}")
        yield server
    finally:
        server.stop()


def base_env(database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def rpc_client(endpoint: str, **options: Any) -> Any:
    from django_zrpc import RPCClient

    return RPCClient(endpoint, **options)


# -- 1. database connections -------------------------------------------------


class Backends:
    """Counts, every POLL seconds in an OS thread, the backends of one application_name."""

    QUERY = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"

    def __init__(self, database_url: str, name: str) -> None:
        import psycopg

        self.conn = psycopg.connect(database_url, autocommit=True)
        self.name = name
        self.now = 0
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            row = self.conn.execute(self.QUERY, [self.name]).fetchone()
            self.now = row[0] if row else 0
            self.most = max(self.most, self.now)
            self._stop.wait(POLL)

    def reset(self) -> None:
        self.most = self.now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()


def load(endpoint: str, seconds: float) -> dict[str, Any]:
    """LOAD_CALLERS greenlets sharing one RPCClient call get_ticket for ``seconds``."""
    import gevent

    client = rpc_client(endpoint, timeout=10)
    calls = [0]
    failed: Counter[str] = Counter()
    examples: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    most_calls = int(seconds * 100_000)  # far above what 2 cores serve: the deadline ends it

    def caller(index: int) -> None:
        for i in range(index, most_calls, LOAD_CALLERS):
            if time.monotonic() >= deadline:
                return
            ticket = 1 + i % TICKET_IDS
            calls[0] += 1
            try:
                row = client.get_ticket(ticket)
                if not (isinstance(row, dict) and row.get("id") == ticket):
                    raise AssertionError(f"wrong answer {str(row)[:80]!r} for {ticket}")
            except Exception as err:
                failed[type(err).__name__] += 1
                examples.setdefault(type(err).__name__, str(err)[:200])

    try:
        greenlets = [gevent.spawn(caller, i) for i in range(LOAD_CALLERS)]
        gevent.joinall(greenlets, timeout=seconds + 30)
        gevent.killall(greenlets, timeout=5)
    finally:
        client.close()
    return {"calls": calls[0], "failed": dict(failed), "errors": examples}


def connections_part(database_url: str) -> dict[str, Any]:
    name = f"zrpc-robust-{uuid.uuid4().hex[:12]}"
    env = {**base_env(database_url), "DB_APPLICATION_NAME": name, "ZRPC_LOG_CALLS": "0"}
    backends = Backends(database_url, name)
    try:
        log(f"1. {LOAD_CALLERS} callers of get_ticket for {LOAD_SECONDS:g} s, CONN_MAX_AGE=60 ...")
        with runrpc(SETTINGS, [], {**env, "CONN_MAX_AGE": "60"}) as server:
            backends.reset()
            held = load(server.endpoint, LOAD_SECONDS)
            held["most_backends"] = backends.most
            time.sleep(1.0)
            held["backends_1s_after"] = backends.now
            held["warnings"] = [w for w in server.warnings() if "connection" in w]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while backends.now and time.monotonic() < deadline:  # the stopped server's
            time.sleep(POLL)
        log("1. the same load with CONN_MAX_AGE=5, then until no backend remains ...")
        with runrpc(SETTINGS, [], {**env, "CONN_MAX_AGE": "5"}) as server:
            backends.reset()
            drained = load(server.endpoint, LOAD_SECONDS)
            drained["most_backends"] = backends.most
            drained["seconds_to_no_backend"] = wait_for_no_backend(backends)
    finally:
        backends.close()
    return {"application_name": name, "conn_max_age_60": held, "conn_max_age_5": drained}


def wait_for_no_backend(backends: Backends) -> float | None:
    # Django ages a connection from when it opened, not from its last query:
    # after a load longer than CONN_MAX_AGE, each closes within CONN_MAX_AGE
    # (plus runrpc's idle check) of the load's end, often much sooner.
    stopped = time.monotonic()
    time.sleep(POLL * 1.5)  # a count taken after the load stopped
    while time.monotonic() - stopped < DRAIN_TIMEOUT:
        if backends.now == 0:
            return round(time.monotonic() - stopped, 2)
        time.sleep(POLL / 2)
    return None


def print_connections(result: dict[str, Any]) -> None:
    held, drained = result["conn_max_age_60"], result["conn_max_age_5"]
    under = f"{LOAD_SECONDS:g} s, {LOAD_CALLERS} callers"
    report(f"1. get_ticket calls in {under} (CONN_MAX_AGE=60)", held["calls"])
    report("1. calls failed (by error type)", held["failed"] or 0)
    for kind, message in held["errors"].items():
        report(f"1.   first {kind}", message)
    report("1. most backends at once (CONN_MAX_AGE=60)", held["most_backends"])
    report("1. backends 1 s after the load (CONN_MAX_AGE=60)", held["backends_1s_after"])
    report("1. runrpc's warning about connections", " | ".join(held["warnings"]) or "none")
    report(f"1. get_ticket calls in {under} (CONN_MAX_AGE=5)", drained["calls"])
    report("1. calls failed (CONN_MAX_AGE=5)", drained["failed"] or 0)
    report("1. most backends at once (CONN_MAX_AGE=5)", drained["most_backends"])
    seconds = drained["seconds_to_no_backend"]
    report(
        "1. seconds from the end of the load to no backend (CONN_MAX_AGE=5)",
        f"{seconds:.2f}" if seconds is not None else f"backends remain after {DRAIN_TIMEOUT:g} s",
    )


# -- 2. a caller killed mid-call ---------------------------------------------


def killed_caller(server: Runrpc, env: dict[str, str]) -> tuple[float | None, str]:
    """SIGKILL a caller 0.5 s into sleep 30; return (seconds until logged, the log line)."""
    import gevent

    start = len(server.lines)
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, server.endpoint],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert caller.stdout is not None
        ready, _, _ = select.select([caller.stdout], [], [], 10)
        if not ready or caller.stdout.readline().strip() != "sent":
            return None, "the caller did not send its call"
        gevent.sleep(0.5)  # the call is running
        caller.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        found = server.wait_for("rpc sleep lost its caller", DETECT_TIMEOUT, start)
        if found is None:
            return None, f"not logged within {DETECT_TIMEOUT:g} s"
        return found[0] - killed, found[1]
    finally:
        caller.kill()
        caller.wait(5)


def killed_caller_part(env: dict[str, str], repeat: int) -> dict[str, Any]:
    log(f"2. a caller killed mid-call, {repeat} times ...")
    seconds: list[float] = []
    lines: list[str] = []
    with runrpc(TEST_SETTINGS, [], env) as server:
        for _ in range(repeat):
            took, line = killed_caller(server, env)
            if took is not None:
                seconds.append(took)
            lines.append(line)
    return {"seconds": [round(s, 3) for s in seconds], "spread": spread(seconds), "log": lines[0]}


# -- 3. a server killed mid-call ---------------------------------------------


def killed_server(env: dict[str, str]) -> tuple[float | None, dict[str, int]]:
    """SIGKILL runrpc under 8 sleep 30 calls; return (seconds until all 8 raised, errors)."""
    import gevent

    from django_zrpc.exceptions import LostRemote

    with runrpc(TEST_SETTINGS, [], env) as server:
        client = rpc_client(server.endpoint, timeout=SLEEP_CALL_TIMEOUT)
        ended: list[float] = []
        raised: list[BaseException | None] = []

        def call() -> None:
            try:
                client.sleep(30)
                raised.append(None)
            except Exception as err:  # kept, not printed by gevent as a failed greenlet
                raised.append(err)
            ended.append(time.monotonic())

        try:
            client.echo(1)  # connected before the calls
            calls = [gevent.spawn(call) for _ in range(CALLS_IN_FLIGHT)]
            gevent.sleep(0.5)
            server.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            gevent.joinall(calls, timeout=DETECT_TIMEOUT)
            gevent.killall(calls, timeout=5)
        finally:
            client.close()
    errors = Counter(type(err).__name__ for err in raised)
    errors["not ended"] = CALLS_IN_FLIGHT - len(raised)
    lost = sum(isinstance(err, LostRemote) for err in raised)
    errors = +errors  # drop the zero counts
    return (max(ended) - killed if lost == CALLS_IN_FLIGHT else None), dict(errors)


def killed_server_part(env: dict[str, str], repeat: int) -> dict[str, Any]:
    log(f"3. a server killed under 8 calls, {repeat} times ...")
    seconds: list[float] = []
    errors: Counter[str] = Counter()
    for _ in range(repeat):
        took, raised = killed_server(env)
        if took is not None:
            seconds.append(took)
        errors.update(raised)
    return {"seconds": [round(s, 3) for s in seconds], "spread": spread(seconds), "raised": errors}


# -- 4. an abandoned stream --------------------------------------------------


def abandoned_stream(server: Runrpc, client: Any, stream_call: Callable[[], Any]) -> dict:
    """Read one item of a long stream, close it; seconds until echo is served again."""
    import gevent

    from django_zrpc.exceptions import RemoteError

    start = len(server.lines)
    stream = stream_call()
    next(stream)
    stream.close()
    closed = time.monotonic()
    refused = 0
    served = None
    while time.monotonic() - closed < FREE_TIMEOUT and refused < 100_000:
        try:
            client.echo("free")
            served = time.monotonic() - closed
            break
        except RemoteError as err:
            if getattr(err, "name", "") != "ServerBusy":
                raise
            refused += 1
            gevent.sleep(0.005)
    logged = server.wait_for("stopped: its caller cancelled it", 2.0, start)
    return {
        "seconds": served,
        "refused_as_busy": refused,
        "logged_after": None if logged is None else logged[0] - closed,
        "log": None if logged is None else logged[1],
    }


def abandoned_stream_part(database_url: str | None, repeat: int) -> dict[str, Any]:
    if database_url:
        settings, name, args = SETTINGS, "ticket_list", (TICKET_IDS,)
    else:
        settings, name, args = TEST_SETTINGS, "count_up", (LONG_STREAM,)
    log(f"4. {name} closed after one item, {repeat} times ...")
    env = base_env(database_url)
    runs = []
    with runrpc(settings, ["--concurrency", "1", "--backlog", "0"], env) as server:
        client = rpc_client(server.endpoint, timeout=10)
        try:
            for _ in range(repeat):
                runs.append(abandoned_stream(server, client, lambda: client.call(name, *args)))
        finally:
            client.close()
    seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
    return {
        "stream": f"{name}{args}",
        "seconds": [round(s, 4) for s in seconds],
        "spread": spread(seconds),
        "refused_as_busy": [r["refused_as_busy"] for r in runs],
        "logged_after": [
            None if r["logged_after"] is None else round(r["logged_after"], 4) for r in runs
        ],
        "log": runs[0]["log"],
    }


# -- 5. mismatched heartbeats -------------------------------------------------


def heartbeats_part(env: dict[str, str]) -> dict[str, Any]:
    import gevent
    import zerorpc

    log("5. sleep 3 on runrpc --heartbeat 1 from 5 s heartbeat clients ...")
    with runrpc(TEST_SETTINGS, ["--heartbeat", "1"], env) as server:
        stock = zerorpc.Client(server.endpoint, heartbeat=5, timeout=20)
        ours = rpc_client(server.endpoint)
        results: dict[str, Any] = {}

        def timed(label: str, call: Callable[[], Any]) -> None:
            started = time.monotonic()
            try:
                value = call()
                results[label] = {"completed": value == 3, "result": value}
            except Exception as err:
                results[label] = {"completed": False, "error": f"{type(err).__name__}: {err}"}
            results[label]["seconds"] = round(time.monotonic() - started, 3)

        try:
            calls = [
                gevent.spawn(timed, "zerorpc.Client(heartbeat=5)", lambda: stock.sleep(3)),
                gevent.spawn(timed, "RPCClient (defaults)", lambda: ours.sleep(3)),
            ]
            gevent.joinall(calls, timeout=30)
            gevent.killall(calls, timeout=5)
        finally:
            stock.close()
            ours.close()
        lost = [line for _, line in server.lines if "lost its caller" in line]
    return {"clients": results, "lost_its_caller_logged": lost}


# -- 6. a stalled server -------------------------------------------------------

STALL_CALLERS = 32
STALL_SETTLE = 3.0  # seconds after SIGSTOP not judged: its calls in flight time out


def stalled_part(env: dict[str, str], asyncio_client: bool = False) -> dict[str, Any]:
    import django
    import gevent
    from django.conf import settings

    if not settings.configured:
        # A client in a Django process, as in a view: its metrics and its
        # ZRPC_OUTLIER_* settings are read from the tests' settings.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", TEST_SETTINGS)
        django.setup()
    kind = "AsyncRPCClient" if asyncio_client else "RPCClient"
    log(f"6. one of three servers SIGSTOPped under 32 callers of an {kind}, then SIGCONT ...")
    with (
        runrpc(TEST_SETTINGS, [], env) as first,
        runrpc(TEST_SETTINGS, [], env) as stalled,
        runrpc(TEST_SETTINGS, [], env) as third,
    ):
        endpoints = [first.endpoint, stalled.endpoint, third.endpoint]
        # (when it ended, the pid that answered or 0 for a failure)
        outcomes: list[tuple[float, int]] = []
        running = [True]
        start_callers = _asyncio_callers if asyncio_client else _greenlet_callers
        stop_callers = start_callers(endpoints, outcomes, running)

        def window(start: float, end: float) -> list[int]:
            return [pid for at, pid in outcomes if start <= at < end]

        try:
            gevent.sleep(1.0)  # connections made
            measured_from = time.monotonic()
            gevent.sleep(5.0)
            stopped_at = time.monotonic()
            three = len(window(measured_from, stopped_at)) / (stopped_at - measured_from)
            stalled.proc.send_signal(signal.SIGSTOP)
            try:
                gevent.sleep(STALL_SETTLE + 10.0)
            finally:
                stalled.proc.send_signal(signal.SIGCONT)
            continued_at = time.monotonic()
            judged = window(stopped_at + STALL_SETTLE, continued_at)
            back_after = None
            for _ in range(600):
                now = time.monotonic()
                recent = window(now - 2.0, now)
                if recent and recent.count(stalled.proc.pid) >= 0.15 * len(recent):
                    back_after = now - continued_at
                    break
                if now - continued_at > 60:
                    break
                gevent.sleep(0.1)
            now = time.monotonic()
            recent = window(now - 2.0, now)
        finally:
            running[0] = False
            stop_callers()
    failed = judged.count(0)
    rate = len(judged) / (continued_at - stopped_at - STALL_SETTLE)
    return {
        "calls_after_settle": len(judged),
        "failed": failed,
        "failed_percent": round(100 * failed / len(judged), 3) if judged else None,
        "to_stalled": judged.count(stalled.proc.pid),
        "rate_three": round(three),
        "rate_stalled": round(rate),
        "rate_ratio": round(rate / three, 3) if three else None,
        "back_after_sigcont": None if back_after is None else round(back_after, 1),
        "share_after": round(recent.count(stalled.proc.pid) / len(recent), 3) if recent else None,
    }


def _greenlet_callers(
    endpoints: list[str], outcomes: list[tuple[float, int]], running: list[bool]
) -> Callable[[], None]:
    """Start STALL_CALLERS greenlets sharing one ``RPCClient``; return what stops them."""
    import gevent

    from django_zrpc import RPCClient

    client = RPCClient(endpoints, timeout=1)

    def caller() -> None:
        for _ in range(10_000_000):
            if not running[0]:
                return
            try:
                outcomes.append((time.monotonic(), client.server_pid()))
            except Exception:
                outcomes.append((time.monotonic(), 0))
                gevent.sleep(0.01)

    greenlets = [gevent.spawn(caller) for _ in range(STALL_CALLERS)]

    def stop() -> None:
        gevent.joinall(greenlets, timeout=10)
        gevent.killall(greenlets, timeout=5)
        client.close()

    return stop


def _asyncio_callers(
    endpoints: list[str], outcomes: list[tuple[float, int]], running: list[bool]
) -> Callable[[], None]:
    """Start STALL_CALLERS tasks sharing one ``AsyncRPCClient``, on an event loop of a thread."""
    import asyncio

    from django_zrpc import AsyncRPCClient

    async def caller(client: AsyncRPCClient) -> None:
        for _ in range(10_000_000):
            if not running[0]:
                return
            try:
                outcomes.append((time.monotonic(), await client.server_pid()))
            except Exception:
                outcomes.append((time.monotonic(), 0))
                await asyncio.sleep(0.01)

    async def main() -> None:
        async with AsyncRPCClient(endpoints, timeout=1) as client:
            await asyncio.gather(*(caller(client) for _ in range(STALL_CALLERS)))

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    # The calls end within their 1 s timeout once running is false.
    return lambda: thread.join(10)


def print_stalled(result: dict[str, Any], kind: str = "") -> None:
    report(
        f"6. stalled server{kind}, calls after the first {STALL_SETTLE:.0f} s",
        f"{result['calls_after_settle']}, {result['failed']} failed "
        f"({result['failed_percent']}%), {result['to_stalled']} answered by the stalled one",
    )
    report(
        f"6. rate while stalled vs three servers{kind}",
        f"{result['rate_stalled']}/s vs {result['rate_three']}/s ({result['rate_ratio']:.0%})",
    )
    back = result["back_after_sigcont"]
    report(
        f"6. after SIGCONT, it answers 15% of the calls again{kind}",
        "not within 60 s" if back is None else f"after {back} s (share {result['share_after']})",
    )


# -- the run -----------------------------------------------------------------


def postgres_url() -> tuple[str | None, str]:
    """Return (the benchmarks' database zrpc_bench on PostgreSQL, why not)."""
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql"):
        return None, "DATABASE_URL is unset or not postgres://"
    from benchmarks.database import prepare_database

    env = base_env(None)
    bench_url, _label, reason = prepare_database(TICKET_IDS, env)
    return (None, reason) if reason else (bench_url, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of parts 2 to 4 (1..20)")
    parser.add_argument(
        "--parts", default="1234567", help="the parts to run, as digits (default: all, 1234567)"
    )
    args = parser.parse_args()
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be 1..20")
    if not args.parts or set(args.parts) - set("1234567"):
        parser.error(f"--parts takes digits 1 to 7, like 16; not {args.parts!r}.")
    parts = set(args.parts)
    started = time.monotonic()
    database_url, why_not = postgres_url()
    env = base_env(database_url)
    result: dict[str, Any] = {}
    if "1" in parts and database_url:
        result["connections"] = connections_part(database_url)
        print_connections(result["connections"])
    elif "1" in parts:
        result["connections"] = {"skipped": why_not}
        report("1. database connections", f"skipped: {why_not}")
    if "2" in parts:
        part2(result, env, args.repeat)
    if "3" in parts:
        part3(result, env, args.repeat)
    if "4" in parts:
        part4_run(result, database_url, args.repeat)
    if "5" in parts:
        part5(result, env)
    if "6" in parts:
        result["stalled"] = stalled_part(env)
        print_stalled(result["stalled"])
        result["stalled_asyncio"] = stalled_part(env, asyncio_client=True)
        print_stalled(result["stalled_asyncio"], " (AsyncRPCClient)")
    if "7" in parts:
        from benchmarks import overload

        result["overload"] = overload.run(lambda args: runrpc(TEST_SETTINGS, args, env))
        overload.print_result(result["overload"], report)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, default=str))


def part2(result: dict[str, Any], env: dict[str, str], repeat: int) -> None:
    result["killed_caller"] = killed_caller_part(env, repeat)
    report(
        "2. caller SIGKILLed mid-call -> runrpc logs 'lost its caller'",
        spread_text(result["killed_caller"]["seconds"], repeat),
    )
    report("2. runrpc's line", result["killed_caller"]["log"])


def part3(result: dict[str, Any], env: dict[str, str], repeat: int) -> None:
    result["killed_server"] = killed_server_part(env, repeat)
    report(
        f"3. server SIGKILLed -> all {CALLS_IN_FLIGHT} calls raised LostRemote",
        spread_text(result["killed_server"]["seconds"], repeat),
    )
    report("3. errors raised (all runs)", dict(result["killed_server"]["raised"]))


def part4_run(result: dict[str, Any], database_url: str | None, repeat: int) -> None:
    result["abandoned_stream"] = part4 = abandoned_stream_part(database_url, repeat)
    report(
        f"4. {part4['stream']} closed after 1 item -> next call served",
        spread_text(part4["seconds"], repeat),
    )
    report("4. calls refused as busy meanwhile, per run", part4["refused_as_busy"])
    report("4. 'stopped: its caller cancelled it' logged after (s), per run", part4["logged_after"])


def part5(result: dict[str, Any], env: dict[str, str]) -> None:
    result["heartbeats"] = heartbeats_part(env)
    for label, outcome in result["heartbeats"]["clients"].items():
        done = "completed" if outcome["completed"] else f"failed ({outcome.get('error')})"
        report(f"5. sleep 3 on --heartbeat 1, {label}", f"{done} in {outcome['seconds']:.3f} s")
    report("5. 'lost its caller' logged", len(result["heartbeats"]["lost_its_caller_logged"]))


if __name__ == "__main__":
    main()
