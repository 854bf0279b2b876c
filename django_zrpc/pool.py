"""A bounded, blocking, LIFO pool of client connections to one endpoint.

The design follows redis-py's ``BlockingConnectionPool``: at most ``size``
connections, made lazily; a caller that finds them all in use waits up to
``timeout`` and then gets ``PoolExhausted``; the connection used last is handed
out first, so idle ones stay idle and can be trimmed. A connection that saw a
timeout or a lost server is discarded, not returned.

A pool belongs to the gevent hub (so the OS thread) and the process that made
it: ``RPCClient`` keeps one per hub and per process, because a connection used
from another hub hangs and one inherited through ``fork`` is unusable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gevent import monkey
from gevent.hub import Waiter, get_hub

from django_zrpc.core.client import Client
from django_zrpc.exceptions import PoolExhausted


class Pool:
    """Connections to ``endpoint``, made by ``connect()`` on demand."""

    def __init__(self, endpoint: str, connect: Callable[[], Client], size: int) -> None:
        if size < 1:
            raise ValueError(f"A pool needs a size of 1 or more, not {size!r}.")
        self.endpoint = endpoint
        self.size = size
        self._connect = connect
        self._idle: list[Client] = []  # a stack: the last released is on top
        self._in_use = 0
        self._waiters: list[Waiter] = []
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
        deadline = time.monotonic() + timeout
        # Woken for a freed connection, a waiter may still find it taken by a
        # newcomer: look again rather than go past the bound.
        while not self._idle and self.connections >= self.size:
            self._wait(deadline - time.monotonic(), timeout)
            if self._closed:
                raise RuntimeError(f"The pool of {self.endpoint} was closed.")
        if self._idle:
            connection = self._idle.pop()
        else:
            try:
                connection = self._connect()
            except BaseException:
                self._wake_one()  # the place it would have taken is free
                raise
        self._in_use += 1
        return connection

    def release(self, connection: Client) -> None:
        """Return a healthy connection for reuse."""
        self._in_use -= 1
        if self._closed:
            connection.close()
            return
        self._idle.append(connection)
        self._wake_one()

    def discard(self, connection: Client) -> None:
        """Close a connection that failed; its place is free for a new one."""
        self._in_use -= 1
        connection.close()
        self._wake_one()

    def close(self) -> None:
        """Close the idle connections now, and the others when they come back."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        while self._waiters:  # they raise at once rather than time out
            self._wake_one()

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

    def _wait(self, remaining: float, timeout: float) -> None:
        if remaining <= 0:
            raise PoolExhausted(
                f"All {self.size} connections to {self.endpoint} stayed in use for "
                f"{timeout}s; raise POOL_SIZE or POOL_TIMEOUT, or call less at once."
            )
        waiter = Waiter()
        self._waiters.append(waiter)
        timer = get_hub().loop.timer(remaining)
        timer.start(waiter.switch, False)
        woken = False
        try:
            woken = waiter.get()
        finally:
            timer.close()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif not woken:
                # Picked by _wake_one, but leaving without the connection
                # (timed out or killed meanwhile): pass the wake-up on.
                self._wake_one()

    def _wake_one(self) -> None:
        if self._waiters:
            waiter = self._waiters.pop(0)
            get_hub().loop.run_callback(waiter.switch, True)
