"""zerorpc protocol v3 on the wire: events packed with msgpack, and their validation.

An event is the msgpack array ``[header, name, args]``. The header is a map
with ``message_id`` (opaque: zerorpc-python sends 32 bytes, zerorpc for
Node.js a string), ``v`` (3) and, on every event after a call's first,
``response_to``. A DEALER client sends ``[b"", blob]``; a ROUTER server gets
``[identity..., b"", blob]`` and answers ``identity + [b"", blob]``.

Everything read from the network is checked here, and a bad frame raises
``BadEvent`` so that the caller can log and drop it.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import msgpack

from django_zrpc.wire import values

PROTOCOL_VERSION = 3
HEARTBEAT = "_zpc_hb"
MORE = "_zpc_more"
OK = "OK"
ERR = "ERR"
STREAM = "STREAM"
STREAM_DONE = "STREAM_DONE"
#: django_zrpc's own event: the caller gives a call up (a stream it closed),
#: so that the server stops it at once. Sent only to a server whose replies
#: carry django_zrpc's header; a stock zerorpc server never sees it.
CANCEL = "_zrpc_cancel"
#: How the names of zerorpc's own events and django_zrpc's begin: no
#: function is named so.
EVENT_PREFIXES = ("_zpc_", CANCEL)

#: The heartbeat period a peer is judged by until its heartbeats show its own:
#: zerorpc's default.
PEER_HEARTBEAT = 5.0
#: The longest heartbeat period a peer is judged by; a peer that beats more
#: slowly is lost after twice this.
MAX_PEER_HEARTBEAT = 60.0
#: Header key of django_zrpc's events: the sender's heartbeat period in
#: seconds. A peer judges a call by it from the call's first event, where it
#: would otherwise wait for two heartbeats (and a short call never sees two).
HEARTBEAT_PERIOD = "heartbeat"
#: The connection property (ZMQ_METADATA, sent in ZeroMQ's handshake, never
#: in an event) by which a django_zrpc server tells which process a
#: connection reaches: the processes of ``runrpc --workers`` share one
#: address, and so may the pods behind one Kubernetes Service. A client's
#: pool spreads calls over processes, not over connections to the same one.
INSTANCE_PROPERTY = "X-Zrpc-Instance"

#: Hard limits on what one event may hold; larger is a hostile or broken peer.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_CONTAINER_LEN = 100_000
DEFAULT_MAX_CONTAINERS = 100_000
# Events up to this size are decoded without counting their containers: they
# cannot hold enough to matter (a byte can become a 64-byte dict at most).
_COUNT_ABOVE_BYTES = 64 * 1024
MAX_NAME_LEN = 256
MAX_ID_LEN = 256
MAX_IDENTITY_FRAMES = 8
#: The longest error message sent or logged for a bad event: a decoder's
#: message can quote the bad value whole, four times its size in repr().
MAX_REASON_LEN = 200


class BadEvent(ValueError):
    """A frame or event that does not follow the protocol; drop it."""


@dataclass(eq=False)
class Event:
    """One zerorpc event, shaped like ``zerorpc.events.Event`` for middleware."""

    name: str
    args: Any
    header: dict[str, Any]
    identity: tuple[bytes, ...] | None = field(default=None)
    #: The name of the CURVE key the sender was admitted with, if any.
    client_key: str | None = field(default=None)

    @property
    def message_id(self) -> Any:
        return self.header["message_id"]

    @property
    def response_to(self) -> Any:
        return self.header.get("response_to")

    def __str__(self) -> str:
        return f"{self.name} {self.header} {self.args!r:.200}"


class Heard:
    """When a call's peer was last heard from, and the heartbeat period its beats show.

    Each side judges the other by the longer of the two periods, so that a
    caller on zerorpc's 5 s heartbeat is not lost by a server on 1 s (nor the
    reverse): a peer is lost after twice that period without a word.
    """

    __slots__ = ("last_beat", "last_seen", "peer_period")

    def __init__(self, now: float, peer_period: float | None = None) -> None:
        self.last_seen = now
        self.last_beat: float | None = None
        self.peer_period = peer_period

    def heard(self, now: float, heartbeat: bool) -> None:
        """Note an event from the peer; ``heartbeat``: it was a heartbeat."""
        self.last_seen = now
        if heartbeat:
            if self.last_beat is not None:
                self.peer_period = min(now - self.last_beat, MAX_PEER_HEARTBEAT)
            self.last_beat = now

    def patience(self, own: float) -> float:
        """Return the seconds of silence after which the peer is lost."""
        period = PEER_HEARTBEAT if self.peer_period is None else self.peer_period
        return 2 * max(own, period)


def announced_period(header: dict[Any, Any]) -> float | None:
    """Return the heartbeat period a peer's header announces, if it is a sane one."""
    period = header.get(HEARTBEAT_PERIOD)
    if isinstance(period, int | float) and not isinstance(period, bool) and 0 < period < 1e9:
        return min(float(period), MAX_PEER_HEARTBEAT)
    return None


