"""Prometheus metrics: whether they are on, and the error when they cannot be.

prometheus_client is optional (the ``metrics`` extra) and imported only in
``metrics.server`` and ``metrics.client``. The rule, read at call time:

- the server's metrics are collected when runrpc serves its ops endpoint
  (``--ops`` or ``ZRPC_OPS``): nowhere else could they be read, so nothing
  is counted for nobody;
- the client's are collected in the Django process when prometheus_client is
  installed, in its default registry, which django-prometheus and the other
  exporters already serve;
- ``ZRPC_METRICS = False`` turns both off, ``True`` makes a missing
  prometheus_client an error (system check ``django_zrpc.E019``).
"""

from __future__ import annotations

from typing import Any

from django_zrpc import conf
from django_zrpc.exceptions import MetricsUnavailable
from django_zrpc.metrics.buckets import BUCKETS  # noqa: F401 (its import path before buckets.py)

INSTALL = 'pip install "django-zrpc[metrics]"'


def missing_message() -> str | None:
    """Return why prometheus_client cannot be used, in a sentence naming the fix; None if it can."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as err:
        return f"Metrics need prometheus_client, which cannot be imported ({err}): {INSTALL}."
    return None


def require() -> None:
    """Raise ``MetricsUnavailable`` if prometheus_client cannot be imported."""
    message = missing_message()
    if message is not None:
        raise MetricsUnavailable(message)


def server_metrics_wanted(ops: Any) -> bool:
    """Return whether runrpc, serving its ops endpoint at ``ops`` (or not: None), keeps metrics."""
    return ops is not None and conf.get("METRICS") is not False


def server_observer(ops: Any) -> Any:
    """Return the ``ServerMetrics`` of a runrpc serving ops at ``ops``, or None if none are kept."""
    if not server_metrics_wanted(ops):
        return None
    from django_zrpc.metrics.server import ServerMetrics

    return ServerMetrics()


def worker_metrics(ops: Any) -> Any:
    """Return the supervisor's sum of its workers' metrics, or None; call it before any starts."""
    if not server_metrics_wanted(ops):
        return None
    from django_zrpc.metrics.exposition import WorkerMetrics

    return WorkerMetrics()
