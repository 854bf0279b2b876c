"""Helpers of the ops endpoint tests: an HTTP GET, a metrics scrape read as numbers."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url``: return its status and body, 503 included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(ops: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``ops``/metrics as (name, sorted labels) -> value."""
    status, body = get(f"{ops}/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``, or 0 if the server has none yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(condition, timeout: float, what: str, step: float = 0.05):
    """Return ``condition()``'s first true value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        gevent.sleep(step)  # lets the greenlets of the test's calls run
    pytest.fail(f"{what} within {timeout}s")


def calls_counted(samples: dict) -> float:
    """Every call ``samples`` counts in ``zrpc_server_calls_total``, whatever its labels."""
    return sum(v for (name, _), v in samples.items() if name == "zrpc_server_calls_total")


def scrape_counted(ops: str, calls: float, before: dict | None = None, timeout: float = 5.0):
    """Scrape ``ops`` until ``calls`` more calls than in ``before`` are counted.

    The server counts a call just after it sends the reply, so a scrape made
    as the last reply arrives can miss that call.
    """
    start = calls_counted(before) if before else 0.0

    def counted() -> dict | None:
        samples = scrape(ops)
        return samples if calls_counted(samples) - start >= calls else None

    return wait_until(counted, timeout, f"{calls} calls counted in {ops}/metrics")
