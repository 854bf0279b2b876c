"""Part 7 of ``robustness.py``: a server past its capacity, and one merely slow.

Overload: 2,000 greenlets share one ``RPCClient`` (timeout 5 s) and call
``sleep 0.05`` for 12 s against ``runrpc --concurrency 10 --backlog 10``: the
server can do 200 calls/s. A caller whose call failed waits 0.5 to 1.5 s
before its next (a person shown an error page, or a web client's own
jittered retry of a 503, does not come back within milliseconds, nor all in
the same one); after a success it calls again at once. Printed: the calls that succeeded
and each failure kind, the success p99, the calls that ended more than 0.5 s
past their timeout, the requests the server saw per call made (from its
``/metrics``), OK/s, seconds from the end of the load until a fresh
client's call is served within twice its latency on an idle server, and
until the load's last call ended (its retries included).

Slow, not overloaded: 24 greenlets call ``sleep 0.05`` with a random pause of
up to 0.1 s between calls for 8 s against the same server: now and then more
than 20 arrive at once and some are refused ``ServerBusy``. Run with the
retry budget on (the default) and off (``retry_budget=0``, every refusal
retried as before the budget): the calls that failed in each, which the
retries should keep at or near zero in both.

Each run starts its own server. The client runs in this process (gevent
monkey-patched by ``robustness.py``'s caller, or here when run alone).
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from typing import Any

from benchmarks.common import free_port, log, own_cpu, percentile, process_cpu

OVERLOAD_CALLERS = 2_000
OVERLOAD_SECONDS = 12.0
SLOW_CALLERS = 24
SLOW_SECONDS = 8.0
WORK = 0.05  # seconds each call sleeps on the server
TIMEOUT = 5.0
PAST = 0.5  # a call ending this long after its timeout is "past the timeout"
AFTER_FAILURE = 1.0
RECOVERY_LIMIT = 30.0
SERVER_ARGS = ["--concurrency", "10", "--backlog", "10"]


def _requests_seen(ops: str) -> float:
    """Sum of ``zrpc_server_calls_total`` on the server's /metrics: every request it answered."""
    with urllib.request.urlopen(f"http://{ops}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("zrpc_server_calls_total{")
    )


def _idle_latency(client: Any, count: int = 10) -> float:
    took = []
    for _ in range(count):
        started = time.monotonic()
        client.sleep(WORK)
        took.append(time.monotonic() - started)
    return sorted(took)[len(took) // 2]


def _drive(
    client: Any, callers: int, deadline: float, think: float | None
) -> list[tuple[str, float, float]]:
    """Run ``callers`` greenlets until ``deadline``; return [(outcome, seconds, when)].

    ``think``: the most seconds of a random pause between two calls, or
    None for none (calls again at once after a success).
    """
    import gevent

    outcomes: list[tuple[str, float, float]] = []
    seconds = deadline - time.monotonic()

    def caller() -> None:
        for _ in range(1_000_000):
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            try:
                client.sleep(WORK)
            except Exception as err:
                ended = time.monotonic()
                # A remote error by its name (ServerBusy), others by their class.
                kind = getattr(err, "name", None) or type(err).__name__
                outcomes.append((kind, ended - started, ended))
                gevent.sleep(random.uniform(0.5, 1.5) * AFTER_FAILURE)
            else:
                ended = time.monotonic()
                outcomes.append(("OK", ended - started, ended))
            if think:
                gevent.sleep(random.uniform(0, think))

    greenlets = [gevent.spawn(caller) for _ in range(callers)]
    try:
        # Every call in flight at the deadline ends within its timeout.
        gevent.joinall(greenlets, timeout=seconds + TIMEOUT + 10)
    finally:
        gevent.killall(greenlets, timeout=5)
    return outcomes


def _recovery(endpoint: str, normal: float, load_end: float) -> float | None:
    """Seconds from ``load_end`` until a fresh client's call takes at most twice ``normal``."""
    import gevent

    from django_zrpc import RPCClient

    probe = RPCClient(endpoint, timeout=TIMEOUT)
    try:
        for _ in range(10_000):
            now = time.monotonic()
            if now - load_end > RECOVERY_LIMIT:
                return None
            try:
                client_took = _idle_latency(probe, 1)
            except Exception:
                client_took = None
            if client_took is not None and client_took <= 2 * normal:
                return round(max(time.monotonic() - load_end, 0.0), 2)
            gevent.sleep(0.02)
    finally:
        probe.close()
    return None


def overload_part(server_factory: Any, **client_options: Any) -> dict[str, Any]:
    """The overload probe against a server from ``server_factory(args)`` (a context manager)."""
    import gevent

    from django_zrpc import RPCClient

    ops = f"127.0.0.1:{free_port()}"
    with server_factory([*SERVER_ARGS, "--ops", ops]) as server:
        client = RPCClient(server.endpoint, timeout=TIMEOUT, **client_options)
        try:
            normal = _idle_latency(client)
            seen_before = _requests_seen(ops)
            cpu_before = own_cpu(), process_cpu(server.proc.pid)
            load_end = time.monotonic() + OVERLOAD_SECONDS
            # From the load's end, not from when its last caller is done
            # (one refused just before may pause 1.5 s before it sees the end).
            recovering = gevent.spawn_later(
                OVERLOAD_SECONDS, _recovery, server.endpoint, normal, load_end
            )
            outcomes = _drive(client, OVERLOAD_CALLERS, load_end, None)
            recovery = recovering.get(timeout=RECOVERY_LIMIT + 10)
            cpu = [
                round(after - before, 1)
                for before, after in zip(
                    cpu_before, (own_cpu(), process_cpu(server.proc.pid)), strict=True
                )
            ]
            seen = _requests_seen(ops) - seen_before
        finally:
            client.close()
    kinds = Counter(kind for kind, _, _ in outcomes)
    ok = [took for kind, took, _ in outcomes if kind == "OK"]
    # Over the load's own seconds: calls in flight at its end finish later.
    ok_in_load = sum(1 for kind, _, when in outcomes if kind == "OK" and when <= load_end)
    p99 = percentile(sorted(ok), 0.99) if ok else None
    return {
        "callers": OVERLOAD_CALLERS,
        "seconds": OVERLOAD_SECONDS,
        "client_options": client_options,
        "outcomes": dict(kinds),
        "ok_p99_ms": None if p99 is None else round(1000 * p99),
        "past_timeout": sum(1 for _, took, _ in outcomes if took > TIMEOUT + PAST),
        "requests_per_call": round(seen / len(outcomes), 2) if outcomes else None,
        "ok_per_second": round(ok_in_load / OVERLOAD_SECONDS),
        "normal_ms": round(1000 * normal, 1),
        "recovered_after": recovery,
        # Seconds from the load's end until its last call ended (retries and all).
        "drained_after": round(max(when for _, _, when in outcomes) - load_end, 2),
        "cpu_seconds_client_server": cpu,
    }


def slow_part(server_factory: Any, **client_options: Any) -> dict[str, Any]:
    """The slow-server probe: how many calls fail, and how many requests the server refused."""
    from django_zrpc import RPCClient

    ops = f"127.0.0.1:{free_port()}"
    with server_factory([*SERVER_ARGS, "--ops", ops]) as server:
        client = RPCClient(server.endpoint, timeout=TIMEOUT, **client_options)
        try:
            seen_before = _requests_seen(ops)
            outcomes = _drive(client, SLOW_CALLERS, time.monotonic() + SLOW_SECONDS, 2 * WORK)
            seen = _requests_seen(ops) - seen_before
        finally:
            client.close()
    kinds = Counter(kind for kind, _, _ in outcomes)
    return {
        "client_options": client_options,
        "calls": len(outcomes),
        "failed": len(outcomes) - kinds["OK"],
        "outcomes": dict(kinds),
        "retried_requests": round(seen - len(outcomes)),
    }


def run(server_factory: Any) -> dict[str, Any]:
    """Part 7: overload with the budget on and off, then the slow server likewise."""
    result: dict[str, Any] = {}
    for label, options in (("budget", {}), ("no_budget", {"retry_budget": 0})):
        log(f"7. overload: {OVERLOAD_CALLERS} callers on runrpc {' '.join(SERVER_ARGS)} ({label})")
        result[f"overload_{label}"] = overload_part(server_factory, **options)
        log(f"7. slow server: {SLOW_CALLERS} callers ({label})")
        result[f"slow_{label}"] = slow_part(server_factory, **options)
    return result


def print_result(result: dict[str, Any], report: Any) -> None:
    for label in ("budget", "no_budget"):
        part = result[f"overload_{label}"]
        report(f"7. overload ({label}): outcomes", part["outcomes"])
        report(
            f"7. overload ({label}): success p99, past timeout",
            f"{part['ok_p99_ms']} ms, {part['past_timeout']} calls past {TIMEOUT:.0f} s + {PAST} s",
        )
        report(
            f"7. overload ({label}): OK/s, requests per call",
            f"{part['ok_per_second']}/s of 200/s, {part['requests_per_call']} requests a call",
        )
        back = part["recovered_after"]
        report(
            f"7. overload ({label}): back to normal latency after the load; its last call ended",
            f"{'not within 30 s' if back is None else f'{back} s'}; "
            f"after {part['drained_after']} s",
        )
        slow = result[f"slow_{label}"]
        report(
            f"7. slow server ({label}): failed of calls, refusals retried",
            f"{slow['failed']} of {slow['calls']} ({slow['outcomes']}), "
            f"{slow['retried_requests']} requests retried",
        )
