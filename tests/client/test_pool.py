"""The pool on its own: bounds, wake-ups and closing, with stand-in connections."""

from __future__ import annotations

import gevent
import pytest

from django_zrpc.client.gevent.pool import SPREAD_AT, Pool
from django_zrpc.exceptions import PoolExhausted, ServerUnavailable


class Connection:
    closed = False
    peer = None  # the server process it reaches: not known
    on_peer = None

    def close(self) -> None:
        self.closed = True


def test_lifo_reuse_and_the_bound():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], size=2)
    first, second = pool.acquire(1), pool.acquire(1)
    with pytest.raises(PoolExhausted, match="All 2 connections"):
        pool.acquire(0.1)
    pool.release(first)
    pool.release(second)
    assert pool.acquire(1) is second  # the last one released comes first
    assert len(made) == 2


def test_a_failed_connect_passes_its_place_to_the_next_waiter():
    attempts = []

    def connect():
        attempts.append(1)
        if len(attempts) == 2:
            raise OSError("refused once")
        return Connection()

    pool = Pool("tcp://127.0.0.1:1", connect, size=1)
    held = pool.acquire(1)
    first = gevent.spawn(pool.acquire, 5)
    second = gevent.spawn(pool.acquire, 5)
    gevent.sleep(0.05)
    pool.discard(held)  # a place is free: the first waiter's connect fails
    with pytest.raises(OSError, match="refused once"):
        first.get(timeout=1)
    # The second waiter gets the place at once, not after its 5 s timeout.
    assert isinstance(second.get(timeout=1), Connection)


def test_a_woken_waiter_that_is_killed_passes_the_wake_up_on():
    pool = Pool("tcp://127.0.0.1:1", Connection, size=1)
    held = pool.acquire(1)
    doomed = gevent.spawn(pool.acquire, 5)
    patient = gevent.spawn(pool.acquire, 5)
    gevent.sleep(0.05)
    doomed.kill(block=False)  # lands first...
    pool.release(held)  # ...after this picked `doomed`, before it could run
    assert patient.get(timeout=1) is held


def test_closing_the_pool_wakes_its_waiters_with_an_error_that_may_be_retried():
    pool = Pool("tcp://127.0.0.1:1", Connection, size=1)
    pool.acquire(1)
    waiting = gevent.spawn(pool.acquire, 5)
    gevent.sleep(0.05)
    pool.close()
    # ServerUnavailable: the call never went out, so RPCClient sends it elsewhere.
    with pytest.raises(ServerUnavailable, match="was closed while a call waited"):
        waiting.get(timeout=1)


def test_a_waiter_is_served_before_a_caller_that_asks_again_at_once():
    pool = Pool("tcp://127.0.0.1:1", Connection, size=1)
    held = pool.acquire(1)
    waiting = gevent.spawn(pool.acquire, 5)
    gevent.sleep(0.05)
    pool.release(held)
    # The caller that gave it back asks again: it queues behind the waiter.
    with pytest.raises(PoolExhausted):
        pool.acquire(0.05)
    assert waiting.get(timeout=1) is held


def test_a_busy_pool_serves_every_caller_in_turn():
    pool = Pool("tcp://127.0.0.1:1", Connection, size=2)
    served = 0
    overtaken: list[int] = []

    def caller() -> None:
        nonlocal served
        for _ in range(20):
            before = served
            connection = pool.acquire(5)
            # How many acquisitions went ahead while this caller waited.
            overtaken.append(served - before)
            served += 1
            gevent.sleep(0.001)
            pool.release(connection)

    gevent.joinall([gevent.spawn(caller) for _ in range(10)], raise_error=True)
    assert len(overtaken) == 200
    # First come, first served: the 9 others go ahead at most once each.
    assert max(overtaken) <= 9
    assert pool.connections == 2


def test_calls_spread_over_up_to_size_connections_then_share_the_least_busy():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], 2, 8)
    held = [pool.acquire(1) for _ in range(16)]
    # SPREAD_AT calls on the first, then a second connection, then the least busy.
    assert held[:SPREAD_AT] == [made[0]] * SPREAD_AT
    assert held[SPREAD_AT] is made[1]
    assert held.count(made[0]) == held.count(made[1]) == 8
    with pytest.raises(PoolExhausted, match=r"All 2 connections .* \(8 calls each at most\)"):
        pool.acquire(0.05)


