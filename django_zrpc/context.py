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

Users: a call made for a user carries a signed token (``django_zrpc.identity``)
naming the user and the function; ``current_call().user_id`` is the id it
vouches for, never an unsigned claim, and ``current_call().user`` the user,
read from this process's database when first asked for.

Deadlines: a django_zrpc caller sends the seconds it will still
wait (``time_left``), never a clock time, as hosts' clocks differ; the server
turns it into a deadline on its own monotonic clock when the call arrives.
``current_call().time_left()`` says what is left of it, and a call made from
inside an RPC function waits no longer than that.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils import translation

from django_zrpc import identity

#: Header keys of a call's first event that carry the caller's context.
REQUEST_ID = "request_id"
#: The signed user (``identity.HEADER``); a bare ``user_id`` is not read.
IDENTITY = identity.HEADER
LANGUAGE = "language"
#: The seconds the caller will still wait for the reply (its remaining timeout).
TIME_LEFT = "time_left"

#: A caller that would wait longer than this (a week) is taken to set no deadline.
MAX_TIME_LEFT = 7 * 24 * 3600.0

#: The least time left a nested call is given: past its caller's deadline it
#: fails at once (``TimeoutExpired``) rather than not being sent at all.
MIN_TIME_LEFT = 0.001


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
    #: The calling user's id (``request.user.pk``), when the call carries a
    #: token that verified for this function; None for an anonymous call.
    user_id: str | int | None = None
    #: The caller's active language (``get_language()``), if it sent one.
    language: str | None = None
    #: When the caller stops waiting, on this host's ``time.monotonic()``
    #: clock; None when it sent no deadline (a stock zerorpc client), and for
    #: a stream once its first item is sent (its reader waits only for that).
    deadline: float | None = None
    #: Why the call's identity token does not stand (the call is refused);
    #: None when it does, or when the call carries none.
    identity_error: str | None = None

    @cached_property
    def user(self) -> Any:
        """The calling user, loaded from this process's database once, when first read.

        ``AnonymousUser`` for an anonymous call, and for a user who is
        inactive or no longer exists.
        """
        return identity.load_user(self.user_id)

    @classmethod
    def from_header(
        cls,
        function: str,
        header: dict[str, Any],
        client_key: str | None,
        deadline: float | None = None,
    ) -> CallContext:
        """Build the context from an event header; values of the wrong shape are left out."""
        user_id, error = identity.verified(header.get(IDENTITY), function, client_key)
        return cls(
            function,
            client_key,
            _short(header.get(REQUEST_ID)),
            user_id,
            _short(header.get(LANGUAGE)),
            deadline,
            error,
        )

    def time_left(self) -> float | None:
        """Return the seconds until the caller stops waiting (maybe negative); None: no deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()


def deadline_from(header: dict[str, Any], now: float) -> float | None:
    """Return the deadline a request's ``time_left`` sets, on the clock ``now`` reads; None: none.

    A value that is not a number, or is not finite, or is past
    ``MAX_TIME_LEFT``, sets none: the server's own limits apply, as for a
    stock zerorpc caller.
    """
    value = header.get(TIME_LEFT)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (math.isfinite(value) and value <= MAX_TIME_LEFT):
        return None
    return now + max(float(value), 0.0)


def inherited_timeout(timeout: float) -> float:
    """Return ``timeout``, cut to what is left of the deadline of the call served here.

    A call made from inside an RPC function is of no use once that
    function's caller has stopped waiting.
    """
    call = _current.get()
    if call is None or call.deadline is None:
        return timeout
    return max(min(timeout, call.deadline - time.monotonic()), MIN_TIME_LEFT)


# What a request id may hold: it goes into log lines, so no line breaks.
_ID_RE = re.compile(r"^[\w.:@/+=-]{1,200}$", re.ASCII)


def _short(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID_RE.match(value) else None


_current: ContextVar[CallContext | None] = ContextVar("django_zrpc.call", default=None)


def current_call() -> CallContext | None:
    """Return the context of the call being served here, or None outside a call."""
    return _current.get()


# -- the calling side ----------------------------------------------------------

_request: ContextVar[Any] = ContextVar("django_zrpc.request", default=None)

# The user that ``client.as_user(user)`` makes calls for (None: anonymous);
# _NOT_BOUND: the request's or the served call's, as usual.
_NOT_BOUND: Any = object()
_acting: ContextVar[Any] = ContextVar("django_zrpc.as_user", default=_NOT_BOUND)


#: Make the calls made from now on for a user id (None: anonymous); return
#: the token that ``stop_acting`` takes to undo it.
act_as = _acting.set
stop_acting = _acting.reset


@contextmanager
def acting_as(user_id: int | str | None) -> Iterator[None]:
    """Make the calls made inside the block for ``user_id`` (None: anonymous)."""
    token = _acting.set(user_id)
    try:
        yield
    finally:
        _acting.reset(token)


class RequestContextMiddleware:
    """Django middleware: give each request an id, and send it with the RPC calls it makes.

    The id is the request's ``X-Request-ID`` header when it has a usable one,
    else a new UUID; it is set as ``request.request_id`` and on the response's
    ``X-Request-ID``. Calls made while the request is served carry it, with the
    user's signed identity when they are logged in. Sync and async: under ASGI an
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


