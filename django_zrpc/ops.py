"""runrpc's ops endpoint: ``/livez``, ``/readyz`` and ``/metrics`` over HTTP (issue 17).

Served by gevent's ``pywsgi`` in runrpc's own event loop, beside the RPC
socket: a probe costs the loop a few microseconds, and ``/livez`` goes
unanswered exactly when the loop stops turning (a function that never
yields), which is what a liveness probe must see. ``/readyz`` answers 503
with one line per reason: the server is stopping (from the moment SIGTERM
arrives, before the drain, so that a load balancer stops sending first), its
CURVE ZAP handler stopped, a database does not answer. The database is asked
in a thread with a deadline, never on the loop (``DatabaseCheck``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from django.db import connections
from gevent.pywsgi import LoggingLogAdapter, WSGIServer

from django_zrpc.addrport import AddrPort

logger = logging.getLogger("django_zrpc.ops")

#: Seconds a database has to answer ``SELECT 1`` before /readyz says it does not.
DB_TIMEOUT = 2.0
#: Seconds a database's answer stands for the next probes: a burst of probes
#: from several load balancers asks the database once.
DB_CHECK_TTL = 1.0

Problems = Callable[[], list[str]]
Metrics = Callable[[], tuple[bytes, str]]


class DatabaseCheck:
    """Ask every database for ``SELECT 1`` in a thread; remember the answer for a second.

    At most one check runs at a time: a database that hangs costs one thread,
    however often the probes come, and keeps /readyz at 503 until it answers.
    """

    def __init__(self, timeout: float = DB_TIMEOUT, ttl: float = DB_CHECK_TTL) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._running: Any = None
        self._started = 0.0
        self._answer: list[str] = []
        self._answered = -float("inf")

    def __call__(self) -> list[str]:
        now = time.monotonic()
        if self._running is None and now - self._answered < self.ttl:
            return self._answer
        if self._running is None:
            self._started = now
            self._running = gevent.get_hub().threadpool.spawn(_ask_databases)
        try:
            self._answer = self._running.get(timeout=self.timeout)
        except gevent.Timeout:
            waited = time.monotonic() - self._started
            return [f"The database has not answered SELECT 1 in {waited:.1f} s."]
        self._running = None
        self._answered = time.monotonic()
        return self._answer


def _ask_databases() -> list[str]:
    """Run ``SELECT 1`` on each database on a connection of this thread; close it after."""
    problems = []
    for alias in connections:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            problems.append(f"Database {alias!r} does not answer: {reason}")
        finally:
            connection.close()
    return problems


class OpsApp:
    """The WSGI application: health from ``problems``, Prometheus text from ``metrics``."""

    def __init__(self, problems: Iterable[Problems], metrics: Metrics | None) -> None:
        self.problems = list(problems)
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            return _reply(start_response, "200 OK", b"alive\n")
        if path == "/readyz":
            found = [problem for check in self.problems for problem in check()]
            if found:
                body = "".join(f"{problem}\n" for problem in found).encode()
                return _reply(start_response, "503 Service Unavailable", body)
            return _reply(start_response, "200 OK", b"ready\n")
        if path == "/metrics" and self.metrics is not None:
            body, content_type = self.metrics()
            return _reply(start_response, "200 OK", body, content_type)
        return _reply(start_response, "404 Not Found", b"Try /livez, /readyz or /metrics.\n")


def _reply(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def serve(addrport: AddrPort, app: OpsApp) -> WSGIServer:
    """Start serving ``app`` on ``addrport`` in this event loop; raise ``OSError`` if it cannot."""
    # What pywsgi reports is a peer's malformed request: a port scan or a
    # ZeroMQ client at the wrong port. Worth a debug line, not an error each.
    errors = LoggingLogAdapter(logger, logging.DEBUG)
    server = WSGIServer((addrport.host, addrport.port), app, log=None, error_log=errors)
    server.start()
    return server


def for_server(server: Any, observer: Any) -> OpsApp:
    """Return the ops application of a lone runrpc serving ``server`` (a core ``Server``).

    ``observer``: its ``ServerMetrics``, or None to serve no /metrics.
    """
    metrics = None
    if observer is not None:
        from django_zrpc.metrics.exposition import this_process

        metrics = this_process(lambda: observer.sample(server))
    return OpsApp([server.problems, DatabaseCheck()], metrics)


def for_supervisor(supervisor: Any, metrics: Metrics | None) -> OpsApp:
    """Return the ops application of ``runrpc --workers N``: one address for every worker.

    Ready while all N workers serve and the database answers: a worker whose
    ZAP handler stops ends itself, and is replaced, so the count covers it.
    """
    return OpsApp([supervisor.problems, DatabaseCheck()], metrics)
