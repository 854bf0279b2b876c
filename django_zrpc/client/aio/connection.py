"""One connection to one zerorpc server on asyncio and ``zmq.asyncio``: many calls share it.

The asyncio twin of ``core.client.Client``, with the same rules from
``core.calls_out``: one reader task routes replies to their calls, one ticker
task sends every call's heartbeats and times calls out while any are in
flight, and a watcher task reads the socket's monitor (a dropped connection
fails the calls in flight at once, a refused handshake the calls waiting).

A connection belongs to the event loop it was made in. When that loop shuts
down (``asyncio.run`` and asgiref's ``async_to_sync`` cancel every task before
closing it), the reader's cancellation closes the sockets. A task cancelled
while its call waits (``asyncio.timeout``, a client gone from an ASGI view)
abandons the call, and a django_zrpc server is told to stop it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from django_zrpc import context
from django_zrpc.client.aio.pending import Pending
from django_zrpc.client.aio.stream import AsyncStream
from django_zrpc.curve import ClientKeys
from django_zrpc.exceptions import LostRemote, RemoteError
from django_zrpc.transport.aio_sockets import DRAIN, NOBLOCK, DealerSocket, async_context
from django_zrpc.transport.dealer import peer_of
from django_zrpc.transport.frames import has_message
from django_zrpc.transport.monitor import (
    CURVE_CLIENT,
    DISCONNECTED,
    PLAIN_CLIENT,
    SUCCEEDED,
    Handshakes,
    SocketMonitor,
)
from django_zrpc.wire import calls_out, protocol

logger = logging.getLogger("django_zrpc.client")


class AsyncConnection(calls_out.Receiving, calls_out.CallByName):
    """Call the functions of one zerorpc server at ``endpoint``; made inside a running loop."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 30.0,
        heartbeat: float | None = 5.0,
        unpacker: protocol.Unpacker | None = None,
        curve: ClientKeys | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._unpacker = unpacker or protocol.Unpacker()
        self._new_id = protocol.MessageIds()
        self._dealer = DealerSocket(
            self._unpacker.max_event_bytes,
            curve,
            on_frames=self._on_frames,
            wanted=self._is_pending,
            on_sent=self._on_sent,
            on_waiting=self._on_waiting,
            on_failed=self._on_failed,
            on_peek=self._learn_peer,
            logger=logger,
        )
        self._socket = self._dealer.socket
        self._monitor = SocketMonitor(self._socket, self._on_socket_event, async_context())
        self._monitor_drain: zmq.Socket = zmq.Socket.shadow(self._monitor.pair.underlying)
        self._handshakes = Handshakes(CURVE_CLIENT if curve is not None else PLAIN_CLIENT)
        self._socket.connect(endpoint)
        self._pending: dict[Any, Pending] = {}
        self.closed = False
        #: Whether the server reads django_zrpc's value types (None: not known yet).
        self.server_reads_values: bool | None = None
        # The heartbeat period the server announced (None: not yet, or a stock server).
        self._server_period: float | None = None
        #: The server process this connection reaches (see core.client.Client.peer);
        #: ``on_peer()`` is called when it changes.
        self.peer: str | None = None
        self.on_peer: Callable[[], None] | None = None
        # The first reply names the server process, in its connection's property.
        self._dealer.peek()
        self._reader = self.loop.create_task(self._until_closed())
        self._watcher = self.loop.create_task(self._watch())
        self._ticker: asyncio.Task[None] | None = None

    # -- public API ------------------------------------------------------------

    async def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        """Call ``name``; return its result, or an ``AsyncStream`` for a stream."""
        if self.closed:
            raise RuntimeError(f"This client of {self.endpoint} is closed.")
        timeout = self.timeout if timeout is None else timeout
        if more:
            kwargs = {**(kwargs or {}), **more}
        caller = await context.outgoing_async(timeout, name)
        request = calls_out.new_request(
            name, args, kwargs, self._new_id(), timeout, caller, self.heartbeat
        )
        blob = await self._pack_request(request, timeout)
        calls_out.check_size(name, blob, self._unpacker.max_event_bytes)
        pending = Pending(request, time.monotonic(), timeout, self._server_period)
        self._pending[pending.message_id] = pending
        if self._ticker is None:
            self._ticker = self.loop.create_task(self._tick())
        # A connection that closed since the last call has its DISCONNECTED
        # waiting: handle it first, so that it does not fail this call.
        self._monitor_now()
        try:
            self._send_request(pending, blob)
            reply = await pending.next_reply()
        except asyncio.CancelledError:
            self.cancel(pending)  # the task gave the call up: so does the server
            raise
        except BaseException:
            self.forget(pending)
            raise
        if reply.name == protocol.STREAM or reply.name == protocol.STREAM_DONE:
            return AsyncStream(self, pending, reply)
        self.forget(pending)
        return calls_out.result(pending, reply)

    async def _pack_request(self, request: protocol.Event, timeout: float) -> bytes:
        blob = calls_out.pack_request(request, self.server_reads_values, self.endpoint)
        if blob is None:
            try:
                await self.call("_zerorpc_name", timeout=timeout)
            except RemoteError:
                pass  # the reply's header answers the question all the same
            except LostRemote as err:
                raise calls_out.probe_lost(self.endpoint, request.name, err) from err
            blob = calls_out.pack_request(request, bool(self.server_reads_values), self.endpoint)
        assert blob is not None
        return blob

    def close(self) -> None:
        """Close the sockets; calls still waiting fail with ``LostRemote``."""
        if self.closed:
            return
        for pending in list(self._pending.values()):
            pending.deliver(LostRemote(f"The client of {self.endpoint} was closed."))
        self._pending.clear()
        self._close_sockets()

    def _close_sockets(self) -> None:
        self.closed = True
        for task in (self._ticker, self._reader, self._watcher):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._monitor.close()
        self._dealer.close()

    # -- calls -------------------------------------------------------------------

    def grant(self, pending: Pending) -> None:
        """Let the server send more of a stream, as the caller reads it."""
        more = pending.credit()
        if more:
            self._send(pending, protocol.MORE, [more])

    def forget(self, pending: Pending) -> None:
        """End a call on this side: drop it, and its request if still unsent."""
        self._pending.pop(pending.message_id, None)
        if pending.send is not None and not pending.send.done():
            pending.send.cancel()

    def cancel(self, pending: Pending) -> None:
        """Give a call up; tell a django_zrpc server, from any thread, to stop it."""
        if threading.get_ident() != self._thread:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.cancel, pending)
            return
        if self._pending.get(pending.message_id) is not pending or self.closed:
            return  # it had ended
        self.forget(pending)
        if pending.sent and self.server_reads_values:
            # A stock zerorpc server must not see the event: it gives the
            # call up when the heartbeats stop.
            self._send(pending, protocol.CANCEL, [])

    def _fail(self, pending: Pending, error: BaseException) -> None:
        self.forget(pending)
        pending.deliver(error)

    # -- the socket ----------------------------------------------------------------

    def _send_request(self, pending: Pending, blob: bytes) -> None:
        # Dropped unsent if the call ends before its turn comes.
        self._dealer.send([b"", blob], pending)

    def _is_pending(self, pending: Pending) -> bool:
        return self._pending.get(pending.message_id) is pending

    def _on_waiting(self, pending: Pending, future: asyncio.Future[Any]) -> None:
        # No connection takes it yet (IMMEDIATE): it waits in zmq.asyncio,
        # and is cancelled if the call ends first.
        pending.send = future

    def _on_failed(self, pending: Pending, error: BaseException) -> None:
        if self._pending.get(pending.message_id) is pending:
            self._fail(pending, error)

    def _on_sent(self, pending: Pending) -> None:
        pending.sent = True
        pending.last_seen = time.monotonic()

    def _send(self, pending: Pending, name: str, args: Any) -> None:
        self._dealer.send(calls_out.follow_up(self._new_id(), pending.message_id, name, args))

    async def _until_closed(self) -> None:
        """Wait for the loop's end: its cancellation at shutdown closes the sockets.

        Replies need no task: the loop hands them to ``_on_frames`` from the
        socket's descriptor callback.
        """
        try:
            await self.loop.create_future()
        except asyncio.CancelledError:
            if not self.closed:
                # Not closed by us: the loop is shutting down, and its tasks
                # are cancelled before it closes. The sockets go with it.
                self.close()
            raise

    def _learn_peer(self, frame: zmq.Frame) -> None:
        self._set_peer(peer_of(frame))

    def _give_up(self, pending: Any) -> None:
        self.cancel(pending)

    async def _watch(self) -> None:
        pair = self._monitor.pair
        try:
            while True:
                self._monitor.on_frames(await pair.recv_multipart())
        except (asyncio.CancelledError, zmq.ZMQError):
            if not self.closed:
                raise

    def _monitor_now(self) -> None:
        pair = self._monitor_drain
        for _ in range(DRAIN):
            if not has_message(pair):
                return
            try:
                frames = pair.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            self._monitor.on_frames(frames)

    def _on_socket_event(self, event: int, value: int) -> None:
        if event == DISCONNECTED:
            # The server drops replies for a connection that is gone.
            for pending in list(self._pending.values()):
                if pending.sent:
                    self._fail(pending, calls_out.lost_in_flight(pending, self.endpoint))
            # ZeroMQ reconnects, maybe to another process behind the address.
            self._set_peer(None)
        else:
            self._handshakes.on_event(event, value)
            if event == SUCCEEDED:
                self._dealer.peek()

    def _set_peer(self, peer: str | None) -> None:
        if peer != self.peer:
            self.peer = peer
            if self.on_peer is not None:
                self.on_peer()

    async def _tick(self) -> None:
        """Expire timed-out calls, send heartbeats, notice a silent server; while calls exist."""
        heartbeat = self.heartbeat
        next_beat = time.monotonic() + (heartbeat or 0.0)
        try:
            while self._pending:
                await asyncio.sleep(calls_out.TICK)
                now = time.monotonic()
                beat = heartbeat is not None and now >= next_beat
                failure = self._handshakes.failure
                for pending in list(self._pending.values()):
                    error = calls_out.overdue(
                        pending, now, failure, self.connect_timeout, self.endpoint
                    )
                    if error is None and heartbeat is not None and pending.sent:
                        # Silence is checked every tick, heartbeats sent when due.
                        error = calls_out.silent(pending, now, heartbeat)
                        if error is None and beat:
                            self._send(pending, protocol.HEARTBEAT, [0])
                    if error is not None:
                        self._fail(pending, error)
                if beat:
                    next_beat = now + (heartbeat or 0.0)
        finally:
            self._ticker = None
