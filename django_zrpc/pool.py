"""A bounded, blocking, LIFO pool of client connections to one endpoint.

The design follows redis-py's ``BlockingConnectionPool``: at most ``size``
connections, made lazily; a caller that finds them all in use waits up to
``timeout`` and then gets ``PoolExhausted``; the connection used last is handed
out first, so idle ones stay idle and can be trimmed. A connection that saw a
timeout or a lost server is discarded, not returned.

Waiters are served first come, first served: a connection given back while
callers wait is handed to the first of them directly (and a place freed by a
discarded one, for a new connection), never left for whoever asks next. A
caller that gives a connection back and asks again at once would otherwise
take it again and again while the woken waiter finds none, and waits to its
timeout.

A pool belongs to the gevent hub (so the OS thread) and the process that made
it: ``RPCClient`` keeps one per hub and per process, because a connection used
from another hub hangs and one inherited through ``fork`` is unusable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from gevent import monkey
from gevent.hub import Waiter, get_hub

from django_zrpc.core.client import Client
from django_zrpc.exceptions import PoolExhausted

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
    """Connections to ``endpoint``, made by ``connect()`` on demand."""

    def __init__(self, endpoint: str, connect: Callable[[], Client], size: int) -> None:
        if size < 1:
            raise ValueError(f"A pool needs a size of 1 or more, not {size!r}.")
        self.endpoint = endpoint
        self.size = size
        self._connect = connect
        self._idle: list[Client] = []  # a stack: the last released is on top
        # Connections lent out, and places handed to waiters for a new one.
        self._in_use = 0
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        # The OS thread and hub the pool belongs to (see release_from_anywhere).
        self.thread = monkey.get_original("_thread", "get_ident")()
        self.hub = get_hub()

    @property
    def connections(self) -> int:
        """Connections open now, idle or in use."""
        return len(self._idle) + self._in_use

    def acquire(self, timeout: float) -> Client:
        """Return a connection, waiting up to ``timeout`` seconds for one to be free."""
        if self._closed:
            raise RuntimeError(f"The pool of {self.endpoint} is closed.")
        if not self._waiting:
            if self._idle:
                self._in_use += 1
                return self._idle.pop()
            if self.connections < self.size:
                self._in_use += 1
                return self._new()
        item = self._wait(timeout)
        if item is _CLOSED:
            raise RuntimeError(f"The pool of {self.endpoint} was closed.")
        if item is _PLACE:
            return self._new()
        return item

    def release(self, connection: Client) -> None:
        """Return a healthy connection for reuse."""
        if self._closed:
            self._in_use -= 1
            connection.close()
        elif self._waiting:
            self._hand(connection)  # still lent: now to the first waiter
        else:
            self._in_use -= 1
            self._idle.append(connection)

    def discard(self, connection: Client) -> None:
        """Close a connection that failed; its place is free for a new one."""
        connection.close()
        self._free_place()

    def close(self) -> None:
        """Close the idle connections now, and the others when they come back."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        while self._waiting:  # they raise at once rather than time out
            self._hand(_CLOSED)

    def abandon(self) -> None:
        """Close the sockets only: the thread that owned the pool has ended."""
        self._closed = True
        while self._idle:
            self._idle.pop().abandon()

    def release_from_anywhere(self, connection: Client, discard: bool) -> None:
        """Give ``connection`` back, also from another OS thread (a garbage collection)."""
        give_back = self.discard if discard else self.release
        if monkey.get_original("_thread", "get_ident")() == self.thread:
            give_back(connection)
        else:
            self.hub.loop.run_callback_threadsafe(give_back, connection)

    def _new(self) -> Client:
        """Connect in a place already counted in ``_in_use``."""
        try:
            return self._connect()
        except BaseException:
            self._free_place()
            raise

    def _free_place(self) -> None:
        if self._waiting and not self._closed:
            self._hand(_PLACE)  # still counted: now the first waiter's
        else:
            self._in_use -= 1

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
            self._free_place()
        else:
            self.release(item)

    def _exhausted(self, timeout: float) -> PoolExhausted:
        return PoolExhausted(
            f"All {self.size} connections to {self.endpoint} stayed in use for "
            f"{timeout}s; raise POOL_SIZE or POOL_TIMEOUT, or call less at once."
        )
