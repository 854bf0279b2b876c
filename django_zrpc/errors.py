"""The names django-zrpc 0.1 had here, kept importable; new code imports them from their homes.

``register_error`` is in ``django_zrpc.wire.remote_errors`` (and ``django_zrpc``),
the exception classes in ``django_zrpc.exceptions``.
"""

from django_zrpc.exceptions import (
    RemoteDoesNotExist,
    RemoteMultipleObjectsReturned,
    RemotePermissionDenied,
    RemoteValidationError,
)
from django_zrpc.wire.remote_errors import register_error

__all__ = [
    "RemoteDoesNotExist",
    "RemoteMultipleObjectsReturned",
    "RemotePermissionDenied",
    "RemoteValidationError",
    "register_error",
]
