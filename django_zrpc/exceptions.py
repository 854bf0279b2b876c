"""Every exception django_zrpc raises, and zerorpc's, re-exported.

Configuration mistakes subclass Django's ``ImproperlyConfigured`` so that they
stop startup the way a bad setting does. zerorpc's exceptions are re-exported
unchanged, so ``except zerorpc.RemoteError`` and ``except
django_zrpc.RemoteError`` catch the same thing (without importing zerorpc's
gevent: see ``_zerorpc_exceptions``). The ``Remote*`` classes are
what a caller gets for Django's own exceptions raised by a remote function
(see ``django_zrpc.wire.remote_errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import (
    ImproperlyConfigured,
    MultipleObjectsReturned,
    ObjectDoesNotExist,
    PermissionDenied,
    ValidationError,
)

__all__ = [
    "BrokenRPCModule",
    "CurveKeyError",
    "DuplicateRPCName",
    "HandshakeFailed",
    "InvalidArguments",
    "InvalidIdentity",
    "InvalidRPCName",
    "InvalidResult",
    "LostRemote",
    "MetricsUnavailable",
    "PoolExhausted",
    "RemoteDoesNotExist",
    "RemoteError",
    "RemoteMultipleObjectsReturned",
    "RemotePermissionDenied",
    "RemoteValidationError",
    "ServerUnavailable",
    "TimeoutExpired",
    "UnsupportedAnnotation",
    "ZRPCConfigurationError",
]


if TYPE_CHECKING:
    from zerorpc.exceptions import LostRemote, RemoteError, TimeoutExpired
else:
    from django_zrpc import _zerorpc_exceptions

    _zerorpc = _zerorpc_exceptions.load()
    LostRemote = _zerorpc.LostRemote
    RemoteError = _zerorpc.RemoteError
    TimeoutExpired = _zerorpc.TimeoutExpired


# -- configuration ---------------------------------------------------------------


class ZRPCConfigurationError(ImproperlyConfigured):
    """A ``ZRPC_*`` setting or a registration is wrong; the message says how."""


class InvalidRPCName(ZRPCConfigurationError):
    """A function was registered under a name zerorpc cannot route."""


class DuplicateRPCName(ZRPCConfigurationError):
    """Two different functions were registered under the same name."""


class BrokenRPCModule(ZRPCConfigurationError):
    """An installed app's ``rpcs.py`` raised when imported, so its functions are not registered."""


class UnsupportedAnnotation(ZRPCConfigurationError):
    """A registered function's type hints cannot be resolved or cannot be checked on the wire."""


class CurveKeyError(ZRPCConfigurationError, ValueError):
    """A CURVE key file or allow-list folder cannot be used; the message says why."""


class MetricsUnavailable(ZRPCConfigurationError):
    """Metrics were asked for (``--ops``, ``ZRPC_METRICS = True``) without prometheus_client."""


# -- calls that did not reach the server -------------------------------------------


class ServerUnavailable(TimeoutExpired):
    """The call timed out without ever reaching the server: no connection was made.

    Its message is a whole sentence (zerorpc's ``TimeoutExpired`` would make
    it "timeout after ...s"). When no connection could be made, it also says
    which ``endpoints`` the call tried, in how many ``attempts``, and the
    seconds it ``waited`` in all; these are empty, 0 and None otherwise (a
    pool closed, no address known, a refused handshake).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoints: Sequence[str] = (),
        attempts: int = 0,
        waited: float | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.endpoints = list(endpoints)
        self.attempts = attempts
        self.waited = waited


class HandshakeFailed(ServerUnavailable):
    """The connection's security (CURVE) handshake failed, so the call never reached the server.

    Raised as soon as ZeroMQ reports the failure, not after the timeout: the
    server refused this client's key, or one side has CURVE and the other
    not, or the client's server key is not the server's.
    """


class PoolExhausted(TimeoutExpired):
    """Every pooled connection stayed in use for the whole wait."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


# -- contracts ---------------------------------------------------------------------


class InvalidArguments(TypeError):
    """A call's arguments do not fit the function's type hints; the function did not run.

    Python's own error for a wrong argument is a ``TypeError``, so this is
    one. ``errors`` lists each offending place as ``(path, problem)``, e.g.
    ``("lines[0].qty", "expected int, got str 'two'")``; the message says
    them all. Raised on the server before the function runs, and by both
    clients as a remote error (also a ``RemoteError``).
    """

    def __init__(self, message: str, errors: Sequence[Sequence[str]] = ()) -> None:
        super().__init__(message)
        self.errors = [(str(path), str(problem)) for path, problem in errors]


class InvalidResult(TypeError):
    """A function returned a value that does not fit its return annotation."""


# -- Django's exceptions, raised remotely ------------------------------------------


class InvalidIdentity(PermissionDenied):
    """A call's identity token does not stand: malformed, signed otherwise, or expired."""


class RemoteErrorMixin(RemoteError):
    """RemoteError's attributes on a class that also derives from the caller's own exception.

    Constructed like a plain exception, so that the other class's
    ``super().__init__(...)`` lands here; ``set_remote`` fills in the rest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Exception.__init__(self, *args)

    def set_remote(self, name: str, message: str, traceback: str | None) -> None:
        self.name = name
        self.msg = message
        self.traceback = traceback


class RemoteDoesNotExist(ObjectDoesNotExist, RemoteErrorMixin):
    """The remote function raised ``ObjectDoesNotExist`` (``Model.DoesNotExist``)."""

    #: The model's label (``"tickets.Ticket"``), or None.
    model: str | None = None


class RemoteMultipleObjectsReturned(MultipleObjectsReturned, RemoteErrorMixin):
    """The remote function raised ``MultipleObjectsReturned``."""

    model: str | None = None


class RemotePermissionDenied(PermissionDenied, RemoteErrorMixin):
    """The remote function raised ``PermissionDenied``."""


class RemoteValidationError(ValidationError, RemoteErrorMixin):
    """The remote function raised ``ValidationError``; its messages, codes and fields are kept."""

    def __str__(self) -> str:
        return ValidationError.__str__(self)
