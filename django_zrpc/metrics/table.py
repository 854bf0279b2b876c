"""Counters and latency histograms for every call, kept under one lock and read at scrape time.

prometheus_client's Counter and Histogram take a lock per value: a call's
count, its latency and its wait cost five (2026-11-29, 2 cores: 6 us of
runrpc's ~38 us a call with ``--ops``, 5 us of RPCClient's ~47). A
``Table`` keeps the same numbers in plain dictionaries, updated under one
lock a call (the interpreter's, also in a gevent-patched process: nothing
switches greenlets while it is held), and is registered as a collector in
prometheus_client's default registry, which turns them into the same
families when ``/metrics`` is scraped.

prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: the
workers of ``runrpc --workers``, gunicorn's with django-prometheus) reads
only the files its own values write, so there the callers keep
prometheus_client's Counter and Histogram (see ``multiprocess()``).
"""

from __future__ import annotations

import _thread
import os
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from django_zrpc.metrics.buckets import BUCKETS

_BOUNDS_COUNT = len(BUCKETS) + 1  # the buckets and +Inf


def multiprocess() -> bool:
    """Whether prometheus_client runs in multiprocess mode in this process."""
    return bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    )


def native_allocate_lock() -> Callable[[], Any]:
    """The interpreter's lock factory, also where gevent patched ``_thread``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original("_thread", "allocate_lock")
    return _thread.allocate_lock


class Table:
    """Counters and histograms by labels; update them holding ``lock``."""

    def __init__(self) -> None:
        self.lock = native_allocate_lock()()
        self._counters: list[tuple[str, str, list[str], dict[tuple[str, ...], float]]] = []
        self._histograms: list[tuple[str, str, list[str], dict[tuple[str, ...], list[float]]]] = []

    def counter(self, name: str, documentation: str, labels: list[str]) -> dict[Any, float]:
        """A counter family (``name`` without ``_total``): labels -> count, to add to."""
        counts: dict[Any, float] = {}
        self._counters.append((name, documentation, labels, counts))
        return counts

    def histogram(self, name: str, documentation: str, labels: list[str]) -> dict[Any, list[float]]:
        """A histogram family with ``BUCKETS``: labels -> series, for ``observe``."""
        series: dict[Any, list[float]] = {}
        self._histograms.append((name, documentation, labels, series))
        return series

    @staticmethod
    def observe(histogram: dict[Any, list[float]], labels: tuple[str, ...], seconds: float) -> None:
        """Add ``seconds`` to ``histogram``'s series of ``labels`` (holding ``lock``)."""
        series = histogram.get(labels)
        if series is None:
            # The count in each bucket (not cumulative), +Inf's, then the sum.
            series = histogram[labels] = [0.0] * (_BOUNDS_COUNT + 1)
        series[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds
        series[-1] += seconds

    def register(self) -> Table:
        """Register in prometheus_client's default registry; return self."""
        from prometheus_client import REGISTRY

        REGISTRY.register(self)
        return self

    def describe(self) -> list[Any]:
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Any]:
        return iter(list(self._families(empty=False)))

    def _families(self, empty: bool) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        bounds = [*(str(floatToGoString(b)) for b in BUCKETS), "+Inf"]
        for name, documentation, labels, counts in self._counters:
            family = CounterMetricFamily(name, documentation, labels=labels)
            if not empty:
                with self.lock:
                    rows = list(counts.items())
                for key, count in rows:
                    family.add_metric(list(key), count)
            yield family
        for name, documentation, labels, histogram in self._histograms:
            hfamily = HistogramMetricFamily(name, documentation, labels=labels)
            if not empty:
                with self.lock:
                    hrows = [(key, list(series)) for key, series in histogram.items()]
                for key, series in hrows:
                    total, cumulative = 0.0, []
                    for bound, in_bucket in zip(bounds, series[:-1], strict=True):
                        total += in_bucket
                        cumulative.append((bound, total))
                    hfamily.add_metric(list(key), cumulative, series[-1])
            yield hfamily
