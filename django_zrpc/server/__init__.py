"""Building and running a server: what ``runrpc`` and ``LiveRPCServer`` serve with.

- ``build``: ``build_server`` and ``load_middleware``, the server built from
  the registry, the settings and the middleware list;
- ``engine``: ``Server``, which serves calls on a ROUTER socket with
  persistent workers, made of one mixin per job (``routing``, ``workers``,
  ``callers``, ``call_log``, over ``state``); ``calls`` (what one call is,
  and the steps of running it), ``builtins`` (``_zerorpc_*``), ``hooks``
  (zerorpc-style middleware), ``observer`` (what metrics are told of each
  call), ``stall`` (the blocked loop warning), ``ratelimit``, ``zap`` (the
  CURVE ZAP handler) and ``heap`` (memory of departed peers given back);
- ``runner`` and ``run_logging``: what ``runrpc`` runs once its options are
  parsed, and its call log;
- ``supervisor`` and ``worker``: ``runrpc --workers``, a supervisor and its
  worker processes; ``ops``: the ops endpoint; ``announce``: announcing the
  server in a registry.

The server builds on ``wire`` and ``transport`` and never imports the
client. The names of ``build`` are loaded lazily (PEP 562): the metrics
import ``observer``, and loading it must not load the engine and gevent.
"""

from __future__ import annotations

import importlib
from typing import Any

# The names importable from ``django_zrpc.server`` before it became a package.
_LAZY = {
    "build_server": "django_zrpc.server.build",
    "connection_limits": "django_zrpc.server.build",
    "idle_check": "django_zrpc.server.build",
    "load_middleware": "django_zrpc.server.build",
}

__all__ = ["build_server", "connection_limits", "idle_check", "load_middleware"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'django_zrpc.server' has no attribute {name!r}")
