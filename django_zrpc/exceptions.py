"""Every exception django_zrpc raises, and zerorpc's, re-exported.

Configuration mistakes subclass Django's ``ImproperlyConfigured`` so that they
stop startup the way a bad setting does. zerorpc's exceptions are re-exported
unchanged, so ``except zerorpc.RemoteError`` and ``except
django_zrpc.RemoteError`` catch the same thing.
"""

from django.core.exceptions import ImproperlyConfigured
from zerorpc.exceptions import LostRemote, RemoteError, TimeoutExpired

__all__ = [
    "DuplicateRPCName",
    "HandshakeFailed",
    "InvalidRPCName",
    "LostRemote",
    "PoolExhausted",
    "RemoteError",
    "ServerUnavailable",
    "TimeoutExpired",
    "ZRPCConfigurationError",
]


class ZRPCConfigurationError(ImproperlyConfigured):
    """A ``ZRPC_*`` setting or a registration is wrong; the message says how."""


class InvalidRPCName(ZRPCConfigurationError):
    """A function was registered under a name zerorpc cannot route."""


class DuplicateRPCName(ZRPCConfigurationError):
    """Two different functions were registered under the same name."""


class ServerUnavailable(TimeoutExpired):
    """The call timed out without ever reaching the server: no connection was made."""


class HandshakeFailed(ServerUnavailable):
    """The connection's security (CURVE) handshake failed, so the call never reached the server.

    Raised as soon as ZeroMQ reports the failure, not after the timeout: the
    server refused this client's key, or one side has CURVE and the other
    not, or the client's server key is not the server's.
    """

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


class PoolExhausted(TimeoutExpired):
    """Every pooled connection stayed in use for the whole wait."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
