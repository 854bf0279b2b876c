"""A client's DEALER socket: the shared context, the options both clients set, what they read.

Free of gevent: ``core.client`` (gevent) and ``django_zrpc.aio`` (asyncio) make
their sockets here.
"""

from __future__ import annotations

import zmq

from django_zrpc.curve import ClientKeys
from django_zrpc.transport.io_threads import batch_io_threads, original_allocate_lock
from django_zrpc.wire import protocol

#: Sockets the clients' shared context may hold: each connection takes three
#: (its DEALER and the two ends of its monitor), and libzmq's default, 1,023,
#: would cap a process at about 340 connections.
MAX_SOCKETS = 8192

# The interpreter's lock, also where gevent patched threads: setting the
# context up never yields to another greenlet.
_setup_lock = original_allocate_lock()()


def shared_context() -> zmq.Context:
    """Return the process's one ZeroMQ context for every client, made roomy enough.

    One context per process (pyzmq makes a new one after fork): a context of
    their own would cost each connection two I/O threads. ``MAX_SOCKETS``
    counts only if set before the context's first socket; a context someone
    else started (zerorpc's, say) keeps its own bound.
    """
    ctx: zmq.Context = zmq.Context.instance()
    if ctx.get(zmq.MAX_SOCKETS) < MAX_SOCKETS:
        # Threads making their first connections at once: one sets the
        # context up, the others wait, as both settings must precede any
        # socket. MAX_SOCKETS goes last, the sign that it is done.
        with _setup_lock:
            if ctx.get(zmq.MAX_SOCKETS) < MAX_SOCKETS:
                batch_io_threads(ctx)
                ctx.set(zmq.MAX_SOCKETS, MAX_SOCKETS)
    return ctx


def configure_dealer(socket: zmq.Socket, max_event_bytes: int, curve: ClientKeys | None) -> None:
    """Set a client's DEALER socket up, before it connects.

    ``IMMEDIATE``: a request is only queued on a live connection, so a call
    to a server that is down is never delivered later when it returns
    (zerorpc-python #121). ``MAXMSGSIZE``: the server's limits hold here too,
    and a frame past them ends the connection instead of filling memory.
    """
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IMMEDIATE, 1)
    socket.setsockopt(zmq.IPV6, 1)
    socket.setsockopt(zmq.MAXMSGSIZE, max_event_bytes)
    if curve is not None:
        curve.apply(socket)


def peer_of(frame: zmq.Frame) -> str | None:
    """The process a django_zrpc server names in the handshake of ``frame``'s connection.

    None for a server that names none (a stock zerorpc server, or libzmq
    before 4.3 on the server's side).
    """
    try:
        value = frame.get(protocol.INSTANCE_PROPERTY)
    except zmq.ZMQError:
        return None  # the server set no such property
    return value if isinstance(value, str) else None
