"""The server's Prometheus metrics: a ``server.observer.Observer`` that counts what runrpc does.

One process (``runrpc``) keeps them in prometheus_client's default registry,
beside any metrics of the project's own functions; workers of ``runrpc
--workers N`` keep them in prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor), which the supervisor
sums (``metrics.workers``). Gauges (calls running and waiting, workers busy,
database connections) are read from the server when sampled, not counted per
call: ``livesum`` adds them up over the live workers.

Cheap by construction: in one process a call's count, latency and wait are
kept in a ``metrics.table.Table``, under one lock a call and turned into
Prometheus families when scraped; in multiprocess mode they are
prometheus_client's own, their labelled children made once per function and
outcome. Function labels are only the names the server serves,
so that a caller cannot grow the series by calling names that do not exist.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created
from prometheus_client import Counter, Gauge, Histogram

from django_zrpc.metrics.buckets import BUCKETS
from django_zrpc.metrics.table import Table, multiprocess, native_allocate_lock
from django_zrpc.server.observer import Observer


def _use_native_locks() -> None:
    """Give the values made from now on the interpreter's lock, not gevent's patched one.

    runrpc patches ``threading`` before prometheus_client loads, so each value
    would take a gevent lock, a Python-level object: measured (2026-11-29, 2
    cores), a call's three updates cost 6-11 us with it, 3.5 us with the
    native lock. The native lock is safe here: an update never yields while it
    holds the lock, so no other greenlet can wait on it, and threads (blocking
    functions) wait on it as they should. Values in multiprocess mode share one
    lock made at import, which stays as it is.
    """
    from gevent import monkey
    from prometheus_client import values

    if monkey.is_module_patched("threading"):
        values.Lock = native_allocate_lock()  # type: ignore[assignment]  # the same lock type


_use_native_locks()

#: The label of a function the server does not serve (a caller's typo).
UNKNOWN = "_unknown"

CALLS_NAME = "zrpc_server_calls"
CALLS_HELP = (
    "Calls by function and outcome (ok, error, lost, cancelled, busy, stopping, bad_request); "
    "error: the exception's type."
)
DURATION_NAME = "zrpc_server_call_duration_seconds"
DURATION_HELP = "Seconds a call ran on its worker, by function."
WAIT_NAME = "zrpc_server_call_wait_seconds"
WAIT_HELP = "Seconds a call waited for a free worker."


class _Native:
    """Calls counted in prometheus_client's own Counter and Histograms (multiprocess mode)."""

    def __init__(self) -> None:
        self.calls = Counter(CALLS_NAME, CALLS_HELP, ["function", "outcome", "error"])
        self.duration = Histogram(DURATION_NAME, DURATION_HELP, ["function"], buckets=BUCKETS)
        self.wait = Histogram(WAIT_NAME, WAIT_HELP, buckets=BUCKETS)
        # The labelled children, made once per function and outcome.
        self._ended: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def started(self, waited: float) -> None:
        self.wait.observe(waited)

    def ended(self, label: str, outcome: str, error: str, seconds: float) -> None:
        key = (label, outcome, error)
        children = self._ended.get(key)
        if children is None:
            children = (self.calls.labels(*key), self.duration.labels(label))
            if label != UNKNOWN:  # an unknown name is one of many: keep no entry per name
                self._ended[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def refused(self, label: str, outcome: str) -> None:
        self.calls.labels(label, outcome, "").inc()


class _Tabled:
    """The same, in a ``metrics.table.Table``: one lock a call (one process)."""

    def __init__(self) -> None:
        self.table = Table()
        self.calls = self.table.counter(CALLS_NAME, CALLS_HELP, ["function", "outcome", "error"])
        self.duration = self.table.histogram(DURATION_NAME, DURATION_HELP, ["function"])
        self.wait = self.table.histogram(WAIT_NAME, WAIT_HELP, [])
        self.table.register()

    def started(self, waited: float) -> None:
        with self.table.lock:
            Table.observe(self.wait, (), waited)

    def ended(self, label: str, outcome: str, error: str, seconds: float) -> None:
        key = (label, outcome, error)
        with self.table.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            Table.observe(self.duration, (label,), seconds)

    def refused(self, label: str, outcome: str) -> None:
        key = (label, outcome, "")
        with self.table.lock:
            self.calls[key] = self.calls.get(key, 0) + 1


# Calls, their latency and their wait: the families every call updates.
_CALLS: _Native | _Tabled = _Native() if multiprocess() else _Tabled()

STREAM_ITEMS = Counter(
    "zrpc_server_stream_items_sent", "Items sent by streams, by function.", ["function"]
)
BAD_FRAMES = Counter(
    "zrpc_server_bad_frames_dropped", "Frames dropped: unreadable, or a duplicate request."
)
HANDSHAKES_REFUSED = Counter(
    "zrpc_server_handshakes_refused", "Connections that failed their handshake (CURVE or ZMTP)."
)
DENIED = Counter(
    "zrpc_server_calls_denied",
    "Calls refused for their caller, not run, by function and reason (identity, key, login, "
    "permission, allow).",
    ["function", "reason"],
)
RUNNING = Gauge(
    "zrpc_server_calls_running", "Calls running on a worker.", multiprocess_mode="livesum"
)
WAITING = Gauge(
    "zrpc_server_calls_waiting", "Calls waiting for a free worker.", multiprocess_mode="livesum"
)
BUSY = Gauge("zrpc_server_workers_busy", "Worker greenlets not idle.", multiprocess_mode="livesum")
WORKERS = Gauge(
    "zrpc_server_workers", "Worker greenlets (--concurrency).", multiprocess_mode="livesum"
)
DB_CONNECTIONS = Gauge(
    "zrpc_server_db_connections",
    "Database connections open, by database alias.",
    ["database"],
    multiprocess_mode="livesum",
)


class ServerMetrics(Observer):
    """Count calls for Prometheus; ``sample(server)`` refreshes the gauges."""

    def __init__(self, known: Collection[str] = ()) -> None:
        self.known = frozenset(known)
        # Every connection Django opens in this process, for the gauge:
        # Django keeps one per worker greenlet, where no one can list them.
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()
        connection_created.connect(self._on_connection_created, weak=False)

    def _label(self, name: str) -> str:
        return name if name in self.known else UNKNOWN

    def call_started(self, name: str, waited: float) -> None:
        _CALLS.started(waited)

    def call_ended(self, name: str, outcome: str, seconds: float, error: str = "") -> None:
        _CALLS.ended(self._label(name), outcome, error, seconds)

    def call_refused(self, name: str, outcome: str) -> None:
        _CALLS.refused(self._label(name), outcome)

    def call_denied(self, name: str, reason: str) -> None:
        DENIED.labels(self._label(name), reason).inc()

    def stream_items_sent(self, name: str, count: int) -> None:
        if count:
            STREAM_ITEMS.labels(self._label(name)).inc(count)

    def frame_dropped(self) -> None:
        BAD_FRAMES.inc()

    def handshake_refused(self) -> None:
        HANDSHAKES_REFUSED.inc()

    def sample(self, server: Any) -> None:
        """Set the gauges from ``server`` (a ``server.engine.Server``) and the open connections."""
        running, waiting, busy = server.load()
        RUNNING.set(running)
        WAITING.set(waiting)
        BUSY.set(busy)
        WORKERS.set(server.concurrency)
        counts = dict.fromkeys(connections, 0)
        for wrapper in list(self._opened):
            if wrapper.connection is not None and wrapper.alias in counts:
                counts[wrapper.alias] += 1
        for alias, count in counts.items():
            DB_CONNECTIONS.labels(alias).set(count)

    def _on_connection_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        self._opened.add(connection)
