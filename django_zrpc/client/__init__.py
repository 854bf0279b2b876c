"""What a caller needs, written once for the gevent and the asyncio client.

- ``options``: ``ClientOptions``, a client's options, their checks and the
  ``ZRPC_CLIENTS`` entries;
- ``balancer``: which endpoint a call goes to, and which are down;
- ``spreading``: when a pool opens one more connection to an endpoint;
- ``retry``: whether a failed call may be tried again, the pause, and the
  budget of retries;
- ``tracing``: the span of each call, when a tracer is configured.

Under it, ``gevent`` and ``aio`` hold only what must differ between the two
event loops. Neither imports the other, and nothing here imports either or
the server. ``RPCClient`` is loaded lazily (PEP 562): it was importable from
``django_zrpc.client`` before this became a package, and loading the asyncio
client or a settings check must not load it and gevent.
"""

from __future__ import annotations

import importlib
from typing import Any

# The names importable from ``django_zrpc.client`` before it became a package.
_LAZY = {
    "PooledStream": "django_zrpc.client.gevent.stream",
    "RPCClient": "django_zrpc.client.gevent.rpc_client",
}

__all__ = ["PooledStream", "RPCClient"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'django_zrpc.client' has no attribute {name!r}")
