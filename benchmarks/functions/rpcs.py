"""``echo``: every echo and 10 KB payload row, the soak, and the streams' first call."""

from django_zrpc import rpc


@rpc.register()
def echo(value):
    """Return value unchanged."""
    return value
