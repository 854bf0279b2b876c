"""How a pool spreads calls: ``SPREAD_AT``, and one connection a server process.

Shared by ``RPCClient``'s pool (``django_zrpc.client.gevent.pool``) and
``AsyncRPCClient``'s (``django_zrpc.aio.pool``, asyncio); free of both.

A django_zrpc server names its process in ZeroMQ's handshake
(``protocol.INSTANCE_PROPERTY``), and a connection learns the name from the
first reply after each handshake (its ``peer``; None until then, and for a
server that does not say). Of a pool's connections that reach the same
process, one is lent (the *lead*) and the others are *spares*, lent only once
every lead is full: calls spread over processes, not over sockets to the same
one, whose replies would each cost the client a wake-up of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

#: Calls in flight on the least busy connection before another is opened (while
#: there is room). Calls in flight on one socket go out and come back in
#: batches; spread over a connection each they cost a wake-up each. Measured
#: (echo, 16 callers, pool of 10): 1 call a connection before the next made
#: 7,200 calls/s, 4 made 10,400, 8 made 12,400 on 2 connections; 4 still
#: spreads 32 callers over 8 connections, and so over the processes of
#: ``runrpc --workers``.
SPREAD_AT = 4


class Reaching(Protocol):
    """A pool's connection: it knows the server process it reaches, once told."""

    peer: str | None


_Connection = TypeVar("_Connection", bound=Reaching)


def leads_and_spares(
    connections: Iterable[_Connection], calls_per_connection: int
) -> tuple[list[_Connection], list[_Connection]]:
    """Split lendable ``connections`` (in order) into the leads and the spares.

    The first connection to each process leads, and each whose process is not
    known. With room for no more calls a connection than ``SPREAD_AT``, every
    connection is needed for itself: all lead.
    """
    leads: list[_Connection] = []
    spares: list[_Connection] = []
    seen: set[str] = set()
    for connection in connections:
        peer = connection.peer
        if peer is None or calls_per_connection <= SPREAD_AT or peer not in seen:
            leads.append(connection)
            if peer is not None:
                seen.add(peer)
        else:
            spares.append(connection)
    return leads, spares


def spares_of(connection: Reaching, spares: list[_Connection]) -> list[_Connection]:
    """The spares that reach the process ``connection`` reaches (none when it is not known)."""
    peer = connection.peer
    return [] if peer is None else [c for c in spares if c.peer == peer]