#: Functions that add entries to the header of every call made in this
#: process (the OpenTelemetry integration's trace context); see add_header_writer.
_header_writers: list[Callable[[dict[str, Any]], None]] = []
# Writers are added by the first calls, which may come from many threads.
_writers_lock = threading.Lock()


def add_header_writer(writer: Callable[[dict[str, Any]], None]) -> None:
    """Have ``writer(header)`` add its entries to the header of every call made from now on.

    How an optional integration rides along without the client knowing of
    it; a writer added twice runs once.
    """
    with _writers_lock:
        if writer not in _header_writers:
            # Replaced whole, never changed in place: calls read it unlocked.
            _header_writers[:] = [*_header_writers, writer]


def outgoing(timeout: float | None = None, function: str | None = None) -> dict[str, Any]:
    """Return the header entries for a call of ``function`` made now, that waits ``timeout``.

    The time left (``timeout``, cut to what is left of the deadline of the
    call served here), and what the header writers add. Inside an RPC
    function: the context of the call it serves, so nested calls carry it on.
    Inside a request under ``RequestContextMiddleware``: its id and user. In
    either, the active language, when the project uses translation. The user
    goes signed for ``function``; ``client.as_user(user)`` names another.
    """
    header = _common(timeout)
    call = _current.get()
    request: Any = _request.get() if call is None else None
    acting = _acting.get()
    if call is None and request is None:
        return _as_user_only(header, acting, function)
    user = _NOT_BOUND
    if acting is _NOT_BOUND and request is not None:
        user = getattr(request, "user", None)
    return _with_context(header, call, request, user, function)


async def outgoing_async(
    timeout: float | None = None, function: str | None = None
) -> dict[str, Any]:
    """Return ``outgoing(timeout)`` for a call made from a coroutine (an async view).

    The request's user is read with ``await request.auser()`` (Django 5.0+):
    reading a lazy ``request.user`` there would query the session
    synchronously, which Django forbids in an event loop.
    """
    header = _common(timeout)
    call = _current.get()
    request: Any = _request.get() if call is None else None
    acting = _acting.get()
    if call is None and request is None:
        return _as_user_only(header, acting, function)
    user = _NOT_BOUND
    if acting is _NOT_BOUND and request is not None:
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else getattr(request, "user", None)
    return _with_context(header, call, request, user, function)


def _common(timeout: float | None) -> dict[str, Any]:
    """The entries of every call: the time left, and what the header writers add."""
    header: dict[str, Any] = {}
    if timeout is not None:
        header[TIME_LEFT] = inherited_timeout(timeout)
    for write in _header_writers:
        write(header)
    return header


def _as_user_only(header: dict[str, Any], acting: Any, function: str | None) -> dict[str, Any]:
    """The header of a call made outside a request and a call: only ``as_user``'s user.

    No language, as for any call made there: looking it up costs more than
    the rest of the header (4 us).
    """
    if acting is not _NOT_BOUND and acting is not None and function is not None:
        header[IDENTITY] = identity.token_for(acting, function)
    return header


def _with_context(
    header: dict[str, Any],
    call: CallContext | None,
    request: Any,
    user: Any,
    function: str | None,
) -> dict[str, Any]:
    """Add the request id, the signed user and the language; ``user`` _NOT_BOUND: ``as_user``'s."""
    user_id: int | str | None = None
    if call is not None:
        if call.request_id is not None:
            header[REQUEST_ID] = call.request_id
        user_id = call.user_id
    elif request is not None:
        header[REQUEST_ID] = request.request_id
    if user is _NOT_BOUND:
        acting = _acting.get()
        if acting is not _NOT_BOUND:
            user_id = acting
    else:
        user_id = identity.user_id_of(user)
    if user_id is not None and function is not None:
        header[IDENTITY] = identity.token_for(user_id, function)
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
