"""A bounded, blocking pool of client connections to one endpoint, shared by calls.

The design follows redis-py's ``BlockingConnectionPool``: at most ``size``
connections, made lazily; a caller that finds them all full waits up to
``timeout`` and then gets ``PoolExhausted``. A connection that saw a lost
server is retired: lent no more, and closed when its last call ends.

Unlike a socket of redis-py, a django_zrpc connection carries many calls at
once (ZeroMQ multiplexes them, and each call has its own message id), so up
to ``calls_per_connection`` calls share one. A call goes to the busiest
connection with fewer than ``SPREAD_AT`` calls in flight, a new connection is
made once each open one carries ``SPREAD_AT``, and past that the one with the
fewest calls in flight (the last released among equals) takes it: calls spread
over the processes behind one address (``runrpc --workers``, the pods behind
a Kubernetes Service), yet calls in flight on one socket still go out and
come back in batches, where the same calls spread one per socket cost a
wake-up each. With ``calls_per_connection=1`` the pool lends each connection
to one call at a time.

Of the connections that reach the same server process, the pool lends one
(its *lead*); the others are *spares*, lent only when every lead is full
(``calls_per_connection``; see ``django_zrpc.client.spreading``). So calls spread
over processes, not over connections to the same one: ten connections to
one ``runrpc`` process made 31,000 echo calls/s at 64 callers where one made
37,000 with less CPU on both sides (2026-11-29). A connection to a server
that does not say which process it is (a stock zerorpc server) is a lead of
its own, as before.

Waiters are served first come, first served: a place freed while callers wait
is handed to the first of them directly (a connection, or room for a new
one), never left for whoever asks next. A caller that gives a connection back
and asks again at once would otherwise take it again and again while the
woken waiter finds none, and waits to its timeout.

A pool belongs to the gevent hub (so the OS thread) and the process that made
it: ``RPCClient`` keeps one per hub and per process, because a connection used
from another hub hangs and one inherited through ``fork`` is unusable.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent import monkey
from gevent.hub import Waiter, get_hub

from django_zrpc.client.gevent.connection import Client
from django_zrpc.client.spreading import SPREAD_AT, leads_and_spares, spares_of
from django_zrpc.exceptions import PoolExhausted, ServerUnavailable
from django_zrpc.metrics import client as client_metrics

__all__ = ["SPREAD_AT", "Pool"]


# Handed to a waiter instead of a connection: a place is free, make a new one.
_PLACE = object()
# Handed to waiters when the pool is closed.
_CLOSED = object()


class _Waiting:
    """One caller waiting for a connection, and what it was handed (None: nothing yet)."""

    __slots__ = ("item", "waiter")

    def __init__(self) -> None:
        self.waiter = Waiter()
        self.item: Any = None


class Pool:
    """Connections to ``endpoint``, made by ``connect()`` on demand.

    ``size`` and ``calls_per_connection`` are 1 or more; ``RPCClient`` checks them.
    """

    def __init__(
        self,
        endpoint: str,
        connect: Callable[[], Client],
        size: int,
        calls_per_connection: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self.size = size
        self.calls_per_connection = calls_per_connection
        self._connect = connect
        # Every open connection and its calls in flight, retired ones included.
        self._calls: dict[Client, int] = {}
        # The connections that may take more calls, the last released last:
        # the leads (one connection a process, and each whose process is not
        # known) and, lent only once every lead is full, the spares.
        self._lendable: list[Client] = []
        self._spares: list[Client] = []
        # Places taken by connections being made (also handed to waiters for
        # that) or being closed: counted until the socket exists or is gone.
        self._opening = 0
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        # The OS thread and hub the pool belongs to (see release_from_anywhere).
        self.thread = monkey.get_original("_thread", "get_ident")()
        self.hub = get_hub()

    @property
    def connections(self) -> int:
        """Connections open now (or being made), idle or in use."""
        return len(self._calls) + self._opening

    @property
    def calls_in_flight(self) -> int:
        """Calls that took a connection here and have not given it back."""
        return sum(self._calls.values())

    def acquire(self, timeout: float) -> Client:
        """Return a connection with room for one more call, waiting up to ``timeout`` seconds."""
        if self._closed:
            raise RuntimeError(f"The pool of {self.endpoint} is closed.")
        if not self._waiting:
            # The busiest connection with fewer than SPREAD_AT calls in
            # flight; a new one while every open one has SPREAD_AT and there
            # is room; then the one with the fewest (the last released among
            # equals): calls spread over up to ``size`` connections, and so
            # over the processes behind one address (runrpc --workers), which
            # the kernel hands connections. Filling the busiest first keeps
            # calls batched when fewer are in flight than the connections
            # opened for a burst could carry: 16 callers spread one or two a
            # connection over the 10 a burst of 64 opened cost 84 us of
            # client CPU a call, 4 a connection 61 (2026-11-29).
            calls = self._calls
            busy = min(SPREAD_AT, self.calls_per_connection)
            best = fill = None
            for connection in reversed(self._lendable):
                count = calls[connection]
                if count < busy and (fill is None or count > calls[fill]):
                    fill = connection
                if best is None or count < calls[best]:
                    best = connection
            if fill is not None:
                calls[fill] += 1
                return fill
            if self.connections < self.size:
                self._opening += 1
                return self._new()
            if best is not None and calls[best] < self.calls_per_connection:
                calls[best] += 1
                return best
            for connection in self._spares:
                if calls[connection] < self.calls_per_connection:
                    calls[connection] += 1
                    return connection
        waited_from = time.monotonic()
        try:
            item = self._wait(timeout)
        finally:
            # Also a wait in vain (PoolExhausted): a full pool is what it measures.
            client_metrics.record_pool_wait(self.endpoint, time.monotonic() - waited_from)
        if item is _CLOSED:
            # The address left its service (or the client was closed): the
            # call never went out, so it may go elsewhere.
            raise ServerUnavailable(f"The pool of {self.endpoint} was closed while a call waited.")
        if item is _PLACE:
            return self._new()
        return item

    def release(self, connection: Client) -> None:
        """End a call on a healthy connection."""
        if self._waiting and not self._closed and self._lends(connection):
            self._hand(connection)  # the call's room goes to the first waiter
            return
        self._end_call(connection)
        lendable = self._lendable
        if lendable and lendable[-1] is not connection and connection in lendable:
            lendable.remove(connection)  # last released: lent first
            lendable.append(connection)

    def discard(self, connection: Client) -> None:
        """End a call on a connection that failed: lend it no more, close it once it is idle.

        The spares of its process go with it: they reach the process that
        went silent, is unreachable or is stopping, and an idle connection's
        socket says nothing of a peer the network cut off: lent later, a
        spare would carry calls into the void until the heartbeats told.
        """
        spares: list[Client] = []
        if connection in self._lendable:
            self._lendable.remove(connection)
            spares = spares_of(connection, self._spares)
            self._spares = [c for c in self._spares if c not in spares]
        elif connection in self._spares:
            self._spares.remove(connection)
        idle = [c for c in spares if self._calls[c] == 0]
        if idle:
            # Closed apart, so that no timeout or kill of this caller can
            # leave one behind; their places count until they are closed.
            for each in idle:
                del self._calls[each]
            self._opening += len(idle)
            gevent.spawn(self._close_retired, idle)
        self._end_call(connection)

    def _close_retired(self, connections: list[Client]) -> None:
        # Closing waits for a connection's reader to end, and others run
        # meanwhile: each place, counted in _opening by the caller, stays
        # counted until the socket is gone.
        for connection in connections:
            try:
                connection.close()
            finally:
                self._opening -= 1
                self._place_freed()

    def close(self) -> None:
        """Close the idle connections now, and the others when their calls end."""
        self._closed = True
        self._lendable.clear()
        self._spares.clear()
        for connection in list(self._calls):
            # Each close lets others run, and a discard closes idle spares.
            if self._calls.get(connection) == 0:
                del self._calls[connection]
                connection.close()
        while self._waiting:  # they raise at once rather than time out
            self._hand(_CLOSED)

    def abandon(self) -> None:
        """Close the sockets only: the thread that owned the pool has ended."""
        self._closed = True
        self._lendable.clear()
        self._spares.clear()
        for connection in list(self._calls):
            if self._calls.get(connection) == 0:
                del self._calls[connection]
                connection.abandon()

    def release_from_anywhere(self, connection: Client, discard: bool) -> None:
        """Give ``connection`` back, also from another OS thread (a garbage collection)."""
        give_back = self.discard if discard else self.release
        if monkey.get_original("_thread", "get_ident")() == self.thread:
            give_back(connection)
        else:
            self.hub.loop.run_callback_threadsafe(give_back, connection)

    def _new(self) -> Client:
        """Connect in a place already counted in ``_opening``."""
        try:
            connection = self._connect()
        except BaseException:
            self._opening -= 1
            self._place_freed()
            raise
        self._opening -= 1
        self._calls[connection] = 1
        if not self._closed:
            self._lendable.append(connection)
            connection.on_peer = self._regroup
            # Its other places go to the callers queued meanwhile.
            while self._waiting and self._calls[connection] < self.calls_per_connection:
                self._calls[connection] += 1
                self._hand(connection)
        return connection

    def _end_call(self, connection: Client) -> None:
        calls = self._calls.get(connection)
        if calls is None:
            return  # closed already
        self._calls[connection] = calls - 1
        if calls == 1 and (self._closed or not self._lends(connection)):
            del self._calls[connection]  # retired, and now idle
            self._opening += 1
            self._close_retired([connection])

    def _lends(self, connection: Client) -> bool:
        return connection in self._lendable or connection in self._spares

    def _regroup(self) -> None:
        """Sort the lendable connections into leads and spares by the process they reach."""
        if not self._closed:
            lendable = self._lendable + self._spares
            self._lendable, self._spares = leads_and_spares(lendable, self.calls_per_connection)

    def _place_freed(self) -> None:
        if self._waiting and not self._closed:
            self._opening += 1  # now the first waiter's, to connect in
            self._hand(_PLACE)

    def _hand(self, item: Any) -> None:
        waiting = self._waiting.popleft()
        waiting.item = item
        # From the hub, never from this greenlet: a direct switch would leave
        # the caller unscheduled.
        get_hub().loop.run_callback(waiting.waiter.switch, None)

    def _wait(self, timeout: float) -> Any:
        if timeout <= 0:
            raise self._exhausted(timeout)
        waiting = _Waiting()
        self._waiting.append(waiting)
        timer = get_hub().loop.timer(timeout)
        timer.start(waiting.waiter.switch, None)
        try:
            waiting.waiter.get()
        except BaseException:
            # Killed while waiting: what it was handed goes to the next one.
            if waiting.item is not None and waiting.item is not _CLOSED:
                self._give_back(waiting.item)
            raise
        finally:
            timer.close()
            if waiting.item is None:
                self._waiting.remove(waiting)
        if waiting.item is None:
            raise self._exhausted(timeout)
        return waiting.item

    def _give_back(self, item: Any) -> None:
        if item is _PLACE:
            self._opening -= 1
            self._place_freed()
        else:
            self.release(item)

    def _exhausted(self, timeout: float) -> PoolExhausted:
        each = self.calls_per_connection
        return PoolExhausted(
            f"All {self.size} connections to {self.endpoint} stayed in use "
            f"({each} call{'s' if each > 1 else ''} each at most) for {timeout}s; raise "
            "POOL_SIZE, CALLS_PER_CONNECTION or POOL_TIMEOUT, or call less at once."
        )
