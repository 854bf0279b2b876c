"""The caller's side of a call, free of gevent: what both clients share.

How a request is built and packed, what a call in flight is to its client
(``Outgoing``: its replies, stream credit, timeout and heartbeats), what the
client's ticker decides for it (``overdue``, ``silent``), and how a reply
becomes a result or a remote error. ``client.gevent.connection`` runs this
on gevent and ``client.aio.connection`` on asyncio: the I/O
differs, the rules are written once.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

from django_zrpc.exceptions import (
    HandshakeFailed,
    LostRemote,
    RemoteError,
    ServerUnavailable,
    TimeoutExpired,
)
from django_zrpc.wire import protocol, remote_errors, unreachable, values

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


class CallByName:
    """``client.name(*args, **kwargs)`` and ``client("name", ...)`` for a class with ``call()``.

    ``timeout`` is the client's own keyword; a function's argument of that name
    goes as ``client.call("name", kwargs={"timeout": ...})``. For an asyncio
    client, each returns the coroutine of ``call()``.
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


class Receiving:
    """What a connection does with the events it receives; both clients' connections are one.

    The first reply on a connection says whether its server reads
    django_zrpc's values and which heartbeat period it keeps (every later
    call is judged by it from its start); each event then goes to its call.
    A subclass sets the attributes below and gives ``_give_up`` (cancel a
    call whose server broke the stream's credit).
    """

    endpoint: str
    server_reads_values: bool | None
    _server_period: float | None
    _unpacker: protocol.Unpacker
    _pending: dict[Any, Any]

    def _give_up(self, pending: Any) -> None:
        raise NotImplementedError

    def _on_frames(self, frames: list[bytes]) -> None:
        try:
            event = decode(self._unpacker, frames)
        except protocol.BadEvent as err:
            logger.warning("Dropped a bad frame from %s: %s", self.endpoint, err)
            return
        pending = self._pending.get(event.response_to)
        if pending is None:
            return  # for a call that timed out or was abandoned
        if self.server_reads_values is None:
            self.server_reads_values = event.header.get(values.HEADER) == values.VERSION
            self._server_period = protocol.announced_period(event.header)
            pending.peer_period = pending.peer_period or self._server_period
        reply = pending.receive(event, time.monotonic(), self.endpoint)
        if isinstance(reply, RemoteError):
            self._give_up(pending)  # past the credit granted
        if reply is not None:
            pending.deliver(reply)


# -- the request -----------------------------------------------------------------


def new_request(
    name: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    message_id: bytes,
    timeout: float,
    caller: dict[str, Any],
    heartbeat: float | None = None,
) -> protocol.Event:
    """Return the first event of a call that waits ``timeout`` seconds.

    ``heartbeat``, the client's period, tells the server how long a silence
    of this caller means it is gone.

    Its header carries ``caller``, the caller's context and the time left,
    which each client reads itself (``context.outgoing(timeout)``, or its
    asyncio twin, which must not touch a lazy ``request.user``
    synchronously): the wire reads no settings.
    """
    if not isinstance(name, str) or not 0 < len(name) <= protocol.MAX_NAME_LEN:
        raise ValueError(
            f"{name!r:.80} is not a function name a server takes: a string of 1 to "
            f"{protocol.MAX_NAME_LEN} characters."
        )
    if name.startswith(protocol.EVENT_PREFIXES):
        raise ValueError(
            f"{name!r} is an event of zerorpc's protocol, not a function name: a server "
            "answers it with an error. Call a function by its registered name."
        )
    header = {"message_id": message_id, "v": protocol.PROTOCOL_VERSION}
    header[values.HEADER] = values.VERSION
    if heartbeat is not None:
        header[protocol.HEARTBEAT_PERIOD] = heartbeat
    # The time left travels with the call.
    header.update(caller)
    return protocol.Event(name, [*args, values.Kwargs(kwargs)] if kwargs else list(args), header)


