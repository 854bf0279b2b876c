"""Outlier ejection: a stopped server of three stops getting calls within seconds, and comes back.

Three real ``runrpc`` processes on 127.0.0.1; one is sent SIGSTOP (a process
paused by a debugger, a frozen VM) and later SIGCONT. The load is greenlets
of the test process calling ``server_pid`` (``tests.fleet_load.Load``), or
tasks of an event loop for the ``AsyncRPCClient`` (``AsyncLoad``), so each
answer says which server gave it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time

import prometheus_client
import pytest

from django_zrpc import AsyncRPCClient, RPCClient
from tests.fleet_load import Load, wait_until

#: Seconds after SIGSTOP during which calls may still fail: the calls in
#: flight to the stopped server wait out their 1 s timeout.
SETTLE = 3.0
#: The most calls after SETTLE that may fail (the issue's target).
MOST_FAILED = 0.001
#: ... and in number: the window ends before the first ejection (10 s) does,
#: so no call at all should go to the stopped server; before ejection, each
#: second sent it a few (11 a second failed in a run on the old code).
MOST_FAILED_CALLS = 2
#: Seconds after SIGCONT within which a stopped server takes calls again. It
#: is continued half-way through its first ejection (10 s), counted from the
#: ejection rather than from the stop: a busy machine's late wake-up must not
#: push SIGCONT past the probe, which would fail and eject it for 20 s more.
BACK_SOON = 15.0
#: Seconds a server stays stopped after its ejection, and the longest wait for that.
STOPPED_AFTER_EJECTION = 5.0
EJECTED_WITHIN = SETTLE + 5.0


def ejections(endpoint: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "zrpc_client_ejections_total", {"endpoint": endpoint}
    )
    return value or 0.0


def recent_share(load: Load | AsyncLoad, pid: int, seconds: float) -> float:
    since = time.monotonic() - seconds
    shares = load.shares(since=since)
    total = sum(shares.values())
    return shares[pid] / total if total else 0.0


def test_a_stopped_server_of_three_gets_no_calls_within_seconds_and_returns_after_sigcont(
    start_server, caplog
):
    servers = [start_server() for _ in range(3)]
    stopped = servers[1]
    client = RPCClient([s.endpoint for s in servers], timeout=1)
    load = Load(client, callers=32)
    before = ejections(stopped.endpoint)
    try:
        with caplog.at_level(logging.INFO, logger="django_zrpc.client"):
            assert wait_until(lambda: len(load.shares()) == 3, 10), load.failures[:3]
            stopped.signal(signal.SIGSTOP)
            try:
                stopped_at = time.monotonic()
                load.run_for(SETTLE + 5.0)
                settled = stopped_at + SETTLE
                calls = sum(load.shares(since=settled).values())
                failed = [err for at, err in load.failures if at >= settled]
                to_stopped = load.shares(since=settled)[stopped.proc.pid]
            finally:
                stopped.signal(signal.SIGCONT)
            continued_at = time.monotonic()
            # The ejection (10 s) ends and a probe call finds it answering.
            back = wait_until(lambda: recent_share(load, stopped.proc.pid, 2.0) >= 0.15, 60)
            back_after = time.monotonic() - continued_at
    finally:
        load.stop()
        client.close()
    calls += len(failed)
    assert calls > 0
    assert len(failed) <= min(MOST_FAILED * calls, MOST_FAILED_CALLS), (
        f"{len(failed)} of {calls} calls failed after the first {SETTLE} s "
        f"({to_stopped} answered by the stopped server): {collections.Counter(map(type, failed))}"
    )
    assert back, f"the server got under 15% of the calls within 60 s of SIGCONT: {load.shares()}"
    assert back_after < 60
    assert ejections(stopped.endpoint) > before
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "ejected" in r.message
    ]
    assert any(stopped.endpoint in r.message for r in warnings), caplog.text
    assert any(
        r.levelno == logging.INFO and stopped.endpoint in r.message and "answers again" in r.message
        for r in caplog.records
    ), caplog.text


class AsyncLoad:
    """``callers`` tasks calling ``client.server_pid()`` in a loop until ``stop()``.

    The asyncio twin of ``tests.fleet_load.Load``, with the same records.
    """

    def __init__(self, client: AsyncRPCClient, callers: int) -> None:
        self.client = client
        self.answers: list[tuple[float, int]] = []
        self.failures: list[tuple[float, BaseException]] = []
        self._running = True
        self._tasks = [asyncio.ensure_future(self._call()) for _ in range(callers)]

    async def _call(self) -> None:
        for _ in range(1_000_000):
            if not self._running:
                return
            try:
                self.answers.append((time.monotonic(), await self.client.server_pid()))
            except Exception as err:
                self.failures.append((time.monotonic(), err))
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._running = False
        # Each call ends within the client's timeout; a caller that does not
        # by then is stuck, and cancelled so that the test reports it.
        _, stuck = await asyncio.wait(self._tasks, timeout=self.client.timeout + 10)
        for task in stuck:
            task.cancel()
        assert not stuck, f"{len(stuck)} callers were still calling long after stop()"

    def shares(self, since: float = 0.0) -> collections.Counter[int]:
        return collections.Counter(pid for at, pid in self.answers if at >= since)


async def async_wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition``, letting the loop's tasks run, until true or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return bool(condition())


def test_the_asyncio_client_routes_around_a_stopped_server_and_back_after_sigcont(
    start_server, caplog
):
    servers = [start_server() for _ in range(3)]
    stopped = servers[1]
    pid = stopped.proc.pid
    before = ejections(stopped.endpoint)

    async def main() -> dict:
        client = AsyncRPCClient([s.endpoint for s in servers], timeout=1)
        load = AsyncLoad(client, callers=32)
        try:
            all_answer = await async_wait_until(lambda: len(load.shares()) == 3, 10)
            assert all_answer, load.failures[:3]
            three_from = time.monotonic()
            await asyncio.sleep(2.0)
            three_rate = sum(load.shares(since=three_from).values()) / (
                time.monotonic() - three_from
            )
            stopped.signal(signal.SIGSTOP)
            try:
                stopped_at = time.monotonic()
                await asyncio.sleep(SETTLE + 5.0)
                settled = stopped_at + SETTLE
                ended = time.monotonic()
                answered = load.shares(since=settled)
                failed = [err for at, err in load.failures if at >= settled]
            finally:
                stopped.signal(signal.SIGCONT)
            continued_at = time.monotonic()
            # The ejection (10 s) ends and a probe call finds it answering.
            back = await async_wait_until(lambda: recent_share(load, pid, 2.0) >= 0.15, 60)
            return {
                "three_rate": three_rate,
                "rate": sum(answered.values()) / (ended - settled),
                "calls": sum(answered.values()) + len(failed),
                "failed": failed,
                "to_stopped": answered[pid],
                "back": back,
                "back_after": time.monotonic() - continued_at,
                "shares": load.shares(since=continued_at),
            }
        finally:
            await load.stop()
            await client.aclose()

    with caplog.at_level(logging.INFO, logger="django_zrpc.client"):
        got = asyncio.run(main())
    calls, failed = got["calls"], got["failed"]
    assert calls > 0
    assert len(failed) <= min(MOST_FAILED * calls, MOST_FAILED_CALLS), (
        f"{len(failed)} of {calls} calls failed after the first {SETTLE} s "
        f"({got['to_stopped']} answered by the stopped server): "
        f"{collections.Counter(map(type, failed))}"
    )
    assert got["rate"] >= 0.6 * got["three_rate"], got
    assert got["back"], (
        f"the server got under 15% of the calls within 60 s of SIGCONT: {got['shares']}\n"
        + caplog.text
    )
    assert ejections(stopped.endpoint) > before
    assert any(
        r.levelno == logging.INFO and stopped.endpoint in r.message and "answers again" in r.message
        for r in caplog.records
    ), caplog.text


def test_a_server_stopped_before_the_asyncio_client_reached_it_is_back_soon_after_sigcont(
    start_server,
):
    # Every call sent to it waits on a new connection that its kernel took
    # but that the stopped process never answers: they all fail together as
    # unreachable, and that is one failure to connect, not one per call (the
    # skipping time doubled with each: a minute).
    servers = [start_server() for _ in range(3)]
    stopped = servers[1]
    pid = stopped.proc.pid

    async def main() -> tuple[bool, float, collections.Counter[int]]:
        client = AsyncRPCClient([s.endpoint for s in servers], timeout=1)
        before = ejections(stopped.endpoint)
        stopped.signal(signal.SIGSTOP)
        try:
            load = AsyncLoad(client, callers=32)
            ejected = await async_wait_until(
                lambda: ejections(stopped.endpoint) > before, EJECTED_WITHIN
            )
            assert ejected, "never ejected"
            await asyncio.sleep(STOPPED_AFTER_EJECTION)
        finally:
            stopped.signal(signal.SIGCONT)
        continued_at = time.monotonic()
        try:
            # Its ejection ends and a probe finds it answering.
            back = await async_wait_until(lambda: recent_share(load, pid, 2.0) >= 0.15, BACK_SOON)
            return back, time.monotonic() - continued_at, load.shares(since=continued_at)
        finally:
            await load.stop()
            await client.aclose()

    back, after, shares = asyncio.run(main())
    assert back, f"the server got under 15% of the calls within {after:.1f} s of SIGCONT: {shares}"


def test_a_server_stopped_before_the_gevent_client_reached_it_is_back_soon_after_sigcont(
    start_server,
):
    # The balancer's rule, through RPCClient's pools: as the asyncio test above.
    servers = [start_server() for _ in range(3)]
    stopped = servers[1]
    client = RPCClient([s.endpoint for s in servers], timeout=1)
    before = ejections(stopped.endpoint)
    stopped.signal(signal.SIGSTOP)
    try:
        load = Load(client, callers=32)
        ejected = wait_until(lambda: ejections(stopped.endpoint) > before, EJECTED_WITHIN)
        assert ejected, "never ejected"
        load.run_for(STOPPED_AFTER_EJECTION)
    finally:
        stopped.signal(signal.SIGCONT)
    continued_at = time.monotonic()
    try:
        back = wait_until(lambda: recent_share(load, stopped.proc.pid, 2.0) >= 0.15, BACK_SOON)
        after = time.monotonic() - continued_at
    finally:
        load.stop()
        client.close()
    assert back, (
        f"the server got under 15% of the calls within {after:.1f} s of SIGCONT: "
        f"{load.shares(since=continued_at)}"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OUTLIER_STALL", 0),
        ("OUTLIER_FAILURES", 0),
        ("OUTLIER_EJECT_FOR", "10"),
        ("OUTLIER_MAX_EJECTED", 1.5),
    ],
)
def test_bad_outlier_settings_are_reported_with_the_value(settings, name, value):
    from django_zrpc.checks import check_settings

    setattr(settings, f"ZRPC_{name}", value)
    messages = [m.msg for m in check_settings() if m.id == "django_zrpc.E020"]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"ZRPC_{name} must be ")
    assert messages[0].endswith(f", not {value!r}.")
