"""A remote stream read on gevent: ``Stream``, and ``PooledStream`` that holds its connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django_zrpc.exceptions import LostRemote, ServerUnavailable
from django_zrpc.wire import protocol

if TYPE_CHECKING:
    from django_zrpc.client.gevent.connection import Client
    from django_zrpc.client.gevent.pending import Pending
    from django_zrpc.client.gevent.pool import Pool


class Stream(Iterator[Any]):
    """The items of a streaming call, read as the caller iterates.

    ``close()`` (or dropping the iterator) abandons the call: its heartbeats
    stop, and a django_zrpc server is told at once to stop the function (a
    stock zerorpc server gives the call up when the heartbeats stop).
    """

    def __init__(self, client: Client, pending: Pending, first: protocol.Event) -> None:
        self._client = client
        self._pending: Pending | None = pending
        self._reply: protocol.Event | None = first

    def __next__(self) -> Any:
        pending = self._pending
        if pending is None:
            raise StopIteration
        try:
            reply = self._reply
            if reply is None:
                self._client._grant(pending)
                reply = pending.next_reply()
            self._reply = None
            if reply.name == protocol.STREAM:
                return reply.args
            if reply.name != protocol.STREAM_DONE:
                self._pending = None
                self._client._forget(pending)
                self._client._result(pending, reply)  # raises the remote error
        except BaseException:
            self.close()
            raise
        self._pending = None
        self._client._forget(pending)
        raise StopIteration

    def close(self) -> None:
        """Abandon the stream: the server stops the function."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._client._cancel(pending)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class PooledStream(Iterator[Any]):
    """A stream that holds its connection until it ends or is closed."""

    def __init__(self, stream: Stream, pool: Pool, connection: Client) -> None:
        self._stream = stream
        self._pool: Pool | None = pool
        self._connection = connection

    def __next__(self) -> Any:
        try:
            return next(self._stream)
        except StopIteration:
            self._give_back(discard=False)
            raise
        except (LostRemote, ServerUnavailable):
            self._give_back(discard=True)
            raise
        except BaseException:
            self._give_back(discard=False)
            raise

    def close(self) -> None:
        """Abandon the stream; the server gives the call up."""
        self._stream.close()
        self._give_back(discard=False)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def _give_back(self, discard: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release_from_anywhere(self._connection, discard)
