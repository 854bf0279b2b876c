"""A bounded pool of asyncio connections to one endpoint, shared by calls of one event loop.

The same rules as ``django_zrpc.client.gevent.pool``: at most ``size``
connections, made lazily; up to ``calls_per_connection`` calls share one; a
call goes to the busiest connection with fewer than ``SPREAD_AT`` calls in
flight, a new one is made once each open one carries ``SPREAD_AT``, and past
that the least busy takes it; a new connection's other places go to the
callers queued meanwhile; of the connections that reach
the same server process one is lent, the others are spares, lent once every
lead is full (``django_zrpc.client.spreading``); waiters are served first come,
first served, and one that waits past ``timeout`` gets ``PoolExhausted``. A
connection that saw a lost server is retired: lent no more, closed when its
last call ends.

Simpler than gevent's: making and closing a connection never waits, so no
place is ever "being opened" across a switch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django_zrpc.client.aio.connection import AsyncConnection
from django_zrpc.client.spreading import SPREAD_AT, leads_and_spares, spares_of
from django_zrpc.exceptions import PoolExhausted, ServerUnavailable
from django_zrpc.metrics import client as client_metrics

# Handed to waiters when the pool is closed.
_CLOSED = object()


class _Waiting:
    """One caller waiting for a connection, and what it was handed (None: nothing yet)."""

    __slots__ = ("future", "item")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.item: Any = None


class AsyncPool:
    """Connections to ``endpoint``, made by ``connect()`` on demand, in one event loop."""

    def __init__(
        self,
        endpoint: str,
        connect: Callable[[], AsyncConnection],
        size: int,
        calls_per_connection: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self.size = size
        self.calls_per_connection = calls_per_connection
        self._connect = connect
        # Every open connection and its calls in flight, retired ones included.
        self._calls: dict[AsyncConnection, int] = {}
        # The connections that may take more calls, the last released last:
        # the leads, and, lent once every lead is full, the spares.
        self._lendable: list[AsyncConnection] = []
        self._spares: list[AsyncConnection] = []
        self._waiting: deque[_Waiting] = deque()
        self.closed = False

    @property
    def connections(self) -> int:
        """Connections open now, idle or in use."""
        return len(self._calls)

    @property
    def calls_in_flight(self) -> int:
        """Calls holding a place in this pool now."""
        return sum(self._calls.values())

    async def acquire(self, timeout: float) -> AsyncConnection:
        """Return a connection with room for one more call, waiting up to ``timeout`` seconds."""
        if self.closed:
            raise RuntimeError(f"The pool of {self.endpoint} is closed.")
        if not self._waiting:
            found = self._take()
            if found is not None:
                return found
        waited_from = time.monotonic()
        try:
            item = await self._wait(timeout)
        finally:
            # Also a wait in vain (PoolExhausted): a full pool is what it measures.
            client_metrics.record_pool_wait(self.endpoint, time.monotonic() - waited_from)
        if item is _CLOSED:
            # As the gevent pool: the call never went out, so the client's
            # retry rule sends it elsewhere (the address left, say).
            raise ServerUnavailable(f"The pool of {self.endpoint} was closed while a call waited.")
        return item

    def _take(self) -> AsyncConnection | None:
        # The gevent pool's rule (see its acquire): fill the busiest
        # connection below SPREAD_AT, so that calls in flight on one socket
        # go out and come back in batches; then a new connection; then the
        # least busy (the last released among equals); then a spare.
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
        if len(calls) < self.size:
            return self._new()
        if best is not None and calls[best] < self.calls_per_connection:
            calls[best] += 1
            return best
        for connection in self._spares:
            if calls[connection] < self.calls_per_connection:
                calls[connection] += 1
                return connection
        return None

    def release(self, connection: AsyncConnection) -> None:
        """End a call on a healthy connection."""
        if self._waiting and not self.closed and self._lends(connection):
            self._hand(connection)  # the call's room goes to the first waiter
            return
        self._end_call(connection)
        lendable = self._lendable
        if lendable and lendable[-1] is not connection and connection in lendable:
            lendable.remove(connection)  # last released: lent first
            lendable.append(connection)

    def discard(self, connection: AsyncConnection) -> None:
        """End a call on a connection that failed: lend it no more, close it once it is idle.

        The spares of its process go with it (see ``django_zrpc.client.gevent.pool.Pool.discard``).
        """
        spares: list[AsyncConnection] = []
        if connection in self._lendable:
            self._lendable.remove(connection)
            spares = spares_of(connection, self._spares)
            self._spares = [c for c in self._spares if c not in spares]
        elif connection in self._spares:
            self._spares.remove(connection)
        for spare in spares:
            if self._calls[spare] == 0:
                del self._calls[spare]
                spare.close()
                self._place_freed()
        self._end_call(connection)

    def close(self) -> None:
        """Close the idle connections now, and the others when their calls end."""
        self.closed = True
        self._lendable.clear()
        self._spares.clear()
        for connection, calls in list(self._calls.items()):
            if not calls:
                del self._calls[connection]
                connection.close()
        while self._waiting:  # they raise at once rather than time out
            self._hand(_CLOSED)

    def _new(self) -> AsyncConnection:
        connection = self._connect()
        self._calls[connection] = 1
        if not self.closed:
            self._lendable.append(connection)
            connection.on_peer = self._regroup
            # Its other places go to the callers queued meanwhile.
            while self._waiting and self._calls[connection] < self.calls_per_connection:
                self._calls[connection] += 1
                self._hand(connection)
        return connection

    def _end_call(self, connection: AsyncConnection) -> None:
        calls = self._calls.get(connection)
        if calls is None:
            return  # closed already
        self._calls[connection] = calls - 1
        if calls == 1 and (self.closed or not self._lends(connection)):
            del self._calls[connection]  # retired, and now idle
            connection.close()
            self._place_freed()

    def _lends(self, connection: AsyncConnection) -> bool:
        return connection in self._lendable or connection in self._spares

    def _regroup(self) -> None:
        """Sort the lendable connections into leads and spares by the process they reach."""
        if not self.closed:
            lendable = self._lendable + self._spares
            self._lendable, self._spares = leads_and_spares(lendable, self.calls_per_connection)

    def _place_freed(self) -> None:
        if self._waiting and not self.closed:
            # Out of the queue first: a new connection hands its other places
            # to the callers still queued behind this one.
            waiting = self._waiting.popleft()
            found = self._take()
            if found is None:
                self._waiting.appendleft(waiting)
            else:
                self._give(waiting, found)

    def _hand(self, item: Any) -> None:
        self._give(self._waiting.popleft(), item)

    @staticmethod
    def _give(waiting: _Waiting, item: Any) -> None:
        waiting.item = item
        if not waiting.future.done():
            waiting.future.set_result(None)

    async def _wait(self, timeout: float) -> Any:
        if timeout <= 0:
            raise self._exhausted(timeout)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.create_future())
        self._waiting.append(waiting)
        timer = loop.call_later(timeout, self._expire, waiting)
        try:
            await waiting.future
        except BaseException:
            # Cancelled while waiting: what it was handed goes to the next one.
            if waiting.item is not None and waiting.item is not _CLOSED:
                self.release(waiting.item)
            raise
        finally:
            timer.cancel()
            if waiting.item is None and waiting in self._waiting:
                self._waiting.remove(waiting)
        if waiting.item is None:
            raise self._exhausted(timeout)
        return waiting.item

    @staticmethod
    def _expire(waiting: _Waiting) -> None:
        if not waiting.future.done():
            waiting.future.set_result(None)

    def _exhausted(self, timeout: float) -> PoolExhausted:
        each = self.calls_per_connection
        return PoolExhausted(
            f"All {self.size} connections to {self.endpoint} stayed in use "
            f"({each} call{'s' if each > 1 else ''} each at most) for {timeout}s; raise "
            "POOL_SIZE, CALLS_PER_CONNECTION or POOL_TIMEOUT, or call less at once."
        )
