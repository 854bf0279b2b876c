"""Where ``RPCClient`` meets the OpenTelemetry integration, without importing OpenTelemetry.

``RPCClient.call`` is wrapped by ``traced``, ``AsyncRPCClient.call`` by
``traced_async``: when tracing is off (see ``conf.opentelemetry_enabled``) a
call costs one global read more, and while no tracer provider is set (the API
alone, no SDK) one clock read more; when it is on,
``django_zrpc.contrib.opentelemetry`` makes the call's CLIENT span.
Which it is is decided at the first call, and again when
``ZRPC_OPENTELEMETRY`` changes (``override_settings`` in tests).

The same wrapping lets developer tools see and answer calls: while an
observer is added (``add_observer``, the debug toolbar's panel) or an
answerer is set (``set_answerer``, ``rpc_mock``), calls go through
``client.observed.Observing`` in front of the tracer; with neither, calls
cost what they did before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed

from django_zrpc import conf
from django_zrpc.client.observed import CallRecord, Observing
from django_zrpc.metrics.table import native_allocate_lock

_Call = TypeVar("_Call", bound=Callable[..., Any])

# What calls go through: the integration's client tracer, or an Observing in
# front of it; None: neither is on; _UNKNOWN: not decided yet.
_UNKNOWN: Any = object()
_client_tracer: Any = _UNKNOWN
# The integration's client tracer alone, decided once per ZRPC_OPENTELEMETRY.
_otel_tracer: Any = _UNKNOWN
# The observers, each with how many times it was added (one per request
# that a panel records), and the answerer; read only when deciding.
_observers: dict[Callable[[CallRecord], None], int] = {}
_answerer: Any = None


# The first calls of a process may come from many threads at once: one
# decides, the others wait for it (the interpreter's lock: nothing here
# yields to another greenlet while it is held).
_decide_lock = native_allocate_lock()()


def client_tracer() -> Any:
    """Return what calls go through (the tracer, or an observer of calls), or None."""
    global _client_tracer, _otel_tracer
    tracer = _client_tracer
    if tracer is _UNKNOWN:
        with _decide_lock:
            if _otel_tracer is _UNKNOWN:
                made = None
                if conf.opentelemetry_enabled():
                    from django_zrpc.contrib.opentelemetry import ClientTracer

                    made = ClientTracer()
                _otel_tracer = made
            if _client_tracer is _UNKNOWN:
                _client_tracer = _otel_tracer
                if _observers or _answerer is not None:
                    _client_tracer = Observing(_otel_tracer, tuple(_observers), _answerer)
            tracer = _client_tracer
    return tracer


def add_observer(observer: Callable[[CallRecord], None]) -> None:
    """Have ``observer(record)`` called as each call starts, until ``remove_observer``.

    The ``CallRecord`` is filled in as the call ends. Added twice, it runs
    once, and is removed by as many ``remove_observer``.
    """
    global _client_tracer
    with _decide_lock:
        _observers[observer] = _observers.get(observer, 0) + 1
        _client_tracer = _UNKNOWN


def remove_observer(observer: Callable[[CallRecord], None]) -> None:
    """Undo one ``add_observer(observer)``."""
    global _client_tracer
    with _decide_lock:
        left = _observers.pop(observer, 0) - 1
        if left > 0:
            _observers[observer] = left
        _client_tracer = _UNKNOWN


def set_answerer(answerer: Any) -> Any:
    """Have ``answerer`` answer every call in place of the servers (None: stop); return the last.

    ``answerer.call(client, name, *args, **options)`` for ``RPCClient``,
    ``await answerer.call_async(...)`` for ``AsyncRPCClient``.
    """
    global _client_tracer, _answerer
    with _decide_lock:
        previous, _answerer = _answerer, answerer
        _client_tracer = _UNKNOWN
    return previous


def traced(call: _Call) -> _Call:
    """Wrap ``RPCClient.call``: one CLIENT span per logical call, its retries included."""

    @functools.wraps(call)
    def traced_call(self: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
        tracer = client_tracer()
        if tracer is None or not tracer.active():
            return call(self, name, *args, **kwargs)
        return tracer.trace(call, self, name, args, kwargs)

    return traced_call  # type: ignore[return-value]


def traced_async(call: _Call) -> _Call:
    """``traced`` for ``AsyncRPCClient.call``, a coroutine function."""

    @functools.wraps(call)
    async def traced_call(self: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
        tracer = client_tracer()
        if tracer is None or not tracer.active():
            return await call(self, name, *args, **kwargs)
        return await tracer.trace_async(call, self, name, args, kwargs)

    return traced_call  # type: ignore[return-value]


def attempt(endpoint: str) -> None:
    """Note the endpoint an attempt of the call under way goes to (``server.address``)."""
    tracer = _client_tracer
    if tracer is not None and tracer is not _UNKNOWN:
        tracer.attempt(endpoint)


def _forget_tracer(setting: str, **kwargs: Any) -> None:
    global _client_tracer, _otel_tracer
    if setting == "ZRPC_OPENTELEMETRY":
        _client_tracer = _otel_tracer = _UNKNOWN


setting_changed.connect(_forget_tracer, dispatch_uid="django_zrpc.tracing")
