"""Serve Django functions over zerorpc and call zerorpc services from Django.

The public names are imported lazily (PEP 562): ``python -m
django_zrpc.launcher`` imports this package before it monkey-patches the
process with gevent, so importing it must not pull in Django, zerorpc or a
database driver.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "rpc": "django_zrpc.registry",
    "RPCClient": "django_zrpc.client.gevent.rpc_client",
    "AsyncRPCClient": "django_zrpc.aio.rpc_client",
    "async_clients": "django_zrpc.aio.named_clients",
    "clients": "django_zrpc.client.gevent.named_clients",
    "default_client": "django_zrpc.client.gevent.named_clients",
    "current_call": "django_zrpc.context",
    "register_error": "django_zrpc.wire.remote_errors",
    "HandshakeFailed": "django_zrpc.exceptions",
    "PoolExhausted": "django_zrpc.exceptions",
    "ServerUnavailable": "django_zrpc.exceptions",
    "RemoteError": "django_zrpc.exceptions",
    "LostRemote": "django_zrpc.exceptions",
    "TimeoutExpired": "django_zrpc.exceptions",
}

__all__ = [
    "AsyncRPCClient",
    "HandshakeFailed",
    "LostRemote",
    "PoolExhausted",
    "RPCClient",
    "RemoteError",
    "ServerUnavailable",
    "TimeoutExpired",
    "__version__",
    "async_clients",
    "clients",
    "current_call",
    "default_client",
    "register_error",
    "rpc",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'django_zrpc' has no attribute {name!r}")
