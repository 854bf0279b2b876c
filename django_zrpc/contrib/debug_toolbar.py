"""``RPCPanel``: the RPC calls a request made, in django-debug-toolbar.

    DEBUG_TOOLBAR_PANELS = [
        ...,
        "django_zrpc.contrib.debug_toolbar.RPCPanel",
    ]

Every call made through ``RPCClient`` or ``AsyncRPCClient`` while the
request is served, in order: function, endpoint, arguments and result
(shortened, the whole value on click), time, outcome, stream items and the
request id the server logs. The side bar says "3 calls in 4.2 ms". As the
SQL panel does, calls repeated with the same arguments are highlighted as
duplicates, and a function called more than once from the same line is
flagged as called in a loop. The calls are observed only while the toolbar
records a request (``client/tracing.py``): none of this runs otherwise.
"""

from __future__ import annotations

import pprint
from collections import Counter
from contextvars import ContextVar, Token
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

try:
    from debug_toolbar.panels import Panel
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImproperlyConfigured(
        "django_zrpc.contrib.debug_toolbar needs django-debug-toolbar: "
        'pip install "django-zrpc[debug-toolbar]"'
    ) from err

from django_zrpc.client import tracing
from django_zrpc.client.observed import CallRecord

__all__ = ["RPCPanel"]

#: Characters of an argument list or a result shown in the table; the rest on click.
SHORT = 60
#: Characters of a value shown at all: a page of a panel, not a dump.
FULL = 10_000

# The calls of the request the toolbar records in this task or thread.
_calls: ContextVar[list[CallRecord] | None] = ContextVar("django_zrpc.toolbar", default=None)


def _record(record: CallRecord) -> None:
    calls = _calls.get()
    if calls is not None:
        calls.append(record)


class RPCPanel(Panel):
    """The RPC calls of a request: what was called, where, with what, and how it went."""

    title = _("RPC calls")
    nav_title = _("RPC")
    template = "django_zrpc/debug_toolbar/rpc.html"
    is_async = True

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        count = stats.get("count", 0)
        calls = ngettext("%(count)d call", "%(count)d calls", count) % {"count": count}
        return f"{calls} in {stats.get('total_ms', 0):.1f} ms"

    def enable_instrumentation(self) -> None:
        self._calls: list[CallRecord] = []
        self._token: Token[list[CallRecord] | None] | None = _calls.set(self._calls)
        tracing.add_observer(_record)

    def disable_instrumentation(self) -> None:
        tracing.remove_observer(_record)
        token, self._token = getattr(self, "_token", None), None
        if token is not None:
            try:
                _calls.reset(token)
            except ValueError:  # set in another context (an async toolbar's)
                _calls.set(None)

    def generate_stats(self, request: Any, response: Any) -> None:
        self.record_stats(summarize(getattr(self, "_calls", [])))


def summarize(records: list[CallRecord]) -> dict[str, Any]:
    """Return the panel's stats of ``records``: JSON-ready, as the toolbar's store keeps them."""
    same_call = Counter(_identity(record) for record in records)
    same_line = Counter((record.function, record.caller) for record in records)
    calls: list[dict[str, Any]] = []
    for index, record in enumerate(records, 1):
        duplicates = same_call[_identity(record)]
        repeats = same_line[(record.function, record.caller)]
        calls.append(
            {
                "index": index,
                "function": record.function,
                "endpoint": ", ".join(record.endpoints or record.client_endpoints),
                "attempts": len(record.endpoints),
                "retried": record.retried,
                "arguments": _shown(_arguments(record)),
                # A stream's items are the view's, read as it iterates: the count shows.
                "result": None if record.error or record.stream else _shown(record.result),
                "ms": round((record.duration or 0) * 1000, 3),
                "done": record.done,
                "outcome": _outcome(record),
                "error": _error(record),
                "timed_out": record.timed_out,
                "stream": record.stream,
                "items": record.items,
                "request_id": record.request_id or "",
                "mocked": record.mocked,
                "caller": record.caller,
                "duplicate_count": duplicates if duplicates > 1 else 0,
                "loop_count": repeats if repeats > 1 else 0,
            }
        )
    return {
        "calls": calls,
        "count": len(calls),
        "total_ms": round(sum(call["ms"] for call in calls), 3),
        "duplicates": sum(1 for call in calls if call["duplicate_count"]),
        "in_loops": sum(1 for call in calls if call["loop_count"]),
    }


def _identity(record: CallRecord) -> tuple[str, str]:
    return record.function, _text(_arguments(record), FULL)


def _arguments(record: CallRecord) -> Any:
    args = ", ".join(repr(arg) for arg in record.args)
    kwargs = ", ".join(f"{key}={value!r}" for key, value in record.kwargs.items())
    return _Raw(", ".join(part for part in (args, kwargs) if part))


class _Raw(str):
    """Text shown as it is, not as its repr."""


def _text(value: Any, limit: int) -> str:
    text = str(value) if isinstance(value, _Raw) else pprint.pformat(value, width=100)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _shown(value: Any) -> dict[str, str]:
    full = _text(value, FULL)
    short = full.replace("\n", " ")
    return {"short": _text(_Raw(short), SHORT), "full": full, "cut": str(len(full) > SHORT)}


def _outcome(record: CallRecord) -> str:
    if not record.done:
        return "open"  # a stream the view had not finished reading
    if record.error is None:
        return "ok"
    return "timed out" if record.timed_out else "error"


def _error(record: CallRecord) -> str:
    error = record.error
    if error is None:
        return ""
    # A remote error's class name is the server's (zerorpc's RemoteError.name).
    name = getattr(error, "name", None) or type(error).__name__
    message = getattr(error, "msg", None) or str(error)
    return _text(_Raw(f"{name}: {message}"), 500)
