"""runrpc's ops endpoint: ``/livez``, ``/readyz`` and ``/metrics`` over HTTP.

Served by gevent's ``pywsgi`` in runrpc's own event loop, beside the RPC
socket: a probe costs the loop a few microseconds, and ``/livez`` goes
unanswered exactly when the loop stops turning (a function that never
yields), which is what a liveness probe must see. ``/readyz`` answers 503
with one line per reason: the server is stopping (from the moment SIGTERM
arrives, before the drain, so that a load balancer stops sending first), its
CURVE ZAP handler stopped, a database does not answer. The database is asked
in a thread with a deadline, never on the loop (``DatabaseCheck``).

The endpoint shares the process's file descriptors with the RPC socket, so
it may never take them all: it holds at most ``max_connections``, a
connection has ``header_timeout`` seconds to send each request's head, and
when a new one comes while all are taken, the one that has waited longest
for its head is closed (``OpsServer``). A flood of half-open connections
then costs a bounded number of descriptors and never keeps a probe out.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from django.db import connections
from gevent.pywsgi import LoggingLogAdapter, WSGIHandler, WSGIServer

from django_zrpc.addrport import AddrPort

logger = logging.getLogger("django_zrpc.ops")

#: Seconds a database has to answer ``SELECT 1`` before /readyz says it does not.
DB_TIMEOUT = 2.0
#: Seconds a database's answer stands for the next probes: a burst of probes
#: from several load balancers asks the database once.
DB_CHECK_TTL = 1.0

#: The ops endpoint's share of the process's open-file limit, at most: the
#: rest is the RPC socket's (its peers, the database, the log files).
FD_SHARE = 8
#: The fewest connections the endpoint holds, however low the limit.
MIN_CONNECTIONS = 4

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
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            # pywsgi leaves the body out of HEAD replies itself.
            return _reply(
                start_response,
                "405 Method Not Allowed",
                b"Only GET and HEAD are served here.\n",
                extra=[("Allow", "GET, HEAD")],
            )
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
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


class _HeadTimeout(Exception):
    """A connection did not send a request's head in time, or made room for a newer one."""


class _OpsHandler(WSGIHandler):
    """pywsgi's handler, with a deadline on each request's head."""

    server: OpsServer

    def handle_one_request(self) -> Any:
        server = self.server
        # The deadline covers the request line and the headers, not the
        # answer: a slow /metrics reader is not a slow sender.
        self._head_timer = gevent.Timeout.start_new(server.header_timeout, _HeadTimeout)
        server.reading[self] = gevent.getcurrent()
        try:
            return super().handle_one_request()
        except _HeadTimeout:
            return None  # handle() closes the connection
        finally:
            self._head_timer.close()
            server.reading.pop(self, None)

    def _handle_client_error(self, ex: BaseException) -> Any:
        # The deadline may strike in the headers, which pywsgi reads in a
        # try that answers 400 to anything: a slow sender gets no answer.
        if isinstance(ex, _HeadTimeout):
            raise ex
        return super()._handle_client_error(ex)

    def handle_one_response(self) -> Any:
        self._head_timer.close()
        self.server.reading.pop(self, None)
        return super().handle_one_response()


class OpsServer(WSGIServer):
    """A ``WSGIServer`` that holds at most ``max_connections``, each with a head deadline."""

    handler_class = _OpsHandler

    def __init__(
        self, *args: Any, max_connections: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0
        #: Handlers waiting for a request's head, oldest first, and their greenlets.
        self.reading: dict[_OpsHandler, Any] = {}

    def handle(self, sock: Any, address: Any) -> None:
        if self.open >= self.max_connections:
            if not self.reading:
                return  # every connection is being answered: this one waits its turn closed
            # Closing the longest waiter rather than refusing the newcomer:
            # a flood of slow heads cannot keep a probe, quick to send its
            # head, from being answered.
            oldest = next(iter(self.reading))
            self.reading.pop(oldest).kill(_HeadTimeout, block=False)
        self.open += 1
        try:
            super().handle(sock, address)
        finally:
            self.open -= 1


def serve(
    addrport: AddrPort, app: OpsApp, max_connections: int = 64, header_timeout: float = 5.0
) -> OpsServer:
    """Start serving ``app`` on ``addrport`` in this event loop; raise ``OSError`` if it cannot.

    ``max_connections`` is lowered to a share of the open-file limit
    (``FD_SHARE``), so that descriptors remain for the RPC socket.
    """
    # What pywsgi reports is a peer's malformed request: a port scan or a
    # ZeroMQ client at the wrong port. Worth a debug line, not an error each.
    errors = LoggingLogAdapter(logger, logging.DEBUG)
    server = OpsServer(
        (addrport.host, addrport.port),
        app,
        log=None,
        error_log=errors,
        max_connections=connection_cap(max_connections),
        header_timeout=header_timeout,
    )
    server.start()
    return server


def connection_cap(wanted: int) -> int:
    """Return ``wanted``, or the ops endpoint's share of the open-file limit if that is less."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(min(wanted, soft // FD_SHARE), MIN_CONNECTIONS)


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
