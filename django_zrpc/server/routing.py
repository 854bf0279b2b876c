"""How the server reads requests and writes replies: its socket's two directions.

A mixin of ``engine.Server``. The reader greenlet hands every message to
``_on_frames``, which validates it and routes it: an event of a call in flight
(heartbeat, credit, cancel) to that call, a request to an idle worker or the
queue, or to a refusal (busy, stopping, unreadable) sent at once. The reader
never runs user code, so heartbeats keep flowing however busy the workers are.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from django_zrpc.server import observer as observed
from django_zrpc.server.calls import CANCELLED, Call
from django_zrpc.server.state import State
from django_zrpc.wire import protocol, remote_errors, values

#: The longest error message and traceback an ERR reply carries, in characters.
MAX_ERROR_MESSAGE_LEN = 10_000
MAX_TRACEBACK_LEN = 100_000


class Routing(State):
    """Route each event read to its call, and send each call's replies."""

    def _on_frames(self, frames: list[bytes], client_key: str | None = None) -> None:
        identity: tuple[bytes, ...] | None = None
        try:
            identity, blob = protocol.split_frames(frames)
            event = self._unpacker.unpack(blob)
        except protocol.BadEvent as err:
            self._drops.record(str(err))
            self._observer.frame_dropped()
            if identity is None:
                # Frames after the event: the envelope still says who asked.
                identity, blob = protocol.envelope_of(frames) or (None, b"")
            if identity is not None:
                self._refuse(identity, blob, str(err))
            return
        event.identity = identity
        event.client_key = client_key
        self._route(event)

    def _refuse(self, identity: tuple[bytes, ...], blob: bytes, reason: str) -> None:
        """Answer a request that cannot be read with an error, if its header says who asked."""
        header = protocol.request_header(blob)
        if header is None:
            return
        call = Call(protocol.Event("", [], header, identity), time.monotonic())
        self._reply_error(
            call,
            "BadRequest",
            f"The server cannot read this request: {reason}. Its limits: names of 1 to "
            f"{protocol.MAX_NAME_LEN} characters, {self._unpacker.limits()}.",
        )

    def _route(self, event: protocol.Event) -> None:
        response_to = event.response_to
        if response_to is not None:
            call = self._calls.get((event.identity, response_to))
            if call is None:
                return  # a late heartbeat or credit for a call that ended
            name = event.name
            call.heard(time.monotonic(), name == protocol.HEARTBEAT)
            if name == protocol.MORE:
                count = event.args[0] if isinstance(event.args, list | tuple) and event.args else 0
                if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                    call.add_credits(min(count, 1_000_000))
            elif name == protocol.HEARTBEAT:
                self._send(call, protocol.HEARTBEAT, [0], spend=False)
            elif name == protocol.CANCEL:
                self._lose(call, CANCELLED)
            return
        # Without response_to an event is a request, whatever its name: a
        # heartbeat of this shape belongs to no call, and its sender is told
        # so (see unknown_function) rather than left waiting.
        key = (event.identity, event.message_id)
        if key in self._calls:
            self._drops.record(f"duplicate message_id {event.message_id!r:.40}")
            self._observer.frame_dropped()
            return
        call = Call(event, time.monotonic())
        if not isinstance(event.args, list | tuple):
            self._reply_error(
                call,
                "TypeError",
                f"The call's arguments are a {type(event.args).__name__} "
                f"({event.args!r:.40}), not an array: send them as a list, [] for none.",
            )
            self._observer.call_refused(event.name, observed.BAD_REQUEST)
        elif not self._accepting and (call.rich or not self._serving_plain):
            self._last_refused = time.monotonic()
            self._observer.call_refused(event.name, observed.STOPPING)
            self._reply_error(
                call, "ServerStopping", "The server is stopping; call again later.", True
            )
        elif len(self._calls) >= self.concurrency + self.backlog:
            self._reply_error(
                call,
                "ServerBusy",
                f"The server is busy: {self.concurrency} calls are running and "
                f"{self.backlog} are waiting; call again later.",
                True,
                retry_after=self._pushback(),
            )
            self._observer.call_refused(event.name, observed.BUSY)
        else:
            self._calls[key] = call
            if self._idle:
                worker = self._idle.pop()
                worker.call = call
                # From the hub: a direct switch would leave this greenlet unscheduled.
                self._hub.loop.run_callback(worker.waiter.switch, None)
            else:
                self._waiting.append(call)

    # -- sending -------------------------------------------------------------

    def _event(self, call: Call, name: str, args: Any) -> protocol.Event:
        header = {
            "message_id": self._new_id(),
            "v": protocol.PROTOCOL_VERSION,
            # Tells a django_zrpc client that this server reads its value types.
            values.HEADER: values.VERSION,
            protocol.HEARTBEAT_PERIOD: self.heartbeat,
        }
        if self._hooks.has("get_task_context"):
            header.update(self._hooks.get_task_context())
        header["response_to"] = call.request.message_id
        return protocol.Event(name, args, header, call.identity)

    def _error_event(self, call: Call, exc_info: Any) -> protocol.Event:
        exc_type, exc_value, exc_tb = exc_info
        formatted = None
        if self._send_tracebacks:
            # Off by default: a traceback can show paths, hosts and DSNs.
            formatted = "".join(traceback.format_exception(exc_type, exc_value, exc_tb))
            formatted = protocol.cut(formatted, MAX_TRACEBACK_LEN)
        # A message may quote an argument whole (a KeyError does), in repr()
        # four times its size: past the size of a message, no reply would go.
        message = protocol.cut(str(exc_value), MAX_ERROR_MESSAGE_LEN)
        event = self._event(call, protocol.ERR, [exc_type.__name__, message, formatted])
        detail = remote_errors.encode(exc_value)
        if detail is not None:
            event.header[remote_errors.HEADER] = detail
        return event

    def _emit_error(self, call: Call, reply: protocol.Event) -> None:
        """Send an ERR reply; if it cannot go (its details too large), send it bare."""
        try:
            self._emit(call, reply)
        except (TypeError, ValueError) as unsendable:
            name, message, _ = reply.args
            bare = f"{message} (The error's details could not be sent: {unsendable}.)"
            self._emit(call, self._event(call, protocol.ERR, [name, bare, None]))

    def _reply_error(
        self,
        call: Call,
        name: str,
        message: str,
        never_started: bool = False,
        retry_after: float | None = None,
    ) -> None:
        # Sent even without a credit (a stream may be waiting for one): the
        # caller reads it before its buffer of 100 events could be full.
        event = self._event(call, protocol.ERR, [name, message, None])
        if never_started:
            # What lets a django_zrpc caller retry it: the name alone could be
            # a function's own exception.
            refusal: dict[str, Any] = {"type": remote_errors.NEVER_STARTED}
            if retry_after is not None:
                refusal["retry_after"] = retry_after
            event.header[remote_errors.HEADER] = refusal
        self._emit(call, event, spend=call.credits > 0)

    def _pushback(self) -> float | None:
        """Seconds a refused caller should wait before calling again: until the queue drains.

        The calls waiting, and this one, each take a worker for about the
        time a call has been taking, ``concurrency`` at a time. Sent with
        each ``ServerBusy``; a django_zrpc client waits that long before
        its retry (if it retries), instead of coming back within
        milliseconds to a queue that is still full. None until a call has
        ended: then nothing is known of how long calls take.
        """
        if not self._call_seconds:
            return None
        queued = len(self._waiting) + 1
        return round(min(max(queued / self.concurrency * self._call_seconds, 0.001), 10.0), 4)

    def _send(self, call: Call, name: str, args: Any, spend: bool = True) -> None:
        self._emit(call, self._event(call, name, args), spend=spend)

    def _emit(self, call: Call, event: protocol.Event, spend: bool = True) -> None:
        try:
            blob = protocol.pack(event.name, event.args, event.header, call.rich)
        except TypeError as err:  # before a credit is spent
            raise TypeError(f"rpc {call.request.name} cannot send its result: {err}") from None
        limit = self._unpacker.max_event_bytes
        if len(blob) > limit:
            # The caller's socket would drop the connection, and every other
            # call on it: refuse this one alone.
            raise ValueError(
                f"rpc {call.request.name} cannot send its result: {len(blob)} bytes, more "
                f"than a message may hold ({limit}, ZRPC_MAX_MESSAGE_BYTES)"
            )
        if spend:
            call.take_credit()
        assert call.identity is not None
        # A ROUTER never blocks a send: a message for a peer that is gone or
        # whose queue is full is dropped, so a dead caller cannot stall us.
        self._io.send([*call.identity, b"", blob], call)