def pack_request(
    request: protocol.Event, server_reads_values: bool | None, endpoint: str
) -> bytes | None:
    """Return the blob of ``request`` for a server that reads django_zrpc's values or not.

    None when the request holds them and whether the server reads them is not
    known yet (``server_reads_values`` None): the client asks the server
    (a ``_zerorpc_name`` call) and packs again, with a yes or a no.
    """
    name = request.name
    try:
        blob, extended = protocol.pack_request(name, request.args, request.header)
        if not extended or server_reads_values:
            return blob
        if server_reads_values is None:
            return None
        if request.args and type(request.args[-1]) is values.Kwargs:
            raise TypeError(
                f"{endpoint} is not a django_zrpc server, which keyword arguments "
                "need: call it with positional arguments"
            )
        return protocol.pack(name, request.args, request.header, rich=False)
    except TypeError as err:
        raise TypeError(f"Cannot call {name}: {err}") from None


def check_size(name: str, blob: bytes, limit: int) -> None:
    """Refuse a request larger than a message may hold, before it is sent."""
    if len(blob) > limit:
        raise ValueError(
            f"Cannot call {name}: the request is {len(blob)} bytes, more than the "
            f"{limit} a message may hold (ZRPC_MAX_MESSAGE_BYTES)."
        )


def follow_up(message_id: bytes, response_to: Any, name: str, args: Any) -> list[bytes]:
    """Return the frames of a later event of a call (heartbeat, credit, cancel)."""
    header = {
        "message_id": message_id,
        "v": protocol.PROTOCOL_VERSION,
        "response_to": response_to,
    }
    return [b"", protocol.pack(name, args, header)]


def decode(unpacker: protocol.Unpacker, frames: list[bytes]) -> protocol.Event:
    """Return the event a DEALER received, or raise ``BadEvent``."""
    if len(frames) != 2 or frames[0] != b"":
        raise protocol.BadEvent(f"{len(frames)} frames are not [empty, event]")
    return unpacker.unpack(frames[1])


# -- a call in flight ----------------------------------------------------------------


class Outgoing(protocol.Heard):
    """One call waiting for its reply, or a stream being read: its state, not its waiting."""

    __slots__ = (
        "deadline",
        "granted",
        "message_id",
        "name",
        "replies",
        "request",
        "sent",
        "timeout",
    )

    def __init__(
        self,
        request: protocol.Event,
        now: float,
        timeout: float,
        server_period: float | None = None,
    ) -> None:
        # server_period: what the server announced on this connection, if it did.
        super().__init__(now, server_period)
        self.request = request
        self.name = request.name
        self.message_id = request.message_id
        self.replies: deque[Any] = deque()
        self.timeout = timeout
        self.deadline = now + timeout
        # Whether the request left the socket; until then the server's
        # silence means nothing, only the timeout counts.
        self.sent = False
        # Events the server may still send before it needs a _zpc_more.
        self.granted = 1

    def waiting_from(self, now: float) -> None:
        """Start the timeout of a wait for the next reply (if none is there yet)."""
        self.deadline = min(self.deadline, now + self.timeout)

    def take_reply(self) -> protocol.Event:
        """Return the next reply, or raise it if it is an exception."""
        # A stream's reader may take its time between items, as with zerorpc:
        # the timeout runs only while it waits.
        self.deadline = math.inf
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def receive(self, event: protocol.Event, now: float, endpoint: str) -> Any:
        """Note ``event``; return what to hand the caller: the event, an error, or None.

        A ``RemoteError`` returned means the server sent stream items past
        the credit granted (a hostile or broken server that would grow the
        caller without bound): the client cancels the call.
        """
        name = event.name
        self.heard(now, name == protocol.HEARTBEAT)
        if name == protocol.HEARTBEAT or name == protocol.MORE:
            return None
        if name == protocol.STREAM:
            if self.granted <= 0:
                return RemoteError(
                    "ProtocolError",
                    f"{endpoint} sent stream items of {self.name} past the "
                    "credit this client granted; the stream is ended.",
                    None,
                )
            self.granted -= 1
        return event

    def credit(self) -> int:
        """Return the stream items to grant the server now (0: none yet), and count them.

        The server may run ahead by up to STREAM_WINDOW items past what the
        caller consumed; top up when less than half of that is left.
        """
        ahead = self.granted + len(self.replies)
        if ahead >= STREAM_WINDOW // 2:
            return 0
        more = STREAM_WINDOW - ahead
        self.granted += more
        return more


