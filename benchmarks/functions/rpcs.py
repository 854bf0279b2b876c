"""``echo``: every echo and 10 KB payload row, the soak, and the streams' first call.

``burn``: the rows of ``runrpc --workers`` (issue 14), a call that needs a core.
"""

import time

from django_zrpc import rpc


@rpc.register()
def echo(value):
    """Return value unchanged."""
    return value


@rpc.register()
def burn(ms):
    """Spend ``ms`` milliseconds of this thread's CPU, on the event loop; return ms."""
    until = time.thread_time() + ms / 1000
    while time.thread_time() < until:
        sum(range(100))
    return ms
