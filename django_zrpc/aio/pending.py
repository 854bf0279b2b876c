"""A call in flight on an asyncio connection: ``calls_out``'s state, and a future to await."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django_zrpc.wire import calls_out, protocol


class Pending(calls_out.Outgoing):
    """A call in flight, and the future its task waits on."""

    __slots__ = ("send", "waiter")

    def __init__(
        self, request: protocol.Event, now: float, timeout: float, server_period: float | None
    ) -> None:
        super().__init__(request, now, timeout, server_period)
        self.waiter: asyncio.Future[None] | None = None
        # The request's send while no connection takes it (cancelled if the
        # call ends first: a call is never delivered after it gave up).
        self.send: asyncio.Future[Any] | None = None

    def deliver(self, reply: Any) -> None:
        """Hand ``reply`` (an event, or an exception to raise) to the waiting task."""
        self.replies.append(reply)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_reply(self) -> protocol.Event:
        """Wait for the next reply until ``timeout`` from now; raise what is not an event."""
        if not self.replies:
            self.waiting_from(time.monotonic())
            loop = asyncio.get_running_loop()
            while not self.replies:
                self.waiter = loop.create_future()
                await self.waiter
        return self.take_reply()
