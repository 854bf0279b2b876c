"""Who gets a connection of a pool, and when: the lending rule both pools share.

At most ``size`` connections to one endpoint, made lazily; up to
``calls_per_connection`` calls share one (ZeroMQ multiplexes them, each call
with its own message id). A call goes to the busiest connection with fewer
than ``SPREAD_AT`` calls in flight; a new connection is made once each open
one carries ``SPREAD_AT``; past that the one with the fewest calls in flight
(the last released among equals) takes it. So calls spread over the
processes behind one address (``runrpc --workers``, the pods behind a
Kubernetes Service), yet calls in flight on one socket still go out and come
back in batches, where the same calls spread one per socket cost a wake-up
each: 16 callers spread one or two a connection over the 10 a burst of 64
opened cost 84 us of client CPU a call, 4 a connection 61 (2026-11-29).

Of the connections that reach the same server process, one is lent (its
*lead*); the others are *spares*, lent only when every lead is full
(``django_zrpc.client.spreading``). A connection that saw a lost server is
retired: lent no more, and closed when its last call ends.

Waiters are served first come, first served: a place freed while callers
wait is handed to the first of them directly (a connection, or ``PLACE``:
room to make a new one), never left for whoever asks next. A caller that
gives a connection back and asks again at once would otherwise take it again
and again while the woken waiter finds none, and waits to its timeout. A
closed pool hands its waiters ``CLOSED``, and ``after_wait`` turns that into
``ServerUnavailable``: the call never went out, so the retry rule may send it
elsewhere.

No I/O of its own: the pools (``client.gevent.pool``, ``client.aio.pool``)
give the connecting, wait their own way and say when closing happens; this
decides, so that both lend alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from django_zrpc.client.spreading import SPREAD_AT, leads_and_spares, spares_of
from django_zrpc.exceptions import PoolExhausted, ServerUnavailable

__all__ = ["CLOSED", "PLACE", "SPREAD_AT", "Lending", "Waiting"]

# Handed to a waiter (or returned by take) instead of a connection: a place
# is free and counted as opening; connect in it and call ``opened``.
PLACE: Any = object()
# Handed to waiters when the pool is closed.
CLOSED: Any = object()


class Lent(Protocol):
    """What the rule needs of a connection: which server process it reaches, and to close."""

    peer: str | None
    on_peer: Callable[[], None] | None

    def close(self) -> None: ...


C = TypeVar("C", bound=Lent)


class Waiting:
    """One caller waiting, and what it was handed (None: nothing yet); a pool adds its waker."""

    __slots__ = ("item",)

    def __init__(self) -> None:
        self.item: Any = None


W = TypeVar("W", bound=Waiting)


class Lending(Generic[C, W]):
    """The book of one pool: its connections, their calls in flight, and who waits.

    ``wake(waiting)`` resumes a waiter that was handed something, from the
    pool's loop. ``retire(connections, apart)`` closes connections whose
    places are counted as opening, calling ``closed_one`` after each;
    ``apart`` asks for it to happen away from the caller (so that no
    timeout or kill of that caller can leave one behind).
    """

    def __init__(
        self,
        endpoint: str,
        size: int,
        calls_per_connection: int,
        wake: Callable[[W], None],
        retire: Callable[[list[C], bool], None],
    ) -> None:
        self.endpoint = endpoint
        self.size = size
        self.calls_per_connection = calls_per_connection
        self._wake = wake
        self._retire = retire
        # Every open connection and its calls in flight, retired ones included.
        self.calls: dict[C, int] = {}
        # The connections that may take more calls, the last released last:
        # the leads (one connection a process, and each whose process is not
        # known) and, lent only once every lead is full, the spares.
        self.lendable: list[C] = []
        self.spares: list[C] = []
        # Places taken by connections being made (also handed to waiters for
        # that) or being closed: counted until the socket exists or is gone.
        self.opening = 0
        self.waiting: deque[W] = deque()
        self.closed = False

    @property
    def connections(self) -> int:
        """Connections open now (or being made or closed), idle or in use."""
        return len(self.calls) + self.opening

    @property
    def calls_in_flight(self) -> int:
        """Calls that took a connection here and have not given it back."""
        return sum(self.calls.values())

    # -- lending ----------------------------------------------------------------

    def take(self) -> C | Any:
        """A connection with room for one more call, ``PLACE`` to make one, or None: wait.

        Only while nobody waits: a waiter is served before a newcomer.
        """
        calls = self.calls
        busy = min(SPREAD_AT, self.calls_per_connection)
        best = fill = None
        for connection in reversed(self.lendable):
            count = calls[connection]
            if count < busy and (fill is None or count > calls[fill]):
                fill = connection
            if best is None or count < calls[best]:
                best = connection
        if fill is not None:
            calls[fill] += 1
            return fill
        if len(calls) + self.opening < self.size:
            self.opening += 1
            return PLACE
        if best is not None and calls[best] < self.calls_per_connection:
            calls[best] += 1
            return best
        for connection in self.spares:
            if calls[connection] < self.calls_per_connection:
                calls[connection] += 1
                return connection
        return None

    def after_wait(self, item: Any) -> C | Any:
        """What a waiter was handed: a connection or ``PLACE``; a closed pool raises."""
        if item is CLOSED:
            # The address left its service (or the client was closed): the
            # call never went out, so it may go elsewhere.
            raise ServerUnavailable(f"The pool of {self.endpoint} was closed while a call waited.")
        return item

    def left(self, waiting: W) -> None:
        """A waiter stopped waiting (timed out, killed, cancelled): what it was handed goes on."""
        item = waiting.item
        if item is None:
            if waiting in self.waiting:
                self.waiting.remove(waiting)
        elif item is PLACE:
            self.opening -= 1
            self._place_freed()
        elif item is not CLOSED:
            self.release(item)

    def opened(self, connection: C) -> None:
        """A connection was made in a ``PLACE``; it carries the call that made it."""
        self.opening -= 1
        self.calls[connection] = 1
        if not self.closed:
            self.lendable.append(connection)
            connection.on_peer = self._regroup
            # Its other places go to the callers queued meanwhile.
            while self.waiting and self.calls[connection] < self.calls_per_connection:
                self.calls[connection] += 1
                self._hand(connection)

    def make(self, connect: Callable[[], C]) -> C:
        """Connect in a place already counted as opening, with the pool's ``connect``."""
        try:
            connection = connect()
        except BaseException:
            self.not_opened()
            raise
        self.opened(connection)
        return connection

    def close_retired(self, connections: list[C]) -> None:
        """Close retired ``connections``: each place stays counted until its socket is gone.

        Closing may let others run meanwhile (gevent's waits for a
        connection's reader to end).
        """
        for connection in connections:
            try:
                connection.close()
            finally:
                self.closed_one()

    def not_opened(self) -> None:
        """Making a connection in a ``PLACE`` failed: the place is free again."""
        self.opening -= 1
        self._place_freed()

    def closed_one(self) -> None:
        """A retired connection's socket is gone: its place is free."""
        self.opening -= 1
        self._place_freed()

    # -- giving back ------------------------------------------------------------

    def release(self, connection: C) -> None:
        """End a call on a healthy connection."""
        if self.waiting and not self.closed and self._lends(connection):
            self._hand(connection)  # the call's room goes to the first waiter
            return
        self._end_call(connection)
        lendable = self.lendable
        if lendable and lendable[-1] is not connection and connection in lendable:
            lendable.remove(connection)  # last released: lent first
            lendable.append(connection)

    def discard(self, connection: C) -> None:
        """End a call on a connection that failed: lend it no more, close it once it is idle.

        The spares of its process go with it: they reach the process that
        went silent, is unreachable or is stopping, and an idle connection's
        socket says nothing of a peer the network cut off: lent later, a
        spare would carry calls into the void until the heartbeats told.
        """
        spares: list[C] = []
        if connection in self.lendable:
            self.lendable.remove(connection)
            spares = spares_of(connection, self.spares)
            self.spares = [c for c in self.spares if c not in spares]
        elif connection in self.spares:
            self.spares.remove(connection)
        idle = [c for c in spares if self.calls[c] == 0]
        if idle:
            for each in idle:
                del self.calls[each]
            self.opening += len(idle)
            self._retire(idle, True)
        self._end_call(connection)

    def close(self) -> list[C]:
        """Lend no more; return the idle connections (forgotten here) for the pool to close.

        Waiters are handed ``CLOSED``, so they raise at once rather than
        time out; busy connections are retired when their calls end.
        """
        self.closed = True
        self.lendable.clear()
        self.spares.clear()
        idle = [c for c, count in self.calls.items() if not count]
        for connection in idle:
            del self.calls[connection]
        while self.waiting:
            self._hand(CLOSED)
        return idle

    def exhausted(self, timeout: float) -> PoolExhausted:
        each = self.calls_per_connection
        return PoolExhausted(
            f"All {self.size} connections to {self.endpoint} stayed in use "
            f"({each} call{'s' if each > 1 else ''} each at most) for {timeout}s; raise "
            "POOL_SIZE, CALLS_PER_CONNECTION or POOL_TIMEOUT, or call less at once."
        )

    # -- inside -----------------------------------------------------------------

    def _end_call(self, connection: C) -> None:
        calls = self.calls.get(connection)
        if calls is None:
            return  # closed already
        self.calls[connection] = calls - 1
        if calls == 1 and (self.closed or not self._lends(connection)):
            del self.calls[connection]  # retired, and now idle
            self.opening += 1
            self._retire([connection], False)

    def _lends(self, connection: C) -> bool:
        return connection in self.lendable or connection in self.spares

    def _regroup(self) -> None:
        """Sort the lendable connections into leads and spares by the process they reach."""
        if not self.closed:
            lendable = self.lendable + self.spares
            self.lendable, self.spares = leads_and_spares(lendable, self.calls_per_connection)

    def _place_freed(self) -> None:
        if self.waiting and not self.closed:
            self.opening += 1  # now the first waiter's, to connect in
            self._hand(PLACE)

    def _hand(self, item: Any) -> None:
        waiting = self.waiting.popleft()
        waiting.item = item
        self._wake(waiting)