def test_fewer_calls_than_after_a_burst_fill_the_busiest_connection_up_to_spread_at():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], 4, 100)
    burst = [pool.acquire(1) for _ in range(4 * SPREAD_AT)]
    assert len(made) == 4
    # Most of the burst ends: one call left on each connection.
    for connection in made:
        for _ in range(SPREAD_AT - 1):
            burst.remove(connection)
            pool.release(connection)
    # New calls batch on one connection up to SPREAD_AT rather than going one
    # a connection to the least busy, then on the next.
    held = [pool.acquire(1) for _ in range(2 * (SPREAD_AT - 1))]
    assert len(set(held[: SPREAD_AT - 1])) == 1
    assert len(set(held[SPREAD_AT - 1 :])) == 1
    assert held[0] is not held[-1]
    assert len(made) == 4
    # The other two connections fill likewise; then every one carries SPREAD_AT.
    more = [pool.acquire(1) for _ in range(2 * (SPREAD_AT - 1))]
    assert {held[0], held[-1]}.isdisjoint(more)
    assert len(set(more)) == 2
    assert pool.calls_in_flight == 4 * SPREAD_AT
    assert len(made) == 4


def test_a_full_connection_makes_way_for_a_new_one_before_spread_at():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], 2, 3)
    held = [pool.acquire(1) for _ in range(6)]
    assert held == [made[0]] * 3 + [made[1]] * 3
    with pytest.raises(PoolExhausted, match=r"All 2 connections .* \(3 calls each at most\)"):
        pool.acquire(0.05)
    pool.release(made[0])
    assert pool.acquire(1) is made[0]  # the room it freed, not a new connection
    assert pool.connections == 2


def test_a_discarded_connection_closes_when_its_last_call_ends():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], 1, 2)
    first, second = pool.acquire(1), pool.acquire(1)
    assert first is second
    waiting = gevent.spawn(pool.acquire, 5)
    gevent.sleep(0.05)
    pool.discard(first)  # retired: lent no more, but one call still runs on it
    assert not first.closed
    gevent.sleep(0.05)
    assert not waiting.ready()  # its place is not free yet
    pool.release(second)
    assert first.closed
    fresh = waiting.get(timeout=1)
    assert fresh is made[1]
    assert pool.connections == 1


class SlowToClose(Connection):
    def close(self) -> None:
        gevent.sleep(0.05)  # as Client.close() waits for its reader to end
        self.closed = True


def test_a_closing_connection_keeps_its_place_until_it_is_closed():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(SlowToClose()) or made[-1], 1)
    held = pool.acquire(1)
    peak = 0

    def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, sum(not c.closed for c in made))
            gevent.sleep(0.001)

    watcher = gevent.spawn(watch)
    closing = gevent.spawn(pool.discard, held)
    gevent.sleep(0)  # the discard is closing the connection now
    newcomers = [gevent.spawn(pool.acquire, 1) for _ in range(2)]
    gevent.sleep(0.2)
    watcher.kill()
    closing.get(timeout=1)
    assert pool.connections == 1
    assert peak == 1
    assert sum(n.ready() for n in newcomers) == 1  # the other waits for a place


def test_a_new_connection_shares_its_places_with_the_queue():
    made = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Connection()) or made[-1], 1, 3)
    first = [pool.acquire(1) for _ in range(3)]
    waiters = [gevent.spawn(pool.acquire, 5) for _ in range(3)]
    gevent.sleep(0.05)
    pool.discard(first[0])  # retired; two calls still run on it
    pool.release(first[1])
    pool.release(first[2])  # now it closes, and its place goes to the first waiter
    gevent.sleep(0.05)
    # The first waiter's new connection takes the other two waiters at once.
    assert [w.get(timeout=1) for w in waiters] == [made[1]] * 3
    assert pool.connections == 1


class Reaching(Connection):
    """A stand-in connection that learns, as Client does, which process it reaches."""

    def learn(self, peer: str | None) -> None:
        self.peer = peer
        if self.on_peer is not None:
            self.on_peer()


def burst_then_learn(pool: Pool, made: list[Reaching], calls: int, peers: list[str]) -> None:
    """Make ``calls`` calls at once, have made[i] learn peers[i], and end the calls."""
    held = [pool.acquire(1) for _ in range(calls)]
    for connection, peer in zip(made, peers, strict=True):
        connection.learn(peer)
    for connection in held:
        pool.release(connection)


def test_calls_go_to_one_connection_a_process_and_the_others_wait_as_spares():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Reaching()) or made[-1], 4, 100)
    burst_then_learn(pool, made, 4 * SPREAD_AT, ["a", "a", "a", "a"])
    assert len(made) == 4
    # One process behind all four: every call goes on one of them.
    held = [pool.acquire(1) for _ in range(64)]
    assert len(set(held)) == 1
    assert pool.connections == 4
    for connection in held:
        pool.release(connection)
    # Two processes: the calls spread over one connection to each.
    made[2].learn("b")
    held = [pool.acquire(1) for _ in range(64)]
    assert {held.count(c) for c in set(held)} == {32}
    assert {c.peer for c in set(held)} == {"a", "b"}


