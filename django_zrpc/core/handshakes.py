"""A socket's handshake events (CURVE or ZMTP failures), read from its ZeroMQ monitor, in words.

A client uses them to fail calls at once when the server refuses it, rather
than after its timeout; a server, to log clients that fail the handshake
before any key is known (no CURVE, or another server's key).
"""

from __future__ import annotations

import itertools
import os

import zmq
from zmq.utils.monitor import parse_monitor_message

FAILED_EVENTS = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL),
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL),
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH),
}
_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_monitor_ids = itertools.count()

#: Who watches a socket, for describe_failure().
SERVER, CURVE_CLIENT, PLAIN_CLIENT = "server", "CURVE client", "plain client"


class HandshakeMonitor:
    """The handshake events of one socket, read without blocking."""

    def __init__(self, socket: zmq.Socket, side: str) -> None:
        self._socket = socket
        self._side = side
        address = f"inproc://django_zrpc.monitor.{os.getpid()}.{next(_monitor_ids)}"
        socket.monitor(address, _SUCCEEDED | sum(FAILED_EVENTS))
        self.pair = socket.context.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.connect(address)
        self.failure: str | None = None

    def read(self) -> str | None:
        """Read the events so far; return the last failure unless a handshake succeeded since."""
        while True:
            try:
                frames = self.pair.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return self.failure
            self.on_frames(frames)

    def on_frames(self, frames: list[bytes]) -> None:
        event, value = parse_event(frames)
        if event == _SUCCEEDED:
            self.failure = None
        elif event in FAILED_EVENTS:
            self.failure = describe_failure(event, value, self._side)

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
