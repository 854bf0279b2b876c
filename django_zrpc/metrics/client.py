"""The client's Prometheus metrics, in the Django process's default registry (issue 17).

``RPCClient`` and its pools call the small functions here at one line each;
they do nothing when ``ZRPC_METRICS = False`` or prometheus_client is not
installed. The metrics live in prometheus_client's default ``REGISTRY``,
which django-prometheus, ``prometheus_client.start_http_server`` and the
other exporters already serve, and which prometheus_client's multiprocess
mode sums over gunicorn's workers. Labels are the endpoints and function
names the project's own code chooses, so their number stays bounded.

Every call is counted and timed, so those two are kept by ``_CallTable``
under one lock a call and read by a collector when the registry is scraped:
prometheus_client's Counter and Histogram take a lock per value, three a
call, and cost about 5 us of the ~47 a call spent in the client at 64
callers (2026-11-29). In prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``), whose exporter reads only the files its own
metrics write, they are prometheus_client's Counter and Histogram as before.
"""

from __future__ import annotations

import _thread
import os
from bisect import bisect_left
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_zrpc import conf
from django_zrpc.metrics import BUCKETS

_metrics: SimpleNamespace | None = None
# Whether metrics are on: ZRPC_METRICS is read once, not per call (the
# settings lookup cost as much as the metrics), and again when a test
# changes it (setting_changed).
_on: bool | None = None
# The labelled children of the calls and duration metrics, by their labels
# (multiprocess mode only; else the calls go to _table).
_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
_table: _CallTable | None = None

CALLS = "zrpc_client_calls"
CALLS_HELP = "Calls by endpoint, function and outcome (ok, error); error: the exception's type."
DURATION = "zrpc_client_call_duration_seconds"
DURATION_HELP = "Seconds a call took, on one endpoint, from the caller's side."


class _CallTable:
    """Calls and their latency, by labels, counted under one lock and read by ``collect``.

    The lock is the C one even in a gevent-patched process (nothing switches
    greenlets while it is held), so threads of a threaded server lose no count.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._calls: dict[tuple[str, str, str, str], int] = {}
        # (endpoint, function) -> the count in each bucket (not cumulative),
        # the last one past the largest bound, then the sum of the seconds.
        self._durations: dict[tuple[str, str], list[float]] = {}

    def record(self, key: tuple[str, str, str, str], seconds: float) -> None:
        where = bisect_left(BUCKETS, seconds)  # the first bound >= seconds
        with self._lock:
            calls = self._calls
            calls[key] = calls.get(key, 0) + 1
            series = self._durations.get(key[:2])
            if series is None:
                series = self._durations[key[:2]] = [0.0] * (len(BUCKETS) + 2)
            series[where] += 1
            series[-1] += seconds

    def describe(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        return [
            CounterMetricFamily(
                CALLS, CALLS_HELP, labels=["endpoint", "function", "outcome", "error"]
            ),
            HistogramMetricFamily(DURATION, DURATION_HELP, labels=["endpoint", "function"]),
        ]

    def collect(self) -> Iterator[Any]:
        calls_family, duration_family = self.describe()
        with self._lock:
            calls = list(self._calls.items())
            durations = [(labels, list(series)) for labels, series in self._durations.items()]
        for call_labels, count in calls:
            calls_family.add_metric(list(call_labels), count)
        bounds = [*(_bound(b) for b in BUCKETS), "+Inf"]
        for labels, series in durations:
            total, cumulative = 0.0, []
            for bound, in_bucket in zip(bounds, series[:-1], strict=True):
                total += in_bucket
                cumulative.append((bound, total))
            duration_family.add_metric(list(labels), cumulative, series[-1])
        yield calls_family
        yield duration_family


def _bound(value: float) -> str:
    # As prometheus_client writes a bucket's bound (floatToGoString).
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(value))


def _multiprocess() -> bool:
    return bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    )


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


def _make() -> SimpleNamespace:
    global _metrics, _table
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram

    calls = duration = None
    if _multiprocess():
        labels = ["endpoint", "function", "outcome", "error"]
        calls = Counter(CALLS, CALLS_HELP, labels)
        duration = Histogram(DURATION, DURATION_HELP, labels[:2], buckets=BUCKETS)
    else:
        _table = _CallTable()
        REGISTRY.register(_table)
    _metrics = SimpleNamespace(
        calls=calls,
        duration=duration,
        pool_waits=Histogram(
            "zrpc_client_pool_wait_seconds",
            "Seconds a call waited for room in a full pool (calls that did not wait are not "
            "counted).",
            ["endpoint"],
            buckets=BUCKETS,
        ),
        retries=Counter(
            "zrpc_client_retries",
            "Calls sent again, by endpoint, function and the error that made them retry.",
            ["endpoint", "function", "error"],
        ),
        up=Gauge(
            "zrpc_client_endpoint_up",
            "1 while an endpoint is taking calls, 0 while it is avoided after a failure.",
            ["endpoint"],
            multiprocess_mode="livemin",
        ),
    )
    return _metrics


def record_call(
    endpoint: str, function: str, outcome: str, seconds: float, error: str = ""
) -> None:
    """Count one call to ``endpoint``: ``outcome`` "ok" or "error" (``error``: its type)."""
    metrics = _get()
    if metrics is None:
        return
    key = (endpoint, function, outcome, error)
    if _table is not None:
        _table.record(key, seconds)
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
    endpoint: str, function: str, seconds: float, error: BaseException | None = None
) -> None:
    """Count one call to ``endpoint`` that took ``seconds``: ok, or failed with ``error``."""
    if error is None:
        record_call(endpoint, function, "ok", seconds)
    else:
        record_call(endpoint, function, "error", seconds, _error_name(error))


def record_retry(endpoint: str, function: str, error: BaseException) -> None:
    """Count a call sent again after ``error`` on ``endpoint``."""
    metrics = _get()
    if metrics is not None:
        metrics.retries.labels(endpoint, function, _error_name(error)).inc()


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


def _error_name(error: BaseException) -> str:
    # A RemoteError carries the server's exception type; its name is bounded
    # by what the server raises, cut short against a hostile one.
    return str(getattr(error, "name", None) or type(error).__name__)[:64]