def test_spares_take_calls_once_every_lead_is_full():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Reaching()) or made[-1], 2, 8)
    burst_then_learn(pool, made, 16, ["a", "a"])
    held = [pool.acquire(1) for _ in range(16)]
    assert held[:8] == [held[0]] * 8  # the lead, up to calls_per_connection
    assert set(held[8:]) == {c for c in made if c is not held[0]}
    with pytest.raises(PoolExhausted):
        pool.acquire(0.05)


def test_a_discarded_lead_takes_the_spares_of_its_process_with_it():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Reaching()) or made[-1], 4, 100)
    burst_then_learn(pool, made, 4 * SPREAD_AT, ["a", "a", "a", "b"])
    held = [pool.acquire(1) for _ in range(2 * SPREAD_AT)]
    assert {c.peer for c in held} == {"a", "b"}  # SPREAD_AT calls on each process's lead
    lead = next(c for c in held if c.peer == "a")
    spares = [c for c in made if c.peer == "a" and c is not lead]
    # Its server went silent: so did the process the spares reach. They close
    # now, the lead once its other calls end.
    pool.discard(lead)
    gevent.sleep(0)  # they close in a greenlet of their own
    assert [c.closed for c in spares] == [True, True]
    assert not lead.closed
    for _ in range(SPREAD_AT - 1):
        pool.release(lead)
    assert lead.closed
    assert pool.connections == 1
    assert pool.acquire(1) is made[4]  # a new connection, maybe to another process


def test_a_spare_whose_connection_reaches_another_process_leads():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Reaching()) or made[-1], 3, 100)
    burst_then_learn(pool, made, 3 * SPREAD_AT, ["a", "a", "a"])
    assert len({pool.acquire(1) for _ in range(2 * SPREAD_AT)}) == 1
    # ZeroMQ reconnected a spare, and the process does not say who it is yet.
    spare = next(c for c in made if pool.lending.calls[c] == 0)
    spare.learn(None)
    assert pool.acquire(1) is spare  # the least busy lead now


def test_with_no_more_calls_a_connection_than_spread_at_every_connection_is_lent():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(Reaching()) or made[-1], 3, 1)
    burst_then_learn(pool, made, 3, ["a", "a", "a"])
    held = [pool.acquire(1) for _ in range(3)]
    assert set(held) == set(made)
    # No spares: a failed connection goes alone.
    pool.discard(held[0])
    pool.release(held[1])
    gevent.sleep(0)
    assert [c.closed for c in held] == [True, False, False]
    assert pool.acquire(1) is held[1]


class SlowReaching(Reaching):
    def close(self) -> None:
        gevent.sleep(0.02)  # as Client.close() waits for its reader to end
        self.closed = True


def test_closing_the_pool_while_a_discard_closes_spares_closes_each_once():
    made: list[Reaching] = []
    pool = Pool("tcp://127.0.0.1:1", lambda: made.append(SlowReaching()) or made[-1], 4, 100)
    burst_then_learn(pool, made, 4 * SPREAD_AT, ["a", "a", "a", "a"])
    lead = pool.acquire(1)
    discarding = gevent.spawn(pool.discard, lead)
    closing = gevent.spawn(pool.close)
    gevent.joinall([discarding, closing], timeout=5, raise_error=True)
    gevent.sleep(0.2)  # the spares close one after the other, 0.02 s each
    assert all(c.closed for c in made)
    assert pool.connections == 0


def test_closing_an_async_pool_wakes_its_waiters_with_the_same_retryable_error():
    """AsyncPool keeps the gevent pool's rule: a call that waited in vain may go elsewhere."""
    import asyncio

    from django_zrpc.client.aio.pool import AsyncPool
    from django_zrpc.client.retry import may_retry

    async def scenario() -> BaseException:
        pool = AsyncPool("tcp://127.0.0.1:1", Connection, size=1)  # type: ignore[arg-type]
        await pool.acquire(1)
        waiting = asyncio.ensure_future(pool.acquire(5))
        await asyncio.sleep(0.05)
        pool.close()
        with pytest.raises(ServerUnavailable, match="was closed while a call waited") as info:
            await asyncio.wait_for(waiting, 1)
        return info.value

    error = asyncio.run(scenario())
    assert may_retry(error, idempotent=False)
