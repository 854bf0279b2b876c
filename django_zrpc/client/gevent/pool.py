"""A bounded, blocking pool of client connections to one endpoint, shared by calls.

The design follows redis-py's ``BlockingConnectionPool``: at most ``size``
connections, made lazily; a caller that finds them all full waits up to
``timeout`` and then gets ``PoolExhausted``. Unlike a socket of redis-py, a
django_zrpc connection carries many calls at once (ZeroMQ multiplexes them,
and each call has its own message id), so up to ``calls_per_connection``
calls share one. Which call gets which connection, who waits and what a
closed pool raises is the rule both pools share, ``django_zrpc.client.lending``;
this module makes, closes and waits, the gevent way. With
``calls_per_connection=1`` the pool lends each connection to one call at a time.

Of the connections that reach the same server process, the pool lends one;
the others are spares: ten connections to one ``runrpc`` process made 31,000
echo calls/s at 64 callers where one made 37,000 with less CPU on both sides
(2026-11-29).

Making and closing a connection lets other greenlets run, so a place being
made or closed stays counted (``Lending.opening``) until the socket exists or
is gone.

A pool belongs to the gevent hub (so the OS thread) and the process that made
it: ``RPCClient`` keeps one per hub and per process, because a connection used
from another hub hangs and one inherited through ``fork`` is unusable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent
from gevent import monkey
from gevent.hub import Waiter, get_hub

from django_zrpc.client.gevent.connection import Client
from django_zrpc.client.lending import PLACE, SPREAD_AT, Lending, Waiting
from django_zrpc.metrics import client as client_metrics

__all__ = ["SPREAD_AT", "Pool"]


class _Waiting(Waiting):
    """A caller waiting for a connection, woken through its gevent ``Waiter``."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        super().__init__()
        self.waiter = Waiter()


def _wake(waiting: _Waiting) -> None:
    # From the hub, never from the greenlet that handed it: a direct switch
    # would leave that greenlet unscheduled.
    get_hub().loop.run_callback(waiting.waiter.switch, None)


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
        self.lending: Lending[Client, _Waiting] = Lending(
            endpoint, size, calls_per_connection, _wake, self._retire
        )
        # The OS thread and hub the pool belongs to (see release_from_anywhere).
        self.thread = monkey.get_original("_thread", "get_ident")()
        self.hub = get_hub()

    @property
    def connections(self) -> int:
        """Connections open now (or being made), idle or in use."""
        return self.lending.connections

    @property
    def calls_in_flight(self) -> int:
        """Calls that took a connection here and have not given it back."""
        return self.lending.calls_in_flight

    def acquire(self, timeout: float) -> Client:
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
            item = lending.after_wait(self._wait(timeout))
        finally:
            # Also a wait in vain (PoolExhausted): a full pool is what it measures.
            client_metrics.record_pool_wait(self.endpoint, time.monotonic() - waited_from)
        return self._new() if item is PLACE else item

    def release(self, connection: Client) -> None:
        """End a call on a healthy connection."""
        self.lending.release(connection)

    def discard(self, connection: Client) -> None:
        """End a call on a connection that failed: lend it and its process's spares no more."""
        self.lending.discard(connection)

    def close(self) -> None:
        """Close the idle connections now, and the others when their calls end."""
        for connection in self.lending.close():
            connection.close()

    def abandon(self) -> None:
        """Close the sockets only: the thread that owned the pool has ended."""
        for connection in self.lending.close():
            connection.abandon()

    def release_from_anywhere(self, connection: Client, discard: bool) -> None:
        """Give ``connection`` back, also from another OS thread (a garbage collection)."""
        give_back = self.discard if discard else self.release
        if monkey.get_original("_thread", "get_ident")() == self.thread:
            give_back(connection)
        else:
            self.hub.loop.run_callback_threadsafe(give_back, connection)

    def _new(self) -> Client:
        return self.lending.make(self._connect)

    def _retire(self, connections: list[Client], apart: bool) -> None:
        if apart:
            gevent.spawn(self.lending.close_retired, connections)
        else:
            self.lending.close_retired(connections)

    def _wait(self, timeout: float) -> object:
        if timeout <= 0:
            raise self.lending.exhausted(timeout)
        waiting = _Waiting()
        self.lending.waiting.append(waiting)
        timer = get_hub().loop.timer(timeout)
        timer.start(waiting.waiter.switch, None)
        try:
            waiting.waiter.get()
        except BaseException:
            # Killed while waiting: what it was handed goes to the next one.
            self.lending.left(waiting)
            raise
        finally:
            timer.close()
        if waiting.item is None:
            self.lending.left(waiting)
            raise self.lending.exhausted(timeout)
        return waiting.item
