"""Where runrpc's metrics are read from: this process, or every worker of ``--workers N``.

prometheus_client's multiprocess mode is the well-kept way to sum processes:
each worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, which
must be in its environment before it imports prometheus_client, and the
supervisor's ``MultiProcessCollector`` reads and sums them. The supervisor
makes a fresh folder of its own (values of an earlier run must not be added
in), and removes a dead worker's live gauges (``mark_process_dead``); its
counters stay, so that totals never go down when a worker is replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import gevent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between two samples of a worker's gauges (calls running, workers busy...).
SAMPLE_EVERY = 1.0


def _multiprocess_registry(path: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def this_process(sample: Callable[[], None]) -> Callable[[], tuple[bytes, str]]:
    """Return the /metrics body of a lone runrpc: ``sample()``, then its registry's text.

    Its default registry, with the project's own metrics and the process's
    CPU and memory; or, if the environment names a multiprocess folder
    already (a deployment that shares one), every process writing there.
    """
    path = os.environ.get(ENV)
    registry = _multiprocess_registry(path) if path else REGISTRY

    def metrics() -> tuple[bytes, str]:
        sample()
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return metrics


def keep_sampling(sample: Callable[[], None], every: float = SAMPLE_EVERY) -> Any:
    """Call ``sample()`` every ``every`` seconds in a greenlet, for a worker's supervisor."""

    def run() -> None:
        while True:
            sample()
            gevent.sleep(every)

    return gevent.spawn(run)


class WorkerMetrics:
    """The supervisor's side: a fresh folder for the workers' files, and their sum."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="zrpc-metrics-")
        # Inherited by every worker started from now on.
        os.environ[ENV] = self.path
        self._registry = _multiprocess_registry(self.path)

    def __call__(self) -> tuple[bytes, str]:
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    def worker_exited(self, pid: int) -> None:
        multiprocess.mark_process_dead(pid, self.path)

    def close(self) -> None:
        os.environ.pop(ENV, None)
        shutil.rmtree(self.path, ignore_errors=True)
