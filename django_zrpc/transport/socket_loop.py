"""One greenlet that owns a ZeroMQ socket: it sends what others queue and receives.

pyzmq's gevent flavour (``zmq.green``) checks the socket state after every
operation and waits with a gevent event per operation; zerorpc adds a
``gevent.Timeout`` per operation on top. Here one greenlet drains the socket
with non-blocking receives, sends what workers queued, and checks the socket
state once per pass before it sleeps on the socket's file descriptor.

A ZeroMQ socket's descriptor is edge-triggered and any operation can consume
the edge, so the loop never sleeps before it knows that nothing is readable:
a receive that found nothing says so (it reads the socket's commands first,
and the next command then raises the edge anew), else ``EVENTS`` does.
"""

from __future__ import annotations

import errno
import logging
import os
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import zmq

from django_zrpc.transport.frames import ZERO_COPY_BYTES, as_bytes, has_message

# Plain ints: pyzmq's flag enums cost microseconds per operation in arithmetic.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK

#: Receives in a row before the loop lets other greenlets run, and then sends
#: what they queued. Small, so that both ends work at once: with 64, the
#: calls in flight on one connection went back and forth as one batch, each
#: process idle while the other worked through it (echo on one connection,
#: 64 callers: 24,000 calls/s with 64, 37,000 with 8 or 16; 16 callers:
#: 15,000 with 16, 26,000 with 8; 2026-11-29).
BURST = 8

# Errors that mean the socket itself is gone (closed, or its context ended):
# the loop ends. Any other error concerns one message, which is dropped.
_SOCKET_GONE = (errno.ENOTSOCK, zmq.ETERM)

# Every loop of this process, so that a child made by fork can stop the ones
# it inherited: their sockets belong to the parent's ZeroMQ context.
_LOOPS: weakref.WeakSet[SocketLoop] = weakref.WeakSet()


def _stop_inherited_loops() -> None:
    for loop in list(_LOOPS):
        loop.inherited = True
        loop.stop_watching()
    _LOOPS.clear()


os.register_at_fork(after_in_child=_stop_inherited_loops)


