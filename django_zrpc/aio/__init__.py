"""django_zrpc's client on asyncio and ``zmq.asyncio``, for async views (issue 16).

- ``connection``: ``AsyncConnection``, one DEALER socket carrying many calls;
  ``pending`` (a call in flight), ``stream`` (``AsyncStream``, a remote stream
  read with ``async for``, and ``PooledAsyncStream``);
- ``pool``: ``AsyncPool``, the bounded pool of one endpoint in one event loop;
- ``endpoints``: which endpoint a call goes to;
- ``rpc_client``: ``AsyncRPCClient``; ``named_clients``: ``async_clients[...]``.

Nothing here imports gevent: the rules shared with the gevent client come
from ``wire`` (``calls_out``, ``protocol``), ``transport`` (``aio_sockets``, its
socket, sent on and drained past zmq.asyncio's futures; ``dealer``,
``monitor``) and ``django_zrpc.client.retry``. ``tests/test_layout.py`` holds it to that.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncRPCClient"]


def __getattr__(name: str) -> Any:
    # Lazily (PEP 562): the OpenTelemetry integration's streams build on
    # ``aio.stream``, and loading it must not load the client and its sockets.
    if name == "AsyncRPCClient":
        from django_zrpc.aio.rpc_client import AsyncRPCClient

        return AsyncRPCClient
    raise AttributeError(f"module 'django_zrpc.aio' has no attribute {name!r}")
