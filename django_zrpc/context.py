"""What an RPC function can know about the call it serves: ``current_call()``.

    from django_zrpc import current_call

    @rpc.register()
    def delete_ticket(id):
        call = current_call()
        if call.client_key != "backoffice":
            raise PermissionDenied("Only the back office deletes tickets.")

The server sets the context for each call, in the greenlet (or, for
``blocking=True``, the thread) that runs the function, and for the whole of a
stream; outside a call ``current_call()`` returns None.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

#: Header keys of a call's first event that carry the caller's context.
REQUEST_ID = "request_id"
USER_ID = "user_id"
LANGUAGE = "language"
_MAX_LEN = 200


@dataclass(frozen=True)
class CallContext:
    """One call as its function sees it."""

    #: The name the function was called by.
    function: str
    #: The name of the caller's CURVE key (its file name in the allow-list
    #: folder, without ``.key``); None when the server runs without CURVE.
    client_key: str | None = None
    #: The id of the request that led to this call, as the caller sent it.
    request_id: str | None = None
    #: The calling user's id (``request.user.pk``), if the caller sent one.
    user_id: str | int | None = None
    #: The caller's active language (``get_language()``), if it sent one.
    language: str | None = None

    @classmethod
    def from_header(
        cls, function: str, header: dict[str, Any], client_key: str | None
    ) -> CallContext:
        """Build the context from an event header; values of the wrong shape are left out."""
        return cls(
            function,
            client_key,
            _short(header.get(REQUEST_ID)),
            _user_id(header.get(USER_ID)),
            _short(header.get(LANGUAGE)),
        )


def _short(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_LEN else None


def _user_id(value: Any) -> str | int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _short(value)


_current: ContextVar[CallContext | None] = ContextVar("django_zrpc.call", default=None)


def current_call() -> CallContext | None:
    """Return the context of the call being served here, or None outside a call."""
    return _current.get()