class SocketLoop:
    """Run ``socket``'s I/O in one greenlet; ``send`` may be called from any greenlet."""

    def __init__(
        self,
        socket: zmq.Socket,
        on_frames: Callable[..., None],
        logger: logging.Logger,
        *,
        wanted: Callable[[Any], bool] | None = None,
        on_sent: Callable[[Any], None] | None = None,
        on_unreachable: Callable[[Any], None] | None = None,
        user_ids: bool = False,
        on_peek: Callable[[zmq.Frame], None] | None = None,
    ) -> None:
        self.socket = socket
        self._on_frames = on_frames
        # The owner's logger: a client's dropped message is the client's news.
        self._logger = logger
        if user_ids:
            # ``on_frames(frames, user_id)``: the User-Id a ZAP handler gave
            # the connection the message came on (CURVE: the key's name).
            self._receive_burst = self._receive_burst_with_user_id  # type: ignore[method-assign]
        # Whether a queued message is still wanted when its turn comes; a
        # request whose caller gave up is dropped rather than sent late.
        self._wanted = wanted
        self._on_sent = on_sent
        # A ROUTER with ROUTER_MANDATORY: a message for a peer whose connection
        # is gone raises EHOSTUNREACH (``on_unreachable(owner)``), and one for a
        # peer whose queue is full raises EAGAIN; both are dropped, as a plain
        # ROUTER drops them, so that no peer holds up another's replies.
        self._on_unreachable = on_unreachable
        # Whether the next message's first frame goes to on_peek, which reads
        # its connection's properties (ZMQ_METADATA).
        self._peeking = False
        self._on_peek = on_peek
        self._outbox: deque[tuple[list[bytes], Any]] = deque()
        self._wake = gevent.event.Event()
        self._sleeping = False
        self._watcher: Any = None
        self._flushing = False
        self.inherited = False
        _LOOPS.add(self)

    def send(self, frames: list[bytes], owner: Any = None) -> None:
        """Send ``frames`` now if the loop sleeps with nothing queued, else queue them.

        Waking the loop to send one message costs more than the send: the
        hub's callback, two greenlet switches and a receive that finds
        nothing (about 15 us a call here, with one caller at a time). A send
        from here may take the descriptor's edge of a message that arrived
        meanwhile, so the socket's state is asked after it (3.7 us), and the
        loop woken only if something is readable or the send would block.
        """
        outbox = self._outbox
        outbox.append((frames, owner))
        if self._sleeping and (
            len(outbox) > 1
            or self._flushing
            or self.inherited
            or self._send_queued()  # sent from here: True if it would block
            or has_message(self.socket)
        ):
            self._wake.set()

    def send_now(self, frames: list[bytes]) -> None:
        """Send ``frames`` (after what is queued) from this greenlet, without waiting for the loop.

        For a message that must leave even when this thread's hub may not run
        again soon, as in a thread that gevent did not patch.
        """
        self.send(frames)
        # Not inside a flush under way (a garbage collection can close a
        # stream in the middle of one), nor on a socket a fork inherited.
        if not (self._flushing or self.inherited):
            self.flush()
        # A send can take the descriptor's edge: make the loop check the state.
        self._wake.set()

    def peek(self) -> None:
        """Hand the next message's first frame to ``on_peek``, for its connection's properties.

        Once, not every message: reading a property costs 0.3 us.
        """
        self._peeking = self._on_peek is not None

    def _peek(self, frame: zmq.Frame) -> None:
        self._peeking = False
        try:
            self._on_peek(frame)  # type: ignore[misc]
        except Exception:
            self._logger.exception("Reading a connection's properties failed; the loop goes on.")

    def receive_now(self) -> None:
        """Handle what the socket has received so far, from this greenlet."""
        if has_message(self.socket) and not self.inherited:
            self._receive_burst()
            self._wake.set()  # as in send_now

    def run(self) -> None:
        """Serve the socket until killed or the socket is closed."""
        socket = self.socket
        # Watch the descriptor only while running: a watcher left on a closed
        # descriptor makes libev abort the whole process.
        self._watcher = gevent.get_hub().loop.io(socket.getsockopt(zmq.FD), 1)
        self._watcher.start(self._wake.set)
        try:
            while not self.inherited:
                blocked = self.flush()
                received = self._receive_burst()
                if received == BURST:
                    gevent.sleep(0)  # more may be waiting: let the workers run first
                    continue
                if self._outbox and not blocked:
                    continue
                self._wake.clear()
                # The burst ended on a receive that found nothing, the last
                # operation on the socket: asking EVENTS again would cost two
                # more system calls a pass (2.8 us here) to learn the same.
                self._sleeping = True
                # Blocked sends (no connection yet) are retried now and then:
                # a connection being made does not always raise an edge.
                self._wake.wait(timeout=0.05 if blocked else None)
                self._sleeping = False
                if self.inherited:
                    return  # made before a fork: the socket is the parent's
        except zmq.ZMQError as err:
            if err.errno not in _SOCKET_GONE and not socket.closed:
                raise
        finally:
            self.stop_watching()

    def stop_watching(self) -> None:
        """Stop watching the descriptor; call before the socket is closed."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def flush(self) -> bool:
        """Send queued frames now; return True if the socket would block."""
        self._flushing = True
        try:
            return self._send_queued()
        finally:
            self._flushing = False

    def _send_queued(self) -> bool:
        send = self.socket.send
        outbox = self._outbox
        wanted = self._wanted
        while outbox:
            frames, owner = outbox[0]
            if owner is not None and wanted is not None and not wanted(owner):
                outbox.popleft()
                continue
            try:
                last = len(frames) - 1
                # The first frame decides: if it would block, none was sent,
                # and once it is sent ZeroMQ takes the rest of the message.
                send(frames[0], _SNDMORE_NOBLOCK if last else _NOBLOCK)
                for index in range(1, last + 1):
                    frame = frames[index]
                    flags = _SNDMORE_NOBLOCK if index < last else _NOBLOCK
                    send(frame, flags, copy=len(frame) < ZERO_COPY_BYTES)
            except zmq.Again:
                if self._on_unreachable is None:
                    return True  # no connection yet: try again later
            except zmq.ZMQError as err:
                if err.errno in _SOCKET_GONE:
                    raise
                if err.errno == errno.EHOSTUNREACH and self._on_unreachable is not None:
                    self._on_unreachable(owner)
                else:
                    self._logger.warning("Dropped an outgoing message: %s", err)
            outbox.popleft()
            if owner is not None and self._on_sent is not None:
                self._on_sent(owner)
        return False

    def _receive_burst(self) -> int:
        recv = self.socket.recv
        on_frames = self._on_frames
        for count in range(BURST):
            try:
                # A frame's ``more`` rather than getsockopt(RCVMORE), which
                # turns its int option into an enum each time: 3.10 against
                # 3.72 us a message of three frames.
                part = recv(_NOBLOCK, copy=False)
                if self._peeking:
                    self._peek(part)
                frames = [part.bytes]
                while part.more:
                    part = recv(_NOBLOCK, copy=False)
                    frames.append(as_bytes(part))
            except zmq.Again:
                return count
            except zmq.ZMQError as err:
                if err.errno in _SOCKET_GONE:
                    raise
                self._logger.warning("Dropped an incoming message: %s", err)
                continue
            try:
                on_frames(frames)
            except Exception:
                self._logger.exception("Handling received frames failed; the loop goes on.")
            if count == 0 and not has_message(self.socket):
                # Nothing more is there, as with a lone caller: asking costs
                # 3.7 us, a receive that finds nothing 9.6 us (it reads the
                # socket's commands twice, then raises). Both consume the
                # edge alike. A busier pass goes on receiving until one finds nothing.
                return 1
        return BURST

    def _receive_burst_with_user_id(self) -> int:
        recv = self.socket.recv
        on_frames = self._on_frames
        for count in range(BURST):
            try:
                parts = [recv(_NOBLOCK, copy=False)]
                while parts[-1].more:
                    parts.append(recv(_NOBLOCK, copy=False))
            except zmq.Again:
                return count
            except zmq.ZMQError as err:
                if err.errno in _SOCKET_GONE:
                    raise
                self._logger.warning("Dropped an incoming message: %s", err)
                continue
            try:
                user_id = parts[-1].get("User-Id")
            except zmq.ZMQError:
                user_id = None  # the connection has no such property
            try:
                on_frames([as_bytes(part) for part in parts], user_id or None)
            except Exception:
                self._logger.exception("Handling received frames failed; the loop goes on.")
        return BURST
