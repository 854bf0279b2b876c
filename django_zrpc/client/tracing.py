"""Where ``RPCClient`` meets the OpenTelemetry integration, without importing OpenTelemetry.

``RPCClient.call`` is wrapped by ``traced``, ``AsyncRPCClient.call`` by
``traced_async``: when tracing is off (see ``conf.opentelemetry_enabled``) a
call costs one global read more, and while no tracer provider is set (the API
alone, no SDK) one clock read more; when it is on,
``django_zrpc.contrib.opentelemetry`` makes the call's CLIENT span.
Which it is is decided at the first call, and again when
``ZRPC_OPENTELEMETRY`` changes (``override_settings`` in tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed

from django_zrpc import conf
from django_zrpc.metrics.table import native_allocate_lock

_Call = TypeVar("_Call", bound=Callable[..., Any])

# The integration's client tracer; None: tracing is off; _UNKNOWN: not decided yet.
_UNKNOWN: Any = object()
_client_tracer: Any = _UNKNOWN


# The first calls of a process may come from many threads at once: one
# decides, the others wait for it (the interpreter's lock: nothing here
# yields to another greenlet while it is held).
_decide_lock = native_allocate_lock()()


def client_tracer() -> Any:
    """Return the OpenTelemetry client tracer, or None when tracing is off."""
    global _client_tracer
    tracer = _client_tracer
    if tracer is _UNKNOWN:
        with _decide_lock:
            if _client_tracer is _UNKNOWN:
                made = None
                if conf.opentelemetry_enabled():
                    from django_zrpc.contrib.opentelemetry import ClientTracer

                    made = ClientTracer()
                _client_tracer = made
            tracer = _client_tracer
    return tracer


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
    global _client_tracer
    if setting == "ZRPC_OPENTELEMETRY":
        _client_tracer = _UNKNOWN


setting_changed.connect(_forget_tracer, dispatch_uid="django_zrpc.tracing")
