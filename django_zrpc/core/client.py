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
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import gevent
import zmq
from gevent.hub import Waiter

from django_zrpc import context, remote_errors, values
from django_zrpc.core import protocol
from django_zrpc.core.handshakes import CURVE_CLIENT, PLAIN_CLIENT, HandshakeMonitor
from django_zrpc.core.socket_loop import SocketLoop
from django_zrpc.curve import ClientKeys
from django_zrpc.exceptions import (
    HandshakeFailed,
    LostRemote,
    RemoteError,
    ServerUnavailable,
    TimeoutExpired,
)

logger = logging.getLogger("django_zrpc.client")

#: Stream items the client lets the server send ahead of what was consumed.
STREAM_WINDOW = 100

#: Seconds between the ticker's checks of timeouts (and heartbeats, when due).
TICK = 0.01

#: Seconds a call may wait for a connection before the client watches its
#: handshakes (ZeroMQ retries a failed one every 0.1 s or so).
MONITOR_AFTER = 0.1


class _Pending:
    """One call waiting for its reply, or a stream being read."""

    __slots__ = (
        "deadline",
        "granted",
        "last_seen",
        "message_id",
        "name",
        "replies",
        "request",
        "sent",
        "timeout",
        "waiter",
    )

    def __init__(self, request: protocol.Event, now: float, timeout: float) -> None:
        self.request = request
        self.name = request.name
        self.message_id = request.message_id
        self.replies: deque[Any] = deque()
        self.waiter: Waiter | None = None
        self.last_seen = now
        self.timeout = timeout
        self.deadline = now + timeout
        # Whether the request left the socket; until then the server's
        # silence means nothing, only the timeout counts.
        self.sent = False
        # Events the server may still send before it needs a _zpc_more.
        self.granted = 1

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
            self.deadline = min(self.deadline, time.monotonic() + self.timeout)
            while not self.replies:
                self.waiter = Waiter()
                self.waiter.get()
        # A stream's reader may take its time between items, as with zerorpc:
        # the timeout runs only while it waits.
        self.deadline = math.inf
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply


class Stream(Iterator[Any]):
    """The items of a streaming call, read as the caller iterates.

    ``close()`` (or dropping the iterator) abandons the call: its heartbeats
    stop and the server gives it up.
    """

    def __init__(self, client: Client, pending: _Pending, first: protocol.Event) -> None:
        self._client = client
        self._pending: _Pending | None = pending
        self._reply: protocol.Event | None = first

    def __next__(self) -> Any:
        pending = self._pending
        if pending is None:
            raise StopIteration
        try:
            reply = self._reply
            if reply is None:
                self._client._grant(pending)
                reply = pending.next_reply()
            self._reply = None
            if reply.name == protocol.STREAM:
                return reply.args
            if reply.name != protocol.STREAM_DONE:
                self._client._result(pending, reply)  # raises the remote error
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        if self._pending is not None:
            self._client._forget(self._pending)
            self._pending = None

    def __del__(self) -> None:
        self.close()


