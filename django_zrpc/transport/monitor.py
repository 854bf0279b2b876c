"""A socket's connections and handshakes, from its ZeroMQ monitor, with failures in words.

A server learns from it that a caller's connection closed (and so that its
calls can stop at once, rather than two heartbeats later) and which clients
fail the CURVE handshake before showing a key; a client, that its connection
to the server dropped (its calls in flight are lost) or that the server
refused it (its calls fail at once, not at their timeout).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

FAILED_EVENTS = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL),
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL),
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH),
}
SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_NO_DETAIL = int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
_monitor_ids = itertools.count()

#: Who watches a socket, for describe_failure().
SERVER, CURVE_CLIENT, PLAIN_CLIENT = "server", "CURVE client", "plain client"


class SocketMonitor:
    """The connection and handshake events of one socket, as ``on_event(event, value)``.

    The owner reads ``pair`` with a ``SocketLoop`` whose ``on_frames`` is
    ``self.on_frames``; it must be made before the socket connects or binds.
    """

    def __init__(
        self,
        socket: zmq.Socket,
        on_event: Callable[[int, int], None],
        context: zmq.Context[Any] | None = None,
    ) -> None:
        """``context``: of the pair, if not the socket's (a ``zmq.asyncio`` one, to await it)."""
        self._socket = socket
        self._on_event = on_event
        address = f"inproc://django_zrpc.monitor.{os.getpid()}.{next(_monitor_ids)}"
        socket.monitor(address, DISCONNECTED | SUCCEEDED | sum(FAILED_EVENTS))
        self.pair = (context or socket.context).socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.connect(address)

    def on_frames(self, frames: list[bytes]) -> None:
        event, value = parse_event(frames)
        if event:
            self._on_event(event, value)

    def close(self) -> None:
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is closed already
        self.pair.close(linger=0)


def parse_event(frames: list[bytes]) -> tuple[int, int]:
    """Return (event, value) of a monitor message; (0, 0) for one of another shape."""
    try:
        message = parse_monitor_message(frames)
    except RuntimeError:
        return 0, 0
    return int(message["event"]), int(message["value"])


class Handshakes:
    """What a client's connection attempts say of the server: that it refuses them, or not.

    A server that refuses this client (its CURVE key, a mechanism or server
    key that does not match) does so at every attempt. A connection closed
    during the handshake with no more said is also how a server process
    that died at that moment looks (a worker killed, a restart): ZeroMQ
    connects again, to another process or the same one restarted. So such a
    failure counts only once the attempt after it fails too; the others count
    at once. ``failure`` says the refusal in words (None: none).
    """

    __slots__ = ("_closed_once", "failure", "side")

    def __init__(self, side: str) -> None:
        self.side = side
        self.failure: str | None = None
        self._closed_once = False

    def on_event(self, event: int, value: int) -> None:
        """Note a monitor event; only handshake events change anything."""
        if event == SUCCEEDED:
            self.failure = None
            self._closed_once = False
        elif event in FAILED_EVENTS:
            if event == _NO_DETAIL and not self._closed_once:
                self._closed_once = True
                return
            self.failure = describe_failure(event, value, self.side)


def describe_failure(event: int, value: int, side: str) -> str:
    """Say in words why a handshake failed, as seen from ``side``."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"the server refused this client's CURVE key (ZAP status {value}): its "
            "NAME.key must be in the server's allow-list folder"
        )
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if side == SERVER:
            return "a client without CURVE keys connected"
        if side == PLAIN_CLIENT:
            return (
                "this client has no CURVE keys and the server requires CURVE: give this "
                "client curve_secret and curve_server"
            )
        return "this client has CURVE keys and the server has CURVE off"
    if side == PLAIN_CLIENT:
        return (
            f"the server closed the connection during the handshake ({_reason(event, value)}): "
            "it may require CURVE (give this client curve_secret and curve_server), or "
            "the endpoint is not a ZeroMQ server"
        )
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and side == SERVER:
        return "a client's server key is not this server's public key"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and side == SERVER:
        return f"a ZMTP protocol error ({value:#x})"
    return (
        f"the server closed the connection during the handshake ({_reason(event, value)}): "
        "is curve_server the public key of the server at this endpoint?"
    )


def _reason(event: int, value: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"ZMTP protocol error {value:#x}"
    return os.strerror(value)
