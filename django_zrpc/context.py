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

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils import translation

#: Header keys of a call's first event that carry the caller's context.
REQUEST_ID = "request_id"
USER_ID = "user_id"
LANGUAGE = "language"


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


# What a request id may hold: it goes into log lines, so no line breaks.
_ID_RE = re.compile(r"^[\w.:@/+=-]{1,200}$", re.ASCII)


def _short(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID_RE.match(value) else None


def _user_id(value: Any) -> str | int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _short(value)


_current: ContextVar[CallContext | None] = ContextVar("django_zrpc.call", default=None)


def current_call() -> CallContext | None:
    """Return the context of the call being served here, or None outside a call."""
    return _current.get()


# -- the calling side ----------------------------------------------------------

_request: ContextVar[Any] = ContextVar("django_zrpc.request", default=None)


class RequestContextMiddleware:
    """Django middleware: give each request an id, and send it with the RPC calls it makes.

    The id is the request's ``X-Request-ID`` header when it has a usable one,
    else a new UUID; it is set as ``request.request_id`` and on the response's
    ``X-Request-ID``. Calls made while the request is served carry it, with the
    user's primary key when they are logged in. Sync and async: under ASGI an
    async view runs in the request's own task, not in a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            _request.reset(token)
        return self._end(request, response)

    async def __acall__(self, request: Any) -> Any:
        token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            _request.reset(token)
        return self._end(request, response)

    def _begin(self, request: Any) -> Any:
        request.request_id = _short(request.META.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex
        return _request.set(request)

    def _end(self, request: Any, response: Any) -> Any:
        if not response.has_header("X-Request-ID"):
            response["X-Request-ID"] = request.request_id
        return response


def outgoing() -> dict[str, Any]:
    """Return the header entries for a call made now.

    Inside an RPC function: the context of the call it serves, so nested calls
    carry it on. Inside a request under ``RequestContextMiddleware``: its id
    and user. In either, the active language, when the project uses
    translation. Elsewhere (a script, a worker, a benchmark): nothing, at the
    cost of two context-variable reads.
    """
    call = _current.get()
    request: Any = _request.get() if call is None else None
    if call is None and request is None:
        return {}
    user = getattr(request, "user", None) if request is not None else None
    return _header(call, request, user)


async def outgoing_async() -> dict[str, Any]:
    """Return ``outgoing()`` for a call made from a coroutine (an async view).

    The request's user is read with ``await request.auser()`` (Django 5.0+):
    reading a lazy ``request.user`` there would query the session
    synchronously, which Django forbids in an event loop.
    """
    call = _current.get()
    request: Any = _request.get() if call is None else None
    if call is None and request is None:
        return {}
    user = None
    if request is not None:
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else getattr(request, "user", None)
    return _header(call, request, user)


def _header(call: CallContext | None, request: Any, user: Any) -> dict[str, Any]:
    header: dict[str, Any] = {}
    if call is not None:
        if call.request_id is not None:
            header[REQUEST_ID] = call.request_id
        if call.user_id is not None:
            header[USER_ID] = call.user_id
    else:
        header[REQUEST_ID] = request.request_id
        if user is not None and user.is_authenticated:
            user_id = _user_id(user.pk)
            header[USER_ID] = str(user.pk) if user_id is None else user_id
    # The core client also runs without Django settings (a plain script).
    if settings.configured and settings.USE_I18N:
        language = translation.get_language()
        if language:
            header[LANGUAGE] = language
    return header


class CallContextFilter(logging.Filter):
    """A logging filter that adds ``request_id``, ``user_id`` and ``rpc`` to every record.

    Each is the value of the call being served (or of the request, for
    ``request_id``), or ``"-"``, so a format such as
    ``"%(levelname)s [%(request_id)s] %(message)s"`` always works.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        call = _current.get()
        request = _request.get()
        request_id = call.request_id if call is not None else None
        if request_id is None and request is not None:
            request_id = getattr(request, "request_id", None)
        record.request_id = request_id or "-"
        user_id = call.user_id if call is not None else None
        record.user_id = "-" if user_id is None else user_id
        record.rpc = call.function if call is not None else "-"
        return True