def new_instance() -> str:
    """Return a token naming one server process among those behind an address."""
    return os.urandom(8).hex()


class MessageIds:
    """Fresh message ids: a random per-process prefix and a counter, 32 bytes like zerorpc's."""

    def __init__(self) -> None:
        self._reset()
        # A forked child must not reuse its parent's ids.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(12).hex().encode()
        self._counter = itertools.count()

    def __call__(self) -> bytes:
        return self._prefix + b"%08x" % (next(self._counter) & 0xFFFFFFFF)


def pack(name: str, args: Any, header: dict[str, Any], rich: bool = True) -> bytes:
    """Return the msgpack blob of an event; ``rich``: with django_zrpc's value types.

    ``args`` is a list (a tuple would be sent as one value, a tuple).
    """
    return values.pack_event([header, name, args], rich)


def pack_request(name: str, args: Any, header: dict[str, Any]) -> tuple[bytes, bool]:
    """Pack a call's first event with django_zrpc's types; say whether it holds any."""
    return values.pack_detected([header, name, args])


class Unpacker:
    """Decode and validate event blobs with bounded sizes."""

    def __init__(
        self,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_container_len: int = DEFAULT_MAX_CONTAINER_LEN,
        max_containers: int = DEFAULT_MAX_CONTAINERS,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.max_container_len = max_container_len
        self.max_containers = max_containers
        self._limits: dict[str, Any] = {
            "raw": False,
            "strict_map_key": False,
            "object_pairs_hook": values.map_from_pairs,
            "max_str_len": max_event_bytes,
            "max_bin_len": max_event_bytes,
            "max_array_len": max_container_len,
            "max_map_len": max_container_len,
            "max_ext_len": max_event_bytes,
        }
        self._ext_hook = values.ext_hook(self._unpack_nested)
        # Readers made once and reused for events up to _COUNT_ABOVE_BYTES:
        # msgpack.unpackb sets one up a call (1.37 against 0.89 us a reply).
        # Taken from here and put back (list.pop and append are atomic, so
        # each thread gets its own); one that failed is dropped, whatever it
        # still holds with it.
        self._readers: list[msgpack.Unpacker] = []

    def _unpack_nested(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook, **self._limits)

    def limits(self) -> str:
        """Say what an event may hold, naming the settings."""
        return (
            f"events of at most {self.max_event_bytes} bytes (ZRPC_MAX_MESSAGE_BYTES), "
            f"arrays and maps of at most {self.max_container_len} items "
            f"(ZRPC_MAX_CONTAINER_LEN), at most {self.max_containers} arrays and maps in an "
            f"event over {_COUNT_ABOVE_BYTES // 1024} KiB (ZRPC_MAX_CONTAINERS), tuples and "
            f"sets nested at most {values.MAX_DEPTH} deep, and strings of UTF-8"
        )

    def unpack(self, blob: bytes) -> Event:
        """Return the event in ``blob``, or raise ``BadEvent`` saying what is wrong."""
        size = len(blob)
        if size > self.max_event_bytes:
            raise BadEvent(f"event of {size} bytes exceeds {self.max_event_bytes}")
        try:
            if size > _COUNT_ABOVE_BYTES:
                decoded = self._unpack_counted(blob)
            else:
                decoded = self._read(blob)
        except BadEvent:
            raise
        except Exception as err:  # msgpack raises many types for bad input
            raise BadEvent(
                f"not msgpack: {type(err).__name__}: {cut(str(err), MAX_REASON_LEN)}"
            ) from None
        # Arrays come as lists (a tuple is an extension inside an event).
        if type(decoded) is not list:
            raise BadEvent(
                f"event is a {type(decoded).__name__}, not an array [header, name, args]"
            )
        if len(decoded) != 3:
            raise BadEvent(f"event is an array of {len(decoded)} items, not [header, name, args]")
        header, name, args = decoded
        if type(header) is not dict:
            raise BadEvent(f"header is a {type(header).__name__}, not a map")
        if type(name) is not str or not name or len(name) > MAX_NAME_LEN:
            raise BadEvent(f"event name {name!r:.80} is not a short non-empty string")
        _check_id(header.get("message_id"), "message_id")
        if "response_to" in header:
            _check_id(header["response_to"], "response_to")
        version = header.get("v", PROTOCOL_VERSION)
        if type(version) is not int:
            raise BadEvent(f"protocol version {version!r:.40} is not an integer")
        return Event(name, args, header)

    def _read(self, blob: bytes) -> Any:
        try:
            reader = self._readers.pop()
        except IndexError:
            reader = msgpack.Unpacker(
                ext_hook=self._ext_hook, max_buffer_size=_COUNT_ABOVE_BYTES, **self._limits
            )
        reader.feed(blob)
        decoded = reader.unpack()  # raises past a limit, or when the blob ends early
        if reader.read_bytes(1):
            raise BadEvent("more than one msgpack value in the event")  # reader dropped
        self._readers.append(reader)
        return decoded

    def _unpack_counted(self, blob: bytes) -> Any:
        # The length limits bound each container, not how many there are: a
        # 16 MiB event of nested empty maps would become a gigabyte of dicts.
        # Count them as they are built and stop past the limit.
        count = 0
        limit = self.max_containers

        def counted(container: Any) -> Any:
            nonlocal count
            count += 1
            if count > limit:
                raise BadEvent(f"event holds more than {limit} arrays and maps")
            return container

        def counted_map(pairs: list[tuple[Any, Any]]) -> Any:
            return counted(values.map_from_pairs(pairs))

        limits = {**self._limits, "object_pairs_hook": counted_map}

        def unpack(data: bytes) -> Any:
            # Arrays and maps inside extensions (tuples, sets) count too.
            return msgpack.unpackb(data, list_hook=counted, ext_hook=ext_hook, **limits)

        ext_hook = values.ext_hook(unpack)
        return unpack(blob)


def request_header(blob: bytes) -> dict[str, Any] | None:
    """Return the header of a request that cannot be read whole, if it can be read alone.

    A request refused for what follows its header (a name that is too long or
    not UTF-8, too many items, nesting too deep, an array of other than three
    items) still says who asked: answering it at once spares its caller a
    wait to its timeout. None when the header is not a request's (no usable
    ``message_id``, or a reply's ``response_to``).
    """
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        max_buffer_size=_COUNT_ABOVE_BYTES,
        max_str_len=MAX_ID_LEN * 4,
        max_bin_len=MAX_ID_LEN * 4,
        max_array_len=16,
        max_map_len=64,
        max_ext_len=MAX_ID_LEN * 4,
    )
    try:
        unpacker.feed(blob[:_COUNT_ABOVE_BYTES])  # a header is short
        if unpacker.read_array_header() < 1:
            return None
        header = unpacker.unpack()
    except Exception:  # msgpack raises many types for bad input
        return None
    if not isinstance(header, dict) or "response_to" in header:
        return None
    try:
        _check_id(header.get("message_id"), "message_id")
    except BadEvent:
        return None
    return header


