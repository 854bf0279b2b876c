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
from gevent import monkey
from gevent.hub import Waiter

from django_zrpc import context, remote_errors, values
from django_zrpc.core import protocol
from django_zrpc.core.monitor import (
    CURVE_CLIENT,
    DISCONNECTED,
    FAILED_EVENTS,
    PLAIN_CLIENT,
    SUCCEEDED,
    SocketMonitor,
    describe_failure,
)
from django_zrpc.core.socket_loop import SocketLoop, batch_io_threads
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

#: Seconds a call waits unsent before a failed handshake fails it: ZeroMQ
#: retries a failed connection every 0.1 s or so, and one may yet succeed.
HANDSHAKE_GRACE = 0.1

#: The most characters of a remote error's message and traceback kept: a
#: server cannot make its caller hold megabytes per error.
MAX_ERROR_TEXT = 16 * 1024


#: Sockets the clients' shared context may hold: each connection takes three
#: (its DEALER and the two ends of its monitor), and libzmq's default, 1,023,
#: would cap a process at about 340 connections.
MAX_SOCKETS = 8192


def _context() -> zmq.Context:
    """Return the process's one ZeroMQ context for every client, made roomy enough.

    One context per process (pyzmq makes a new one after fork): a context of
    their own would cost each connection two I/O threads. ``MAX_SOCKETS``
    counts only if set before the context's first socket; a context someone
    else started (zerorpc's, say) keeps its own bound.
    """
    context: zmq.Context = zmq.Context.instance()
    if context.get(zmq.MAX_SOCKETS) < MAX_SOCKETS:
        context.set(zmq.MAX_SOCKETS, MAX_SOCKETS)
        batch_io_threads(context)
    return context