# -- what the ticker decides -------------------------------------------------------


def overdue(
    pending: Outgoing,
    now: float,
    handshake_failure: str | None,
    connect_timeout: float | None,
    endpoint: str,
) -> BaseException | None:
    """Return the error that ends ``pending`` now (refused, unsent too long, timed out), if any."""
    if (
        handshake_failure is not None
        and not pending.sent
        and now - pending.last_seen >= HANDSHAKE_GRACE
    ):
        return HandshakeFailed(
            f"Calling remote method {pending.name}: the connection to "
            f"{endpoint} failed its handshake: {handshake_failure}",
        )
    unsent_too_long = (
        not pending.sent
        and connect_timeout is not None
        and now - pending.last_seen >= connect_timeout
    )
    if now >= pending.deadline or unsent_too_long:
        if not pending.sent:
            waited = pending.timeout
            if connect_timeout is not None:
                waited = min(waited, connect_timeout)
            return unreachable.error(pending.name, [endpoint], 1, waited)
        return TimeoutExpired(pending.timeout, f"calling remote method {pending.name}")
    return None


def silent(pending: Outgoing, now: float, heartbeat: float) -> LostRemote | None:
    """Return ``LostRemote`` if the server of a sent call fell silent for two of its periods."""
    patience = pending.patience(heartbeat)
    if now - pending.last_seen > patience:
        return LostRemote(f"Lost remote after {patience:g}s without a heartbeat")
    return None


def lost_in_flight(pending: Outgoing, endpoint: str) -> LostRemote:
    """The error of a call in flight on a connection that closed."""
    return LostRemote(
        f"The connection to {endpoint} closed while {pending.name} "
        "was in flight; it may or may not have run."
    )


# -- the reply -----------------------------------------------------------------------


def result(pending: Outgoing, reply: protocol.Event) -> Any:
    """Return the value of a final reply, or raise its remote error."""
    if reply.name == protocol.OK:
        args = reply.args
        return args[0] if isinstance(args, list | tuple) and args else None
    if reply.name == protocol.ERR:
        raise remote_error(reply)
    raise RemoteError(
        "ProtocolError", f"Unexpected {reply.name!r} in reply to {pending.name}.", None
    )


def remote_error(reply: protocol.Event) -> BaseException:
    """Return the exception an ERR event stands for, a typed one where the server said."""
    args = reply.args if isinstance(reply.args, list | tuple) else [reply.args]
    if reply.header.get("v", 1) >= 2 and len(args) == 3:
        name, message, traceback = (capped(arg) for arg in args)
        detail = reply.header.get(remote_errors.HEADER)
        return remote_errors.decode(name, message, traceback, detail)
    return RemoteError("RemoteError", capped(args[0]) if args else None, None)


def capped(text: Any) -> Any:
    """Return ``text`` cut to MAX_ERROR_TEXT characters, saying how much was cut."""
    if isinstance(text, str | bytes) and len(text) > MAX_ERROR_TEXT:
        cut = len(text) - MAX_ERROR_TEXT
        if isinstance(text, bytes):
            return text[:MAX_ERROR_TEXT] + b" [%d more bytes]" % cut
        return f"{text[:MAX_ERROR_TEXT]} [{cut} more characters]"
    return text


def probe_lost(endpoint: str, name: str, err: LostRemote) -> ServerUnavailable:
    """The error of call ``name`` whose connection was lost while it asked what the server reads.

    The call itself was not sent yet (the question, ``_zerorpc_name``, goes
    first), so it never ran: the retry rule may send it again, elsewhere or
    once the server is back (a ``runrpc`` reloading on a changed file).
    """
    return ServerUnavailable(
        f"The connection to {endpoint} was lost before rpc {name} was sent ({err}); it did not run."
    )
