"""``echo``: every echo and 10 KB payload row, the soak, and the streams' first call.

``large_echo``: the large workload, bytes in and the same bytes out.
``burn``: the rows of ``runrpc --workers`` (issue 14), a call that needs a core.
``echo_typed``, ``order`` and ``order_typed``: what a contract costs, as typed
and untyped twins doing the same work.
"""

import time
from dataclasses import dataclass

from django_zrpc import rpc


@rpc.register()
def echo(value):
    """Return value unchanged."""
    return value


@rpc.register()
def large_echo(value: bytes) -> bytes:
    """Return value unchanged: the large workload's megabytes, both ways."""
    return value


@rpc.register()
def burn(ms):
    """Spend ``ms`` milliseconds of this thread's CPU, on the event loop; return ms."""
    until = time.thread_time() + ms / 1000
    while time.thread_time() < until:
        sum(range(100))
    return ms


@rpc.register()
def echo_typed(x: str) -> str:
    """Return x: the typed twin of echo, its one argument checked."""
    return x


@dataclass
class Item:
    sku: str
    qty: int


@rpc.register()
def order(items):
    """Return the sum of the items' quantities (maps, unchecked)."""
    return sum(item["qty"] for item in items)


@rpc.register()
def order_typed(items: list[Item]) -> int:
    """Return the sum of the items' quantities, each item checked into an Item."""
    return sum(item.qty for item in items)