def _check_id(value: Any, what: str) -> None:
    kind = type(value)
    if kind is bytes or kind is str:
        if 0 < len(value) <= MAX_ID_LEN:
            return
    elif kind is int:
        return
    raise BadEvent(f"{what} {value!r:.80} is not a short bytes, string or integer id")


def split_frames(frames: list[bytes]) -> tuple[tuple[bytes, ...], bytes]:
    """Split ROUTER frames ``[identity..., b"", blob]`` into (identity, blob)."""
    if 3 <= len(frames) <= MAX_IDENTITY_FRAMES + 2 and frames[-2] == b"":
        return tuple(frames[:-2]), frames[-1]
    envelope = envelope_of(frames)
    if envelope is None:
        raise BadEvent(f"{len(frames)} frames hold no empty frame after the sender's identity")
    after = len(frames) - len(envelope[0]) - 1
    raise BadEvent(f"{after} frames follow the empty frame, where a request has one, its event")


def envelope_of(frames: list[bytes]) -> tuple[tuple[bytes, ...], bytes] | None:
    """Return the identity of frames ``split_frames`` refused, and the frame after the empty one.

    Routing ids are never empty, so the first empty frame ends the identity:
    a request with frames after its event still says who sent it, and what
    it holds may say which call it is. None without an empty frame and a
    frame after it.
    """
    for index in range(1, min(len(frames) - 1, MAX_IDENTITY_FRAMES + 1)):
        if frames[index] == b"":
            return tuple(frames[:index]), frames[index + 1]
    return None


def cut(text: str, limit: int) -> str:
    """Return ``text``, cut to at most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    kept = max(limit - 30, 0)
    return f"{text[:kept]}... ({len(text) - kept} characters cut)"
