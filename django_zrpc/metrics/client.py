"""The client's Prometheus metrics, in the Django process's default registry.

``RPCClient`` and its pools call the small functions here at one line each;
they do nothing when ``ZRPC_METRICS = False`` or prometheus_client is not
installed. The metrics live in prometheus_client's default ``REGISTRY``,
which django-prometheus, ``prometheus_client.start_http_server`` and the
other exporters already serve, and which prometheus_client's multiprocess
mode sums over gunicorn's workers. Labels are the endpoints and function
names the project's own code chooses, so their number stays bounded.

Every call is counted and timed, so those two are kept in a
``metrics.table.Table`` (one lock a call, read when the registry is scraped)
but in prometheus_client's multiprocess mode, where they are its Counter and
Histogram.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_zrpc import conf
from django_zrpc.metrics.buckets import BUCKETS
from django_zrpc.metrics.table import Table, multiprocess, native_allocate_lock

logger = logging.getLogger("django_zrpc.client")

_metrics: SimpleNamespace | None = None
# Whether metrics are on: ZRPC_METRICS is read once, not per call (the
# settings lookup cost as much as the metrics), and again when a test
# changes it (setting_changed).
_on: bool | None = None
# The labelled children of the calls and duration metrics, by their labels
# (multiprocess mode only; else the calls go to _table).
_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
# The calls and duration families when not in multiprocess mode (a Table).
_table: Table | None = None
_calls: dict[Any, float] = {}
_durations: dict[Any, list[float]] = {}

CALLS = "zrpc_client_calls"
CALLS_HELP = "Calls by endpoint, function and outcome (ok, error); error: the exception's type."
DURATION = "zrpc_client_call_duration_seconds"
DURATION_HELP = "Seconds a call took, on one endpoint, from the caller's side."


@receiver(setting_changed)
def _forget_setting(setting: str, **kwargs: Any) -> None:
    global _on
    if setting == "ZRPC_METRICS":
        _on = None


def _get() -> SimpleNamespace | None:
    """Return the metrics, made on first use; None when they are off."""
    global _on
    if _on is None:
        _on = conf.get("METRICS") is not False and _installed()
    if not _on:
        return None
    return _metrics or _make()


def _installed() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


# The first calls of a process may come from many threads at once (gthread
# workers, a thread pool): the metrics are made by one of them, the others
# wait for it. The interpreter's lock, as the table's: nothing in _make
# yields to another greenlet while it is held.
_make_lock = native_allocate_lock()()


def _make() -> SimpleNamespace | None:
    global _metrics, _table, _calls, _durations, _on
    with _make_lock:
        if _metrics is not None:
            return _metrics
        try:
            table, made = _build()
        except ValueError as err:  # prometheus_client: a name is registered already
            # Metrics must never fail a call: without them, calls go on.
            _on = False
            logger.error(
                "The client's metrics are off in this process: %s. Something else "
                "registered the same names in prometheus_client's default registry; "
                "rename those, or set ZRPC_METRICS = False.",
                err,
            )
            return None
        # Published only once registered (a table nobody registered would
        # swallow the counts), _metrics last: a caller that sees it set
        # reads the table next.
        if table is not None:
            _calls, _durations, _table = table.calls, table.durations, table.table
        _metrics = made
        return _metrics


def _build() -> tuple[SimpleNamespace | None, SimpleNamespace]:
    """Make and register every metric, or none: a failed registration leaves nothing behind."""
    from prometheus_client import REGISTRY

    table, calls, duration, collectors = _calls_and_durations()
    metrics = SimpleNamespace(calls=calls, duration=duration, **_the_others())
    collectors += [
        metrics.pool_waits,
        metrics.retries,
        metrics.retries_refused,
        metrics.up,
        metrics.ejections,
        metrics.ejected,
    ]
    registered: list[Any] = []
    try:
        for collector in collectors:
            REGISTRY.register(collector)
            registered.append(collector)
    except BaseException:
        for collector in registered:
            REGISTRY.unregister(collector)
        raise
    return table, metrics


def _calls_and_durations() -> tuple[SimpleNamespace | None, Any, Any, list[Any]]:
    """The families every call updates: prometheus_client's in multiprocess mode, else a Table."""
    from prometheus_client import Counter, Histogram

    labels = ["endpoint", "function", "outcome", "error"]
    if multiprocess():
        calls = Counter(CALLS, CALLS_HELP, labels, registry=None)
        duration = Histogram(DURATION, DURATION_HELP, labels[:2], buckets=BUCKETS, registry=None)
        return None, calls, duration, [calls, duration]
    made = Table()
    table = SimpleNamespace(
        table=made,
        calls=made.counter(CALLS, CALLS_HELP, labels),
        durations=made.histogram(DURATION, DURATION_HELP, labels[:2]),
    )
    return table, None, None, [made]


