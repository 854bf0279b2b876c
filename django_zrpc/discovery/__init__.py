"""Where a client finds its servers: a list, DNS, or a Redis the servers announce themselves in.

``RPCClient`` (and ``ZRPC_CLIENTS``' ``ENDPOINTS``) takes one of:

- ``["tcp://10.0.0.5:4242", ...]``: these endpoints, for the client's lifetime;
- ``"dns:///tickets-rpc.internal:4242"`` (gRPC's form): every address the name
  resolves to, resolved again every ``refresh`` seconds and soon after a failure
  (``dns.py``);
- ``"redis://host:6379/0?service=tickets"``: the instances that ``runrpc
  --announce`` registered there, followed through pub/sub (``redis_registry.py``).

Each gives a ``Directory`` (``directory.py``): the addresses as last seen, which
calls read without waiting, kept current by a thread of its own. One directory
serves every client of the same source in a process.

Free of gevent and of Django's request cycle, so that any client can use it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence

from django_zrpc.discovery.directory import Directory, StaticDirectory

#: How often a DNS name is resolved again, in seconds, unless a client says otherwise.
DEFAULT_REFRESH = 30.0

_lock = threading.Lock()
_directories: weakref.WeakValueDictionary[tuple[str, float, int], Directory] = (
    weakref.WeakValueDictionary()
)


def is_discovery(endpoint: str) -> bool:
    """Whether ``endpoint`` names a source of addresses rather than one address."""
    return endpoint.startswith(("dns:", "redis://", "rediss://"))


def directory_for(endpoints: Sequence[str], refresh: float = DEFAULT_REFRESH) -> Directory:
    """Return the directory of ``endpoints`` (checked by ``validate_endpoints``).

    Directories that watch something are shared by every client of this
    process with the same source, and made anew in a child made by fork.
    """
    if len(endpoints) != 1 or not is_discovery(endpoints[0]):
        return StaticDirectory(endpoints)
    source = endpoints[0]
    key = (source, refresh, os.getpid())
    with _lock:
        directory = _directories.get(key)
        if directory is None:
            directory = _directories[key] = _watch(source, refresh)
    return directory


def _watch(source: str, refresh: float) -> Directory:
    if source.startswith("dns:"):
        from django_zrpc.discovery.dns import DNSDirectory

        return DNSDirectory(source, refresh)
    from django_zrpc.discovery.redis_registry import RedisDirectory

    return RedisDirectory(source)
