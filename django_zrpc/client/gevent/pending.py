"""A call in flight on a gevent connection, and the greenlet that waits for its reply."""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.hub import Waiter

from django_zrpc.wire import calls_out, protocol


class Pending(calls_out.Outgoing):
    """One call waiting for its reply, or a stream being read, and the greenlet waiting."""

    __slots__ = ("waiter",)

    def __init__(
        self, request: protocol.Event, now: float, timeout: float, server_period: float | None
    ) -> None:
        super().__init__(request, now, timeout, server_period)
        self.waiter: Waiter | None = None

    def deliver(self, reply: Any) -> None:
        """Hand ``reply`` (an event, or an exception to raise) to the waiting caller."""
        self.replies.append(reply)
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            # From the hub, never from another greenlet: a direct switch
            # would leave the calling greenlet unscheduled.
            gevent.get_hub().loop.run_callback(waiter.switch, None)

    def next_reply(self) -> protocol.Event:
        """Wait for the next reply until ``timeout`` from now; raise what is not an event."""
        if not self.replies:
            self.waiting_from(time.monotonic())
            while not self.replies:
                self.waiter = Waiter()
                self.waiter.get()
        return self.take_reply()