def _the_others() -> dict[str, Any]:
    """The metrics of pools, retries and endpoints, none registered yet."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "pool_waits": Histogram(
            "zrpc_client_pool_wait_seconds",
            "Seconds a call waited for room in a full pool (calls that did not wait are not "
            "counted).",
            ["endpoint"],
            buckets=BUCKETS,
            registry=None,
        ),
        "retries": Counter(
            "zrpc_client_retries",
            "Calls sent again, by endpoint, function and the error that made them retry.",
            ["endpoint", "function", "error"],
            registry=None,
        ),
        "retries_refused": Counter(
            "zrpc_client_retries_refused",
            "Failed calls not sent again: the endpoint's retry budget was spent (budget), or "
            "its pool had no room for the retry (pool_full).",
            ["endpoint", "reason"],
            registry=None,
        ),
        "up": Gauge(
            "zrpc_client_endpoint_up",
            "1 while an endpoint is taking calls, 0 while it is avoided after a failure.",
            ["endpoint"],
            multiprocess_mode="livemin",
            registry=None,
        ),
        "ejections": Counter(
            "zrpc_client_ejections",
            "Times an endpoint was ejected: it stopped answering while the others answered, "
            "or its calls timed out in a row.",
            ["endpoint"],
            registry=None,
        ),
        "ejected": Gauge(
            "zrpc_client_endpoints_ejected",
            "Endpoints ejected now (they take no calls but one probe until their time is up).",
            multiprocess_mode="livesum",
            registry=None,
        ),
    }


def record_call(
    endpoint: str, function: str, outcome: str, seconds: float, error: str = ""
) -> None:
    """Count one call to ``endpoint``: ``outcome`` "ok" or "error" (``error``: its type)."""
    metrics = _get()
    if metrics is None:
        return
    key = (endpoint, function, outcome, error)
    if _table is not None:
        with _table.lock:
            _calls[key] = _calls.get(key, 0) + 1
            Table.observe(_durations, key[:2], seconds)
        return
    children = _children.get(key)
    if children is None:
        # labels() takes a lock and builds a key each time: once per series.
        children = _children[key] = (
            metrics.calls.labels(endpoint, function, outcome, error),
            metrics.duration.labels(endpoint, function),
        )
    children[0].inc()
    children[1].observe(seconds)


def record_outcome(
    endpoint: str, function: str, started: float, error: BaseException | None = None
) -> None:
    """Count one call to ``endpoint`` begun at ``started`` (``time.perf_counter()``) and ended now.

    It ended ok, or failed with ``error``.
    """
    seconds = time.perf_counter() - started
    if error is None:
        record_call(endpoint, function, "ok", seconds)
    else:
        record_call(endpoint, function, "error", seconds, _error_name(error))


def record_retry(endpoint: str, function: str, error: BaseException) -> None:
    """Count a call sent again after ``error`` on ``endpoint``."""
    metrics = _get()
    if metrics is not None:
        metrics.retries.labels(endpoint, function, _error_name(error)).inc()


def record_retry_refused(endpoint: str, reason: str) -> None:
    """Count a failed call on ``endpoint`` not sent again, for ``reason`` (budget, pool_full)."""
    metrics = _get()
    if metrics is not None:
        metrics.retries_refused.labels(endpoint, reason).inc()


def record_pool_wait(endpoint: str, seconds: float) -> None:
    """Count a call that waited ``seconds`` for room in ``endpoint``'s full pool."""
    metrics = _get()
    if metrics is not None:
        metrics.pool_waits.labels(endpoint).observe(seconds)


def set_endpoint_up(endpoint: str, up: bool) -> None:
    """Say whether ``endpoint`` takes calls (1) or is avoided after a failure (0)."""
    metrics = _get()
    if metrics is not None:
        metrics.up.labels(endpoint).set(1 if up else 0)


def ejected(endpoint: str) -> None:
    """Count the ejection of ``endpoint``, one more ejected now."""
    metrics = _get()
    if metrics is not None:
        metrics.ejections.labels(endpoint).inc()
        metrics.ejected.inc()


def returned(endpoint: str) -> None:
    """``endpoint``, ejected, takes calls again: one fewer ejected now."""
    metrics = _get()
    if metrics is not None:
        metrics.ejected.dec()


def _error_name(error: BaseException) -> str:
    # A RemoteError carries the server's exception type; its name is bounded
    # by what the server raises, cut short against a hostile one.
    return str(getattr(error, "name", None) or type(error).__name__)[:64]