class CallByName:
    """``client.name(*args, **kwargs)`` and ``client("name", ...)`` for a class with ``call()``.

    ``timeout`` is the client's own keyword; a function's argument of that name
    goes as ``client.call("name", kwargs={"timeout": ...})``.
    """

    def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        raise NotImplementedError

    def __call__(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        return self.call(name, *args, timeout=timeout, kwargs=kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, timeout=None, **kwargs: self.call(
            name, *args, timeout=timeout, kwargs=kwargs
        )


class Client(CallByName):
    """Call the functions of one zerorpc server at ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 30.0,
        heartbeat: float | None = 5.0,
        unpacker: protocol.Unpacker | None = None,
        curve: ClientKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._unpacker = unpacker or protocol.Unpacker()
        self._new_id = protocol.MessageIds()
        # One context per process for every client (pyzmq makes a new one
        # after fork): a context of their own would cost each connection two
        # I/O threads.
        self._socket: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        self._socket.setsockopt(zmq.IPV6, 1)
        if curve is not None:
            curve.apply(self._socket)
        self._side = CURVE_CLIENT if curve is not None else PLAIN_CLIENT
        # Made when a call stays unsent (see _tick): a failed handshake leaves
        # calls unsent, and the monitor says why. Most connections never need
        # one, and it costs two sockets of the shared context.
        self._handshakes: HandshakeMonitor | None = None
        self._socket.connect(endpoint)
        self._pending: dict[Any, _Pending] = {}
        self._closed = False
        #: Whether the server reads django_zrpc's value types (None: not known
        #: yet; its replies say, in their header).
        self.server_reads_values: bool | None = None
        self._io = SocketLoop(
            self._socket, self._on_frames, logger, wanted=self._is_pending, on_sent=self._on_sent
        )
        self._reader = gevent.spawn(self._io.run)
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
        header = {"message_id": self._new_id(), "v": protocol.PROTOCOL_VERSION}
        header[values.HEADER] = values.VERSION
        header.update(context.outgoing())
        if more:
            kwargs = {**(kwargs or {}), **more}
        request = protocol.Event(
            name, [*args, values.Kwargs(kwargs)] if kwargs else list(args), header
        )
        blob = self._pack_request(request, timeout)
        pending = _Pending(request, time.monotonic(), timeout)
        self._pending[pending.message_id] = pending
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick)
        try:
            # Queued until a connection exists; dropped unsent if the call
            # ends first (see _is_pending).
            self._io.send([b"", blob], pending)
            reply = pending.next_reply()
        except BaseException:
            self._forget(pending)
            raise
        if reply.name == protocol.STREAM or reply.name == protocol.STREAM_DONE:
            return Stream(self, pending, reply)
        self._forget(pending)
        return self._result(pending, reply)

    def _pack_request(self, request: protocol.Event, timeout: float) -> bytes:
        name = request.name
        try:
            blob, extended = protocol.pack_request(name, request.args, request.header)
            if not extended or self.server_reads_values:
                return blob
            if self.server_reads_values is None:
                try:
                    self.call("_zerorpc_name", timeout=timeout)
                except RemoteError:
                    pass  # the reply's header answers the question all the same
                if self.server_reads_values:
                    return blob
            if request.args and type(request.args[-1]) is values.Kwargs:
                raise TypeError(
                    f"{self.endpoint} is not a django_zrpc server, which keyword arguments "
                    "need: call it with positional arguments"
                )
            return protocol.pack(name, request.args, request.header, rich=False)
        except TypeError as err:
            raise TypeError(f"Cannot call {name}: {err}") from None

    def close(self) -> None:
        """Close the socket; calls still waiting fail with ``LostRemote``."""
        if self._closed:
            return
        self._closed = True
        for pending in list(self._pending.values()):
            pending.deliver(LostRemote(f"The client of {self.endpoint} was closed."))
        self._pending.clear()
        for greenlet in (self._ticker, self._reader):
            if greenlet is not None:
                greenlet.kill()  # blocking: the loop must be gone before its socket
        self._close_sockets()

    def abandon(self) -> None:
        """Close the socket only, from a thread whose hub will not run again."""
        self._closed = True
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._io.stop_watching()
        if self._handshakes is not None:
            self._handshakes.close()
        self._socket.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- replies ---------------------------------------------------------------

    def _result(self, pending: _Pending, reply: protocol.Event) -> Any:
        if reply.name == protocol.OK:
            args = reply.args
            return args[0] if isinstance(args, list | tuple) and args else None
        if reply.name == protocol.ERR:
            raise self._remote_error(reply)
        raise RemoteError(
            "ProtocolError", f"Unexpected {reply.name!r} in reply to {pending.name}.", None
        )

    def _remote_error(self, reply: protocol.Event) -> BaseException:
        args = reply.args if isinstance(reply.args, list | tuple) else [reply.args]
        if reply.header.get("v", 1) >= 2 and len(args) == 3:
            name, message, traceback = args
            detail = reply.header.get(remote_errors.HEADER)
            return remote_errors.decode(name, message, traceback, detail)
        return RemoteError("RemoteError", args[0] if args else None, None)

    def _grant(self, pending: _Pending) -> None:
        # Let the server run ahead by up to STREAM_WINDOW items past what the
        # caller consumed; top up when less than half of that is left.
        ahead = pending.granted + len(pending.replies)
        if ahead < STREAM_WINDOW // 2:
            more = STREAM_WINDOW - ahead
            pending.granted += more
            self._send(pending, protocol.MORE, [more])

    def _forget(self, pending: _Pending) -> None:
        self._pending.pop(pending.message_id, None)

    # -- the socket --------------------------------------------------------------

    def _is_pending(self, pending: _Pending) -> bool:
        return pending.message_id in self._pending

    def _on_sent(self, pending: _Pending) -> None:
        # The request is the first message of its call to leave the outbox.
        if not pending.sent:
            pending.sent = True
            pending.last_seen = time.monotonic()

    def _send(self, pending: _Pending, name: str, args: Any) -> None:
        header = {
            "message_id": self._new_id(),
            "v": protocol.PROTOCOL_VERSION,
            "response_to": pending.message_id,
        }
        self._io.send([b"", protocol.pack(name, args, header)], pending)

    def _on_frames(self, frames: list[bytes]) -> None:
        try:
            if len(frames) != 2 or frames[0] != b"":
                raise protocol.BadEvent(f"{len(frames)} frames are not [empty, event]")
            event = self._unpacker.unpack(frames[1])
        except protocol.BadEvent as err:
            logger.warning("Dropped a bad frame from %s: %s", self.endpoint, err)
            return
        pending = self._pending.get(event.response_to)
        if pending is None:
            return  # for a call that timed out or was abandoned
        if self.server_reads_values is None:
            self.server_reads_values = event.header.get(values.HEADER) == values.VERSION
        pending.last_seen = time.monotonic()
        if event.name == protocol.HEARTBEAT or event.name == protocol.MORE:
            return
        if event.name == protocol.STREAM:
            pending.granted -= 1
        pending.deliver(event)

    def _tick(self) -> None:
        """Expire timed-out calls, send heartbeats, notice a silent server; while calls exist."""
        heartbeat = self.heartbeat
        next_beat = time.monotonic() + (heartbeat or 0.0)
        try:
            while self._pending:
                gevent.sleep(TICK)
                now = time.monotonic()
                beat = heartbeat is not None and now >= next_beat
                failure = self._handshake_failure(now)
                for pending in list(self._pending.values()):
                    if failure is not None and not pending.sent:
                        self._forget(pending)
                        pending.deliver(
                            HandshakeFailed(
                                f"Calling remote method {pending.name}: the connection to "
                                f"{self.endpoint} failed its handshake: {failure}",
                            )
                        )
                    elif now >= pending.deadline:
                        self._forget(pending)
                        pending.deliver(self._timeout_error(pending))
                    elif beat:
                        self._beat(pending, now, heartbeat or 0.0)
                if beat:
                    next_beat = now + (heartbeat or 0.0)
        finally:
            self._ticker = None

    def _handshake_failure(self, now: float) -> str | None:
        """Return why the handshake failed, while a call waits unsent for a connection."""
        unsent_since = min(
            (pending.last_seen for pending in self._pending.values() if not pending.sent),
            default=None,
        )
        if unsent_since is None:
            return None
        if self._handshakes is None:
            if now - unsent_since < MONITOR_AFTER:
                return None
            try:
                self._handshakes = HandshakeMonitor(self._socket, self._side)
                # ZeroMQ does not retry a handshake the server refused: connect
                # again, now watched. Nothing is lost: with IMMEDIATE, unsent
                # requests wait in the outbox, not in the connection.
                self._socket.disconnect(self.endpoint)
                self._socket.connect(self.endpoint)
            except zmq.ZMQError as err:
                logger.warning("Cannot watch the handshakes with %s: %s", self.endpoint, err)
                return None
        return self._handshakes.read()

    def _timeout_error(self, pending: _Pending) -> TimeoutExpired:
        when = f"calling remote method {pending.name}"
        if not pending.sent:
            return ServerUnavailable(
                pending.timeout, f"{when}: no connection to {self.endpoint} could be made"
            )
        return TimeoutExpired(pending.timeout, when)

    def _beat(self, pending: _Pending, now: float, heartbeat: float) -> None:
        if not pending.sent:
            return  # still waiting for a connection; its timeout applies
        if pending.last_seen < now - 2 * heartbeat:
            self._forget(pending)
            pending.deliver(LostRemote(f"Lost remote after {2 * heartbeat}s heartbeat"))
        else:
            self._send(pending, protocol.HEARTBEAT, [0])
