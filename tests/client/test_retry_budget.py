"""Retries do not turn overload into timeouts: the retry budget, the server's pushback, full pools.

Against real ``runrpc`` processes: a server far past its capacity gets its
refusals back as fast failures (about one request per call), a refused
caller waits the pause the server asked for, and a server refusing now and
then still has every refusal retried.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import gevent
import pytest

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.client.retry import RetryBudget
from django_zrpc.exceptions import RemoteError
from tests.conftest import free_port
from tests.ops_http import scrape

WORK = 0.1  # seconds a call of the overloaded server takes
CALLERS = 60
LOAD_SECONDS = 3.0
TIMEOUT = 5.0


def requests_seen(ops: str) -> float:
    """Every request the server answered, refusals too (``zrpc_server_calls_total``)."""
    samples = scrape(f"http://{ops}")
    return sum(value for (name, _), value in samples.items() if name == "zrpc_server_calls_total")


def overloaded(start_server) -> tuple[object, str]:
    """A server of one worker and no backlog, and its ops address: 10 calls/s at most."""
    ops = f"127.0.0.1:{free_port()}"
    return start_server("--concurrency", "1", "--backlog", "0", "--ops", ops), ops


def gevent_load(endpoint: str) -> list[tuple[str, float]]:
    client = RPCClient(endpoint, timeout=TIMEOUT)
    outcomes: list[tuple[str, float]] = []
    deadline = time.monotonic() + LOAD_SECONDS

    def caller() -> None:
        for _ in range(10_000):
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            try:
                client.sleep(WORK)
                outcomes.append(("OK", time.monotonic() - started))
            except Exception as err:
                outcomes.append((type(err).__name__, time.monotonic() - started))
                gevent.sleep(0.2)

    try:
        callers = [gevent.spawn(caller) for _ in range(CALLERS)]
        gevent.joinall(callers, timeout=LOAD_SECONDS + TIMEOUT + 30, raise_error=True)
    finally:
        client.close()
    return outcomes


def asyncio_load(endpoint: str) -> list[tuple[str, float]]:
    async def run() -> list[tuple[str, float]]:
        client = AsyncRPCClient(endpoint, timeout=TIMEOUT)
        outcomes: list[tuple[str, float]] = []
        deadline = time.monotonic() + LOAD_SECONDS

        async def caller() -> None:
            for _ in range(10_000):
                if time.monotonic() >= deadline:
                    return
                started = time.monotonic()
                try:
                    await client.sleep(WORK)
                    outcomes.append(("OK", time.monotonic() - started))
                except Exception as err:
                    outcomes.append((type(err).__name__, time.monotonic() - started))
                    await asyncio.sleep(0.2)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(caller() for _ in range(CALLERS))),
                LOAD_SECONDS + TIMEOUT + 30,
            )
        finally:
            await client.aclose()
        return outcomes

    return asyncio.run(run())


@pytest.mark.parametrize("load", [gevent_load, asyncio_load], ids=["RPCClient", "AsyncRPCClient"])
def test_an_overloaded_server_gets_about_one_request_per_call_and_fails_them_fast(
    start_server, load
):
    server, ops = overloaded(start_server)
    before = requests_seen(ops)
    outcomes = load(server.endpoint)
    seen = requests_seen(ops) - before
    kinds = Counter(kind for kind, _ in outcomes)
    failed = [took for kind, took in outcomes if kind != "OK"]
    assert kinds["OK"] > 0, kinds  # it served
    assert failed, kinds  # and it was overloaded
    assert set(kinds) == {"OK", "RemoteError"}, kinds  # refusals: no timeouts, no full pool
    # Without a budget each refused call came back until its deadline: 8 to
    # 12 requests a call here, and the failures took seconds.
    assert seen / len(outcomes) < 2, (seen, len(outcomes), kinds)
    assert sorted(failed)[len(failed) // 2] < TIMEOUT / 5, sorted(failed)[-10:]


def test_a_refusal_says_when_to_call_again_and_a_client_short_of_time_fails_at_once(
    start_server,
):
    server = start_server("--concurrency", "1", "--backlog", "0")
    client = RPCClient(server.endpoint, timeout=10)
    try:
        assert client.sleep(1.0) == 1.0  # the server learns what a call takes
        busy = gevent.spawn(client.sleep, 1.0)
        gevent.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(RemoteError) as refused:
            client.call("echo", 1, timeout=0.5)
        took = time.monotonic() - started
        assert busy.get(timeout=10) == 1.0
    finally:
        client.close()
    assert refused.value.name == "ServerBusy"
    # One queued call of about a second: call again in about a second.
    assert 0.5 <= refused.value.retry_after <= 2.0, refused.value.retry_after
    # The pause the server asked for is past this call's deadline: no retry,
    # no wait (before the pushback it retried until its deadline).
    assert took < 0.35, took


def test_a_server_refusing_now_and_then_has_every_refusal_retried(start_server, caplog):
    # Three callers on two workers, busy about half the time: now and then
    # all three call at once.
    server = start_server("--concurrency", "2", "--backlog", "0")
    client = RPCClient(server.endpoint, timeout=10)
    failures: list[BaseException] = []
    done = [0]

    def caller(number: int) -> None:
        for call in range(40):
            try:
                client.sleep(0.02)
                done[0] += 1
            except Exception as err:
                failures.append(err)
            gevent.sleep(0.02 + 0.01 * ((number + call) % 4))

    try:
        with caplog.at_level("INFO", logger="django_zrpc.client"):
            callers = [gevent.spawn(caller, number) for number in range(3)]
            gevent.joinall(callers, timeout=60, raise_error=True)
    finally:
        client.close()
    assert failures == []
    assert done[0] == 3 * 40
    assert "Retrying rpc sleep" in caplog.text  # it did refuse some


def test_the_budget_stops_retries_below_half_and_successes_earn_them_back():
    budget = RetryBudget(10, 0.5)
    for _ in range(5):
        assert budget.allows_retry()
        budget.failed()
    assert not budget.allows_retry()  # 5 of 10 left: not more than half
    budget.succeeded()
    assert budget.allows_retry()  # 5.5
    for _ in range(100):
        budget.succeeded()
    assert budget.tokens == 10  # never more than full
    for _ in range(100):
        budget.failed()
    assert budget.tokens == 0  # never less than empty


def test_a_client_with_retry_budget_zero_retries_every_refusal(start_server):
    server = start_server("--concurrency", "1", "--backlog", "0")
    client = RPCClient(server.endpoint, timeout=10, retry_budget=0)
    try:
        assert client._budgets == {}
        busy = gevent.spawn(client.sleep, 1.0)
        gevent.sleep(0.3)
        assert client.echo("after") == "after"
        assert busy.get(timeout=10) == 1.0
        assert client._budgets == {}  # no bucket was kept
    finally:
        client.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_budget": -1}, "retry_budget must be a number of tokens from 0 to 1000"),
        ({"retry_budget": "10"}, "retry_budget must be a number of tokens from 0 to 1000"),
        ({"retry_ratio": 0}, "retry_ratio must be a share of a token above 0 and at most 1"),
        ({"retry_ratio": 2}, "retry_ratio must be a share of a token above 0 and at most 1"),
    ],
)
def test_bad_budget_options_are_refused_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        RPCClient("tcp://127.0.0.1:4242", **options)
