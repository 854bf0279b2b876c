"""The items of a streaming call, read with ``async for`` as they come; and held in a pool."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from django_zrpc.client.streams import ClosingAsyncIterator
from django_zrpc.exceptions import LostRemote, ServerUnavailable
from django_zrpc.wire import calls_out, protocol

if TYPE_CHECKING:
    from django_zrpc.client.aio.connection import AsyncConnection
    from django_zrpc.client.aio.pending import Pending
    from django_zrpc.client.aio.pool import AsyncPool


class AsyncStream(ClosingAsyncIterator):
    """A remote stream; grants the server credit as it is read.

    ``aclose()``, ``async with``, or dropping the stream (breaking out of
    ``async for`` does) abandons the call: its heartbeats stop, and a
    django_zrpc server is told at once to stop the function.
    """

    def __init__(
        self, connection: AsyncConnection, pending: Pending, first: protocol.Event
    ) -> None:
        self._connection = connection
        self._pending: Pending | None = pending
        self._reply: protocol.Event | None = first

    async def __anext__(self) -> Any:
        pending = self._pending
        if pending is None:
            raise StopAsyncIteration
        try:
            reply = self._reply
            if reply is None:
                self._connection.grant(pending)
                reply = await pending.next_reply()
            self._reply = None
            if reply.name == protocol.STREAM:
                return reply.args
            if reply.name != protocol.STREAM_DONE:
                self._pending = None
                self._connection.forget(pending)
                calls_out.result(pending, reply)  # raises the remote error
        except BaseException:
            self.close()
            raise
        self._pending = None
        self._connection.forget(pending)
        raise StopAsyncIteration

    def close(self) -> None:
        """Abandon the stream: the server stops the function."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._connection.cancel(pending)


class PooledAsyncStream(ClosingAsyncIterator):
    """A stream that holds its place in the pool until it ends or is closed."""

    def __init__(self, stream: AsyncStream, pool: AsyncPool, connection: AsyncConnection) -> None:
        self._stream = stream
        self._pool: AsyncPool | None = pool
        self._connection = connection

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            self._give_back(discard=False)
            raise
        except (LostRemote, ServerUnavailable):
            self._give_back(discard=True)
            raise
        except BaseException:
            self._give_back(discard=False)
            raise

    def close(self) -> None:
        """Abandon the stream; the server stops the function."""
        self._stream.close()
        self._give_back(discard=False)

    def _give_back(self, discard: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        loop = self._connection.loop
        give_back = pool.discard if discard else pool.release
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            give_back(self._connection)
        elif not loop.is_closed():  # dropped in another thread (a garbage collection)
            loop.call_soon_threadsafe(give_back, self._connection)
