"""A zerorpc client (protocol v3) on pyzmq + gevent: one DEALER socket to one server.

Many calls share the socket at once. One reader greenlet routes replies to
their calls, one ticker sends every call's heartbeats and notices a silent
server; a call is a small object, not zerorpc's stack of channels and
greenlets. It raises zerorpc's own exceptions (``RemoteError``,
``LostRemote``, ``TimeoutExpired``), so code written for zerorpc keeps working.

The socket is made with ``IMMEDIATE``: a request is only queued on a live
connection. A call to a server that is down waits for a connection until its
timeout and then fails, and is never delivered later when the server returns
(zerorpc queues it: zerorpc-python #121, and blocks for good once its queue is
full: #236).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import zmq
from gevent import monkey

from django_zrpc import context
from django_zrpc.client.gevent.pending import Pending
from django_zrpc.client.gevent.stream import Stream
from django_zrpc.curve import ClientKeys
from django_zrpc.exceptions import LostRemote, RemoteError
from django_zrpc.transport.dealer import configure_dealer, peer_of, shared_context
from django_zrpc.transport.monitor import (
    CURVE_CLIENT,
    DISCONNECTED,
    PLAIN_CLIENT,
    SUCCEEDED,
    Handshakes,
    SocketMonitor,
)
from django_zrpc.transport.socket_loop import SocketLoop
from django_zrpc.wire import calls_out, protocol
from django_zrpc.wire.calls_out import (  # noqa: F401 (their import path before the asyncio client)
    HANDSHAKE_GRACE,
    MAX_ERROR_TEXT,
    STREAM_WINDOW,
    TICK,
    CallByName,
)

logger = logging.getLogger("django_zrpc.client")

# The process's one ZeroMQ context for every client (see calls_out).
_context = shared_context


class Client(calls_out.Receiving, CallByName):
    """Call the functions of one zerorpc server at ``endpoint``."""

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
        # Seconds a call may wait for a connection before ServerUnavailable
        # (None: its whole timeout); a caller with other endpoints to try, or
        # time to try again, need not wait out its timeout on a dead server.
        self.connect_timeout = connect_timeout
        self._unpacker = unpacker or protocol.Unpacker()
        self._new_id = protocol.MessageIds()
        self._socket: zmq.Socket = _context().socket(zmq.DEALER)
        configure_dealer(self._socket, self._unpacker.max_event_bytes, curve)
        # A dropped connection fails the calls in flight on it at once, and a
        # failed handshake the calls waiting for one, each saying why.
        self._monitor = SocketMonitor(self._socket, self._on_socket_event)
        self._handshakes = Handshakes(CURVE_CLIENT if curve is not None else PLAIN_CLIENT)
        self._socket.connect(endpoint)
        self._pending: dict[Any, Pending] = {}
        # The OS thread the client belongs to: a stream dropped in another
        # (a garbage collection) cancels through this thread's loop.
        self._thread = monkey.get_original("_thread", "get_ident")()
        self._hub = gevent.get_hub()
        self._closed = False
        #: Whether the server reads django_zrpc's value types (None: not known
        #: yet; its replies say, in their header).
        self.server_reads_values: bool | None = None
        # The heartbeat period the server announced (None: not yet, or a stock server).
        self._server_period: float | None = None
        #: The server process this connection reaches, as a django_zrpc server
        #: tells in ZeroMQ's handshake (None: not known yet, or a server that
        #: does not say); ``on_peer()`` is called when it changes.
        self.peer: str | None = None
        self.on_peer: Callable[[], None] | None = None
        self._io = SocketLoop(
            self._socket,
            self._on_frames,
            logger,
            wanted=self._is_pending,
            on_sent=self._on_sent,
            on_peek=self._learn_peer,
        )
        self._io.peek()
        self._reader = gevent.spawn(self._io.run)
        self._monitor_io = SocketLoop(self._monitor.pair, self._monitor.on_frames, logger)
        self._watcher = gevent.spawn(self._monitor_io.run)
        # Runs only while calls are in flight (see _tick).
        self._ticker: gevent.Greenlet | None = None

    # -- public API ------------------------------------------------------------

    def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        """Call ``name`` with ``args`` and keyword arguments; return its result or a stream.

        Keyword arguments come as ``kwargs`` or as more keywords. Django's
        values and keyword arguments go as django_zrpc's extension types to a
        server that reads them; before the first call that needs them, the
        client asks the server (one ``_zerorpc_name`` call per connection).
        Another zerorpc server gets plain values, and keyword arguments are a
        ``TypeError`` there.
        """
        if self._closed:
            raise RuntimeError(f"This client of {self.endpoint} is closed.")
        timeout = self.timeout if timeout is None else timeout
        if more:
            kwargs = {**(kwargs or {}), **more}
        caller = context.outgoing(timeout, name)
        request = calls_out.new_request(
            name, args, kwargs, self._new_id(), timeout, caller, self.heartbeat
        )
        blob = self._pack_request(request, timeout)
        calls_out.check_size(name, blob, self._unpacker.max_event_bytes)
        pending = Pending(request, time.monotonic(), timeout, self._server_period)
        if not self._pending:
            # A connection that closed since the last call has its DISCONNECTED
            # waiting: handle it before this call is sent on the next
            # connection, which it must not fail (a thread whose hub did not
            # run meanwhile). While other calls wait the hub runs, and the
            # monitor's loop handles it long before ZeroMQ reconnects (0.1 s):
            # asking costs two system calls, 2.8 us a call.
            self._monitor_io.receive_now()
        self._pending[pending.message_id] = pending
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick)
        try:
            # Queued until a connection exists; dropped unsent if the call
            # ends first (see _is_pending).
            self._io.send([b"", blob], pending)
            reply = pending.next_reply()
        except Exception:
            self._forget(pending)
            raise
        except BaseException:
            # Given up from outside (the greenlet killed, a gevent.Timeout
            # around the call): so is the call on the server, whose worker
            # would otherwise run on for a caller that left.
            self._cancel(pending)
            raise
        if reply.name == protocol.STREAM or reply.name == protocol.STREAM_DONE:
            return Stream(self, pending, reply)
        self._forget(pending)
        return self._result(pending, reply)

    def _pack_request(self, request: protocol.Event, timeout: float) -> bytes:
        blob = calls_out.pack_request(request, self.server_reads_values, self.endpoint)
        if blob is None:
            try:
                self.call("_zerorpc_name", timeout=timeout)
            except RemoteError:
                pass  # the reply's header answers the question all the same
            except LostRemote as err:
                raise calls_out.probe_lost(self.endpoint, request.name, err) from err
            blob = calls_out.pack_request(request, bool(self.server_reads_values), self.endpoint)
        assert blob is not None
        return blob

    def close(self) -> None:
        """Close the socket; calls still waiting fail with ``LostRemote``."""
        if self._closed:
            return
        self._closed = True
        for pending in list(self._pending.values()):
            pending.deliver(LostRemote(f"The client of {self.endpoint} was closed."))
        self._pending.clear()
        for greenlet in (self._ticker, self._reader, self._watcher):
            if greenlet is not None:
                greenlet.kill()  # blocking: the loop must be gone before its socket
        self._close_sockets()

    def abandon(self) -> None:
        """Close the socket only, from a thread whose hub will not run again."""
        self._closed = True
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._io.stop_watching()
        self._monitor_io.stop_watching()
        self._monitor.close()
        self._socket.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- replies ---------------------------------------------------------------

    def _result(self, pending: Pending, reply: protocol.Event) -> Any:
        return calls_out.result(pending, reply)

    def _grant(self, pending: Pending) -> None:
        more = pending.credit()
        if more:
            self._send(pending, protocol.MORE, [more])

    def _forget(self, pending: Pending) -> None:
        self._pending.pop(pending.message_id, None)

    def _fail(self, pending: Pending, error: BaseException) -> None:
        """End a waiting call with ``error``, raised in its caller."""
        self._forget(pending)
        pending.deliver(error)

    def _cancel(self, pending: Pending) -> None:
        """Give a call up; tell a django_zrpc server, from any thread, to stop it."""
        if self._pending.pop(pending.message_id, None) is None or self._closed:
            return  # it had ended
        if not (pending.sent and self.server_reads_values):
            return  # never sent, or a stock zerorpc server: it must not see the event
        if monkey.get_original("_thread", "get_ident")() == self._thread:
            self._send_cancel(pending)
        else:
            self._hub.loop.run_callback_threadsafe(self._send_cancel, pending)

    def _send_cancel(self, pending: Pending) -> None:
        if self._closed:
            return
        # At once: in a thread that gevent did not patch, the hub runs only
        # while a call waits, and the server would go on streaming till then.
        self._io.send_now(self._follow_up(pending, protocol.CANCEL, []))

    # -- the socket --------------------------------------------------------------

    def _is_pending(self, pending: Pending) -> bool:
        return pending.message_id in self._pending

    def _on_sent(self, pending: Pending) -> None:
        # The request is the first message of its call to leave the outbox.
        if not pending.sent:
            pending.sent = True
            pending.last_seen = time.monotonic()

    def _send(self, pending: Pending, name: str, args: Any) -> None:
        # Owned by the call: dropped unsent if the call ends first.
        self._io.send(self._follow_up(pending, name, args), pending)

    def _follow_up(self, pending: Pending, name: str, args: Any) -> list[bytes]:
        """Return the frames of a later event of ``pending``'s call (heartbeat, credit, cancel)."""
        return calls_out.follow_up(self._new_id(), pending.message_id, name, args)

    def _give_up(self, pending: Any) -> None:
        self._cancel(pending)

    def _on_socket_event(self, event: int, value: int) -> None:
        if event == DISCONNECTED:
            # The connection's calls in flight are lost: the server drops
            # replies for a connection that is gone, even if it comes back.
            for pending in list(self._pending.values()):
                if pending.sent:
                    self._fail(pending, calls_out.lost_in_flight(pending, self.endpoint))
            # ZeroMQ reconnects, maybe to another process behind the address.
            self._set_peer(None)
        else:
            self._handshakes.on_event(event, value)
            if event == SUCCEEDED:
                self._io.peek()

    def _learn_peer(self, frame: zmq.Frame) -> None:
        self._set_peer(peer_of(frame))

    def _set_peer(self, peer: str | None) -> None:
        if peer != self.peer:
            self.peer = peer
            if self.on_peer is not None:
                self.on_peer()

    def _tick(self) -> None:
        """Expire timed-out calls, send heartbeats, notice a silent server; while calls exist."""
        heartbeat = self.heartbeat
        next_beat = time.monotonic() + (heartbeat or 0.0)
        try:
            while self._pending:
                gevent.sleep(TICK)
                now = time.monotonic()
                beat = heartbeat is not None and now >= next_beat
                failure = self._handshakes.failure
                for pending in list(self._pending.values()):
                    error = calls_out.overdue(
                        pending, now, failure, self.connect_timeout, self.endpoint
                    )
                    if error is not None:
                        self._fail(pending, error)
                    elif heartbeat is not None and pending.sent:
                        self._beat(pending, now, heartbeat, beat)
                if beat:
                    next_beat = now + (heartbeat or 0.0)
        finally:
            self._ticker = None

    def _beat(self, pending: Pending, now: float, heartbeat: float, beat: bool) -> None:
        """Fail a call whose server went silent (checked every tick), else beat if due."""
        lost = calls_out.silent(pending, now, heartbeat)
        if lost is not None:
            self._fail(pending, lost)
        elif beat:
            self._send(pending, protocol.HEARTBEAT, [0])
