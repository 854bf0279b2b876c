"""The client on asyncio and ``zmq.asyncio``, for async views: what differs from gevent's.

- ``connection``: ``AsyncConnection``, one DEALER socket carrying many calls;
  ``pending`` (a call in flight), ``stream`` (``AsyncStream``, a remote stream
  read with ``async for``, and ``PooledAsyncStream``);
- ``pool``: ``AsyncPool``, the bounded pool of one endpoint in one event loop;
- ``rpc_client``: ``AsyncRPCClient``; ``named_clients``: ``async_clients[...]``.

The module names are the gevent client's (``django_zrpc.client.gevent``), so
that the two can be read side by side. Nothing here imports gevent nor the
gevent client: the rules shared with it come from ``django_zrpc.client``
(options, balancing, retry, tracing), ``wire`` (``calls_out``, ``protocol``)
and ``transport`` (``aio_sockets``, ``dealer``, ``monitor``).
``tests/project/test_layout.py`` holds it to that.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncRPCClient"]


def __getattr__(name: str) -> Any:
    # Lazily (PEP 562): the OpenTelemetry integration's streams build on
    # ``client.aio.stream``, and loading it must not load the client and its sockets.
    if name == "AsyncRPCClient":
        from django_zrpc.client.aio.rpc_client import AsyncRPCClient

        return AsyncRPCClient
    raise AttributeError(f"module 'django_zrpc.client.aio' has no attribute {name!r}")
