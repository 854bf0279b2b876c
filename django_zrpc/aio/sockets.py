"""An asyncio client's DEALER socket on ``zmq.asyncio``, sent on and read the fast way.

zmq.asyncio makes a future and does flag arithmetic for every message, which
costs more than the send itself. ``DealerSocket`` sends on the socket
directly with int flags while it takes messages, and falls back to
zmq.asyncio's future only when a send must wait (no connection yet, with
``IMMEDIATE``); the reader awaits zmq.asyncio once, then drains without it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import zmq
import zmq.asyncio

from django_zrpc.core.dealer import configure_dealer, shared_context
from django_zrpc.curve import ClientKeys

NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)

# Shadows of the shared context, by the address of the libzmq context they
# wrap (a forked child's shared context is a new one).
_contexts: dict[int, zmq.asyncio.Context] = {}


def async_context() -> zmq.asyncio.Context:
    """The process's shared ZeroMQ context, seen through ``zmq.asyncio``.

    One libzmq context for both clients: no I/O threads of its own, and the
    same bound on sockets.
    """
    shared = shared_context()
    found = _contexts.get(shared.underlying)
    if found is None:
        found = _contexts[shared.underlying] = zmq.asyncio.Context.shadow(shared.underlying)
    return found


def has_message(sock: zmq.Socket) -> bool:
    """Whether ``sock`` has a message to read now: one getsockopt, with int flags."""
    return bool(cast(int, sock.getsockopt(_EVENTS)) & _POLLIN)


class DealerSocket:
    """A client's DEALER socket in the running loop, with its fast send and drain."""

    def __init__(self, max_event_bytes: int, curve: ClientKeys | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.socket: zmq.asyncio.Socket = async_context().socket(zmq.DEALER)
        configure_dealer(self.socket, max_event_bytes, curve)
        #: The same socket without zmq.asyncio, for non-blocking sends and drains.
        self.plain: zmq.Socket = zmq.Socket.shadow(self.socket.underlying)
        # Sends waiting in zmq.asyncio (for a connection, or room).
        self._queued = 0
        self._wake_pending = False

    def send(self, frames: list[bytes]) -> asyncio.Future[Any] | None:
        """Send ``[b"", blob]`` now if the socket takes it (None), else return its send future.

        Once one send waits, the later ones queue behind it, in order.
        """
        if not self._queued:
            try:
                self.plain.send(frames[0], _SNDMORE_NOBLOCK)
            except zmq.Again:
                pass
            else:
                # Later frames of a message are always taken with its first.
                self.plain.send(frames[1], NOBLOCK)
                self._wake_reader()
                return None
        self._queued += 1
        future = cast("asyncio.Future[Any]", self.socket.send_multipart(frames))
        future.add_done_callback(self._dequeued)
        return future

    def _dequeued(self, future: asyncio.Future[Any]) -> None:
        self._queued -= 1

    def _wake_reader(self) -> None:
        # A send on the socket may take in a reply and spend the edge of its
        # file descriptor that zmq.asyncio's reader waits for: have it look
        # at the socket's events once this turn of the loop is done.
        if not self._wake_pending:
            self._wake_pending = True
            self.loop.call_soon(self._check_events)

    def _check_events(self) -> None:
        self._wake_pending = False
        if not self.socket.closed:
            self.socket.get(zmq.EVENTS)  # zmq.asyncio wakes its reader if readable

    def close(self) -> None:
        self.socket.close(linger=0)
