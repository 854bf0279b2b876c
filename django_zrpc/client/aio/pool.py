"""A bounded pool of asyncio connections to one endpoint, shared by calls of one event loop.

The counterpart of ``django_zrpc.client.gevent.pool``, with the same rule
(``django_zrpc.client.lending``): at most ``size`` connections, made lazily,
up to ``calls_per_connection`` calls on one, spares lent once every lead is
full, waiters served first come, first served, ``PoolExhausted`` past
``timeout``, ``ServerUnavailable`` for a waiter whose pool was closed. This
module makes, closes and waits, the asyncio way; making and closing a
connection never waits here, so a place counted as opening is free again
before anyone else runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from django_zrpc.client.aio.connection import AsyncConnection
from django_zrpc.client.lending import PLACE, Lending, Waiting
from django_zrpc.metrics import client as client_metrics


class _Waiting(Waiting):
    """A caller waiting for a connection, woken through its future."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        super().__init__()
        self.future = future


def _wake(waiting: _Waiting) -> None:
    if not waiting.future.done():
        waiting.future.set_result(None)


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
        self.lending: Lending[AsyncConnection, _Waiting] = Lending(
            endpoint, size, calls_per_connection, _wake, self._retire
        )

    @property
    def closed(self) -> bool:
        return self.lending.closed

    @property
    def connections(self) -> int:
        """Connections open now, idle or in use."""
        return self.lending.connections

    @property
    def calls_in_flight(self) -> int:
        """Calls holding a place in this pool now."""
        return self.lending.calls_in_flight

    async def acquire(self, timeout: float) -> AsyncConnection:
        """Return a connection with room for one more call, waiting up to ``timeout`` seconds."""
        lending = self.lending
        if lending.closed:
            raise RuntimeError(f"The pool of {self.endpoint} is closed.")
        if not lending.waiting:
            item = lending.take()
            if item is not None:
                return self._new() if item is PLACE else item
        waited_from = time.monotonic()
        try:
            item = lending.after_wait(await self._wait(timeout))
        finally:
            # Also a wait in vain (PoolExhausted): a full pool is what it measures.
            client_metrics.record_pool_wait(self.endpoint, time.monotonic() - waited_from)
        return self._new() if item is PLACE else item

    def release(self, connection: AsyncConnection) -> None:
        """End a call on a healthy connection."""
        self.lending.release(connection)

    def discard(self, connection: AsyncConnection) -> None:
        """End a call on a connection that failed: lend it and its process's spares no more."""
        self.lending.discard(connection)

    def close(self) -> None:
        """Close the idle connections now, and the others when their calls end."""
        for connection in self.lending.close():
            connection.close()

    def _new(self) -> AsyncConnection:
        return self.lending.make(self._connect)

    def _retire(self, connections: list[AsyncConnection], apart: bool) -> None:
        # Closing never waits here, so it is never put apart.
        self.lending.close_retired(connections)

    async def _wait(self, timeout: float) -> object:
        if timeout <= 0:
            raise self.lending.exhausted(timeout)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.create_future())
        self.lending.waiting.append(waiting)
        timer = loop.call_later(timeout, _wake, waiting)
        try:
            await waiting.future
        except BaseException:
            # Cancelled while waiting: what it was handed goes to the next one.
            self.lending.left(waiting)
            raise
        finally:
            timer.cancel()
        if waiting.item is None:
            self.lending.left(waiting)
            raise self.lending.exhausted(timeout)
        return waiting.item