class _Pending(protocol.Heard):
    """One call waiting for its reply, or a stream being read."""

    __slots__ = (
        "deadline",
        "granted",
        "message_id",
        "name",
        "replies",
        "request",
        "sent",
        "timeout",
        "waiter",
    )

    def __init__(self, request: protocol.Event, now: float, timeout: float) -> None:
        super().__init__(now)
        self.request = request
        self.name = request.name
        self.message_id = request.message_id
        self.replies: deque[Any] = deque()
        self.waiter: Waiter | None = None
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
    stop, and a django_zrpc server is told at once to stop the function (a
    stock zerorpc server gives the call up when the heartbeats stop).
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
                self._pending = None
                self._client._forget(pending)
                self._client._result(pending, reply)  # raises the remote error
        except BaseException:
            self.close()
            raise
        self._pending = None
        self._client._forget(pending)
        raise StopIteration

    def close(self) -> None:
        """Abandon the stream: the server stops the function."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._client._cancel(pending)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


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
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        self._socket.setsockopt(zmq.IPV6, 1)
        # The server's limits hold here too: a frame past them ends the
        # connection (and its calls: LostRemote) instead of filling memory.
        self._socket.setsockopt(zmq.MAXMSGSIZE, self._unpacker.max_event_bytes)
        if curve is not None:
            curve.apply(self._socket)
        self._side = CURVE_CLIENT if curve is not None else PLAIN_CLIENT
        # A dropped connection fails the calls in flight on it at once, and a
        # failed handshake the calls waiting for one, each saying why.
        self._monitor = SocketMonitor(self._socket, self._on_socket_event)
        self._handshake_failure: str | None = None
        self._socket.connect(endpoint)
        self._pending: dict[Any, _Pending] = {}
        # The OS thread the client belongs to: a stream dropped in another
        # (a garbage collection) cancels through this thread's loop.
        self._thread = monkey.get_original("_thread", "get_ident")()
        self._hub = gevent.get_hub()
        self._closed = False
        #: Whether the server reads django_zrpc's value types (None: not known
        #: yet; its replies say, in their header).
        self.server_reads_values: bool | None = None
        self._io = SocketLoop(
            self._socket, self._on_frames, logger, wanted=self._is_pending, on_sent=self._on_sent
        )
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
        if not isinstance(name, str) or not 0 < len(name) <= protocol.MAX_NAME_LEN:
            raise ValueError(
                f"{name!r:.80} is not a function name a server takes: a string of 1 to "
                f"{protocol.MAX_NAME_LEN} characters."
            )
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
        if len(blob) > self._unpacker.max_event_bytes:
            raise ValueError(
                f"Cannot call {name}: the request is {len(blob)} bytes, more than the "
                f"{self._unpacker.max_event_bytes} a message may hold (ZRPC_MAX_MESSAGE_BYTES)."
            )
        pending = _Pending(request, time.monotonic(), timeout)
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
            name, message, traceback = (_capped(arg) for arg in args)
            detail = reply.header.get(remote_errors.HEADER)
            return remote_errors.decode(name, message, traceback, detail)
        return RemoteError("RemoteError", _capped(args[0]) if args else None, None)

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

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        """End a waiting call with ``error``, raised in its caller."""
        self._forget(pending)
        pending.deliver(error)

    def _cancel(self, pending: _Pending) -> None:
        """Give a call up; tell a django_zrpc server, from any thread, to stop it."""
        if self._pending.pop(pending.message_id, None) is None or self._closed:
            return  # it had ended
        if not (pending.sent and self.server_reads_values):
            return  # never sent, or a stock zerorpc server: it must not see the event
        if monkey.get_original("_thread", "get_ident")() == self._thread:
            self._send_cancel(pending)
        else:
            self._hub.loop.run_callback_threadsafe(self._send_cancel, pending)

    def _send_cancel(self, pending: _Pending) -> None:
        if self._closed:
            return
        # At once: in a thread that gevent did not patch, the hub runs only
        # while a call waits, and the server would go on streaming till then.
        self._io.send_now(self._follow_up(pending, protocol.CANCEL, []))

    # -- the socket --------------------------------------------------------------

    def _is_pending(self, pending: _Pending) -> bool:
        return pending.message_id in self._pending

    def _on_sent(self, pending: _Pending) -> None:
        # The request is the first message of its call to leave the outbox.
        if not pending.sent:
            pending.sent = True
            pending.last_seen = time.monotonic()

    def _send(self, pending: _Pending, name: str, args: Any) -> None:
        # Owned by the call: dropped unsent if the call ends first.
        self._io.send(self._follow_up(pending, name, args), pending)

    def _follow_up(self, pending: _Pending, name: str, args: Any) -> list[bytes]:
        """Return the frames of a later event of ``pending``'s call (heartbeat, credit, cancel)."""
        header = {
            "message_id": self._new_id(),
            "v": protocol.PROTOCOL_VERSION,
            "response_to": pending.message_id,
        }
        return [b"", protocol.pack(name, args, header)]

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
        name = event.name
        pending.heard(time.monotonic(), name == protocol.HEARTBEAT)
        if name == protocol.HEARTBEAT or name == protocol.MORE:
            return
        if name == protocol.STREAM:
            if pending.granted <= 0:
                # Past the credit this client granted: a hostile or broken
                # server that would grow the caller without bound.
                self._cancel(pending)
                pending.deliver(
                    RemoteError(
                        "ProtocolError",
                        f"{self.endpoint} sent stream items of {pending.name} past the "
                        "credit this client granted; the stream is ended.",
                        None,
                    )
                )
                return
            pending.granted -= 1
        pending.deliver(event)

    def _on_socket_event(self, event: int, value: int) -> None:
        if event == DISCONNECTED:
            # The connection's calls in flight are lost: the server drops
            # replies for a connection that is gone, even if it comes back.
            for pending in list(self._pending.values()):
                if pending.sent:
                    self._fail(
                        pending,
                        LostRemote(
                            f"The connection to {self.endpoint} closed while {pending.name} "
                            "was in flight; it may or may not have run."
                        ),
                    )
        elif event == SUCCEEDED:
            self._handshake_failure = None
        elif event in FAILED_EVENTS:
            self._handshake_failure = describe_failure(event, value, self._side)

    def _tick(self) -> None:
        """Expire timed-out calls, send heartbeats, notice a silent server; while calls exist."""
        heartbeat = self.heartbeat
        next_beat = time.monotonic() + (heartbeat or 0.0)
        try:
            while self._pending:
                gevent.sleep(TICK)
                now = time.monotonic()
                beat = heartbeat is not None and now >= next_beat
                failure = self._handshake_failure
                for pending in list(self._pending.values()):
                    if (
                        failure is not None
                        and not pending.sent
                        and now - pending.last_seen >= HANDSHAKE_GRACE
                    ):
                        self._fail(
                            pending,
                            HandshakeFailed(
                                f"Calling remote method {pending.name}: the connection to "
                                f"{self.endpoint} failed its handshake: {failure}",
                            ),
                        )
                    elif now >= pending.deadline or (
                        not pending.sent
                        and self.connect_timeout is not None
                        and now - pending.last_seen >= self.connect_timeout
                    ):
                        self._fail(pending, self._timeout_error(pending))
                    elif beat:
                        self._beat(pending, now, heartbeat or 0.0)
                if beat:
                    next_beat = now + (heartbeat or 0.0)
        finally:
            self._ticker = None

    def _timeout_error(self, pending: _Pending) -> TimeoutExpired:
        when = f"calling remote method {pending.name}"
        if not pending.sent:
            waited = pending.timeout
            if self.connect_timeout is not None:
                waited = min(waited, self.connect_timeout)
            return ServerUnavailable(
                waited, f"{when}: no connection to {self.endpoint} could be made"
            )
        return TimeoutExpired(pending.timeout, when)

    def _beat(self, pending: _Pending, now: float, heartbeat: float) -> None:
        if not pending.sent:
            return  # still waiting for a connection; its timeout applies
        patience = pending.patience(heartbeat)
        if now - pending.last_seen > patience:
            self._fail(pending, LostRemote(f"Lost remote after {patience:g}s without a heartbeat"))
        else:
            self._send(pending, protocol.HEARTBEAT, [0])


def _capped(text: Any) -> Any:
    """Return ``text`` cut to MAX_ERROR_TEXT characters, saying how much was cut."""
    if isinstance(text, str | bytes) and len(text) > MAX_ERROR_TEXT:
        cut = len(text) - MAX_ERROR_TEXT
        if isinstance(text, bytes):
            return text[:MAX_ERROR_TEXT] + b" [%d more bytes]" % cut
        return f"{text[:MAX_ERROR_TEXT]} [{cut} more characters]"
    return text
