"""Frames through ZeroMQ: when one is copied, and whether one is waiting to be read.

Frames of at least ``ZERO_COPY_BYTES`` are sent without a copy (ZeroMQ takes
the bytes object itself, and pyzmq keeps it alive until sent) and handed on,
when received, as a view of ZeroMQ's message, which the unpacker reads
without copying it first: a 10 MiB value costs one copy fewer on each side
of each leg. Below it, a copy is cheaper than the bookkeeping (this is
pyzmq's own threshold for zero-copy sends).
"""

from __future__ import annotations

from typing import cast

import zmq

ZERO_COPY_BYTES = 65536

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def has_message(sock: zmq.Socket) -> bool:
    """Whether ``sock`` has a message to read now: one getsockopt, with int flags (3.7 us).

    It reads the socket's commands, as a receive does, so it also leaves the
    descriptor's edge to be raised anew by the next message.
    """
    return bool(cast(int, sock.getsockopt(_EVENTS)) & _POLLIN)


def as_bytes(frame: zmq.Frame) -> bytes:
    """A received frame's bytes; for a large frame, a view of them that reads as bytes do.

    The view (a ``memoryview``) is read only by what takes any buffer: its
    length, slices, comparison with bytes, msgpack. It keeps ZeroMQ's message
    alive while anything holds it.
    """
    if len(frame) < ZERO_COPY_BYTES:
        return frame.bytes
    return cast(bytes, frame.buffer)
