"""The lending rule of both pools, gevent's ``Pool`` and asyncio's ``AsyncPool``, with stand-ins.

Each scenario is written once as a coroutine over a ``Side``: on the asyncio
side it runs in an event loop and awaits the pool; on the gevent side the
pool blocks the greenlet instead, so the coroutine never suspends and runs
to its end in one step. Both pools must lend alike, the gevent one being the
reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import gevent
import pytest

from django_zrpc.client.aio.pool import AsyncPool
from django_zrpc.client.gevent.pool import Pool
from django_zrpc.client.retry import may_retry
from django_zrpc.client.spreading import SPREAD_AT
from django_zrpc.exceptions import PoolExhausted, ServerUnavailable

ENDPOINT = "tcp://127.0.0.1:1"


class Connection:
    closed = False
    peer = None  # the server process it reaches: not known
    on_peer = None

    def close(self) -> None:
        self.closed = True

    def learn(self, peer: str | None) -> None:
        """Learn, as a real connection does, which process it reaches."""
        self.peer = peer
        if self.on_peer is not None:
            self.on_peer()


class GeventSide:
    """Drive a gevent ``Pool``: its calls block the greenlet, so nothing is awaited for real."""

    name = "gevent"

    def pool(self, made: list[Connection], size: int, calls_per_connection: int = 1) -> Any:
        connect = lambda: made.append(Connection()) or made[-1]  # noqa: E731
        return Pool(ENDPOINT, connect, size, calls_per_connection)

    async def acquire(self, pool: Any, timeout: float) -> Any:
        return pool.acquire(timeout)

    def spawn(self, pool: Any, timeout: float) -> Any:
        return gevent.spawn(pool.acquire, timeout)

    async def result(self, handle: Any) -> Any:
        return handle.get(timeout=1)

    def ready(self, handle: Any) -> bool:
        return handle.ready()

    async def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def run(self, scenario: Coroutine[Any, Any, Any]) -> Any:
        try:
            scenario.send(None)
        except StopIteration as done:
            return done.value
        scenario.close()
        raise AssertionError("A gevent scenario awaited something that suspends.")


class AioSide:
    """Drive an ``AsyncPool`` in an event loop of its own."""

    name = "aio"

    def pool(self, made: list[Connection], size: int, calls_per_connection: int = 1) -> Any:
        return AsyncPool(
            ENDPOINT,
            lambda: made.append(Connection()) or made[-1],  # type: ignore[arg-type,return-value]
            size,
            calls_per_connection,
        )

    async def acquire(self, pool: Any, timeout: float) -> Any:
        return await pool.acquire(timeout)

    def spawn(self, pool: Any, timeout: float) -> Any:
        return asyncio.ensure_future(pool.acquire(timeout))

    async def result(self, handle: Any) -> Any:
        return await asyncio.wait_for(handle, 1)

    def ready(self, handle: Any) -> bool:
        return handle.done()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def run(self, scenario: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(scenario)


@pytest.fixture(params=[GeventSide, AioSide], ids=lambda side: side.name)
def side(request: pytest.FixtureRequest) -> Any:
    return request.param()


def scenario(test: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[[Any], Any]:
    """Run the coroutine ``test(side)`` on the side under test."""

    def run(side: Any) -> Any:
        return side.run(test(side))

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


@scenario
async def test_lifo_reuse_and_the_bound(side):
    made: list[Connection] = []
    pool = side.pool(made, 2)
    first, second = await side.acquire(pool, 1), await side.acquire(pool, 1)
    with pytest.raises(PoolExhausted, match="All 2 connections"):
        await side.acquire(pool, 0.05)
    pool.release(first)
    pool.release(second)
    assert await side.acquire(pool, 1) is second  # the last one released comes first
    assert len(made) == 2


@scenario
async def test_a_closed_pool_refuses_calls(side):
    pool = side.pool([], 1)
    pool.close()
    with pytest.raises(RuntimeError, match="is closed"):
        await side.acquire(pool, 1)


@scenario
async def test_closing_the_pool_wakes_its_waiters_with_an_error_that_may_be_retried(side):
    pool = side.pool([], 1)
    await side.acquire(pool, 1)
    waiting = side.spawn(pool, 5)
    await side.sleep(0.05)
    pool.close()
    # ServerUnavailable: the call never went out, so the client sends it elsewhere.
    with pytest.raises(ServerUnavailable, match="was closed while a call waited") as info:
        await side.result(waiting)
    assert may_retry(info.value, idempotent=False)


@scenario
async def test_a_waiter_is_served_before_a_caller_that_asks_again_at_once(side):
    pool = side.pool([], 1)
    held = await side.acquire(pool, 1)
    waiting = side.spawn(pool, 5)
    await side.sleep(0.05)
    pool.release(held)
    # The caller that gave it back asks again: it queues behind the waiter.
    with pytest.raises(PoolExhausted):
        await side.acquire(pool, 0.05)
    assert await side.result(waiting) is held


@scenario
async def test_calls_spread_over_up_to_size_connections_then_share_the_least_busy(side):
    made: list[Connection] = []
    pool = side.pool(made, 2, 8)
    held = [await side.acquire(pool, 1) for _ in range(16)]
    # SPREAD_AT calls on the first, then a second connection, then the least busy.
    assert held[:SPREAD_AT] == [made[0]] * SPREAD_AT
    assert held[SPREAD_AT] is made[1]
    assert held.count(made[0]) == held.count(made[1]) == 8
    with pytest.raises(PoolExhausted, match=r"All 2 connections .* \(8 calls each at most\)"):
        await side.acquire(pool, 0.05)


@scenario
async def test_fewer_calls_than_after_a_burst_fill_the_busiest_connection_up_to_spread_at(side):
    made: list[Connection] = []
    pool = side.pool(made, 4, 100)
    burst = [await side.acquire(pool, 1) for _ in range(4 * SPREAD_AT)]
    assert len(made) == 4
    # Most of the burst ends: one call left on each connection.
    for connection in made:
        for _ in range(SPREAD_AT - 1):
            burst.remove(connection)
            pool.release(connection)
    # New calls batch on one connection up to SPREAD_AT rather than going one
    # a connection to the least busy, then on the next.
    held = [await side.acquire(pool, 1) for _ in range(2 * (SPREAD_AT - 1))]
    assert len(set(held[: SPREAD_AT - 1])) == 1
    assert len(set(held[SPREAD_AT - 1 :])) == 1
    assert held[0] is not held[-1]
    more = [await side.acquire(pool, 1) for _ in range(2 * (SPREAD_AT - 1))]
    assert {held[0], held[-1]}.isdisjoint(more)
    assert pool.calls_in_flight == 4 * SPREAD_AT
    assert len(made) == 4


@scenario
async def test_a_full_connection_makes_way_for_a_new_one_before_spread_at(side):
    made: list[Connection] = []
    pool = side.pool(made, 2, 3)
    held = [await side.acquire(pool, 1) for _ in range(6)]
    assert held == [made[0]] * 3 + [made[1]] * 3
    with pytest.raises(PoolExhausted, match=r"All 2 connections .* \(3 calls each at most\)"):
        await side.acquire(pool, 0.05)
    pool.release(made[0])
    assert await side.acquire(pool, 1) is made[0]  # the room it freed, not a new connection
    assert pool.connections == 2


@scenario
async def test_a_discarded_connection_closes_when_its_last_call_ends(side):
    made: list[Connection] = []
    pool = side.pool(made, 1, 2)
    first, second = await side.acquire(pool, 1), await side.acquire(pool, 1)
    assert first is second
    waiting = side.spawn(pool, 5)
    await side.sleep(0.05)
    pool.discard(first)  # retired: lent no more, but one call still runs on it
    assert not first.closed
    await side.sleep(0.05)
    assert not side.ready(waiting)  # its place is not free yet
    pool.release(second)
    assert first.closed
    assert await side.result(waiting) is made[1]
    assert pool.connections == 1


@scenario
async def test_a_new_connection_shares_its_places_with_the_queue(side):
    made: list[Connection] = []
    pool = side.pool(made, 1, 3)
    first = [await side.acquire(pool, 1) for _ in range(3)]
    waiters = [side.spawn(pool, 5) for _ in range(3)]
    await side.sleep(0.05)
    pool.discard(first[0])  # retired; two calls still run on it
    pool.release(first[1])
    pool.release(first[2])  # now it closes, and its place goes to the first waiter
    await side.sleep(0.05)
    # The first waiter's new connection takes the other two waiters at once,
    # long before their 5 s would run out.
    assert all(side.ready(w) for w in waiters)
    assert [await side.result(w) for w in waiters] == [made[1]] * 3
    assert pool.connections == 1


async def burst_then_learn(side, pool, made, calls: int, peers: list[str]) -> None:
    """Make ``calls`` calls at once, have made[i] learn peers[i], and end the calls."""
    held = [await side.acquire(pool, 1) for _ in range(calls)]
    for connection, peer in zip(made, peers, strict=True):
        connection.learn(peer)
    for connection in held:
        pool.release(connection)


@scenario
async def test_calls_go_to_one_connection_a_process_and_the_others_wait_as_spares(side):
    made: list[Connection] = []
    pool = side.pool(made, 4, 100)
    await burst_then_learn(side, pool, made, 4 * SPREAD_AT, ["a", "a", "a", "a"])
    held = [await side.acquire(pool, 1) for _ in range(64)]
    assert len(set(held)) == 1
    assert pool.connections == 4
    for connection in held:
        pool.release(connection)
    # Two processes: the calls spread over one connection to each.
    made[2].learn("b")
    held = [await side.acquire(pool, 1) for _ in range(64)]
    assert {held.count(c) for c in set(held)} == {32}
    assert {c.peer for c in set(held)} == {"a", "b"}


@scenario
async def test_spares_take_calls_once_every_lead_is_full(side):
    made: list[Connection] = []
    pool = side.pool(made, 2, 8)
    await burst_then_learn(side, pool, made, 16, ["a", "a"])
    held = [await side.acquire(pool, 1) for _ in range(16)]
    assert held[:8] == [held[0]] * 8  # the lead, up to calls_per_connection
    assert set(held[8:]) == {c for c in made if c is not held[0]}
    with pytest.raises(PoolExhausted):
        await side.acquire(pool, 0.05)


@scenario
async def test_a_discarded_lead_takes_the_spares_of_its_process_with_it(side):
    made: list[Connection] = []
    pool = side.pool(made, 4, 100)
    await burst_then_learn(side, pool, made, 4 * SPREAD_AT, ["a", "a", "a", "b"])
    held = [await side.acquire(pool, 1) for _ in range(2 * SPREAD_AT)]
    assert {c.peer for c in held} == {"a", "b"}
    lead = next(c for c in held if c.peer == "a")
    spares = [c for c in made if c.peer == "a" and c is not lead]
    pool.discard(lead)
    await side.sleep(0)  # gevent closes them in a greenlet of its own
    assert [c.closed for c in spares] == [True, True]
    assert not lead.closed
    for _ in range(SPREAD_AT - 1):
        pool.release(lead)
    assert lead.closed
    assert pool.connections == 1
    assert await side.acquire(pool, 1) is made[4]  # a new connection


@scenario
async def test_a_spare_whose_connection_reaches_another_process_leads(side):
    made: list[Connection] = []
    pool = side.pool(made, 3, 100)
    await burst_then_learn(side, pool, made, 3 * SPREAD_AT, ["a", "a", "a"])
    assert len({await side.acquire(pool, 1) for _ in range(2 * SPREAD_AT)}) == 1
    # ZeroMQ reconnected a spare, and the process does not say who it is yet.
    spare = next(c for c in made if pool.lending.calls[c] == 0)
    spare.learn(None)
    assert await side.acquire(pool, 1) is spare


@scenario
async def test_with_no_more_calls_a_connection_than_spread_at_every_connection_is_lent(side):
    made: list[Connection] = []
    pool = side.pool(made, 3, 1)
    await burst_then_learn(side, pool, made, 3, ["a", "a", "a"])
    held = [await side.acquire(pool, 1) for _ in range(3)]
    assert set(held) == set(made)
    # No spares: a failed connection goes alone.
    pool.discard(held[0])
    pool.release(held[1])
    await side.sleep(0)
    assert [c.closed for c in held] == [True, False, False]
    assert await side.acquire(pool, 1) is held[1]
