"""OpenTelemetry traces: a CLIENT span per client call, a SERVER span per call served.

The clients are ``RPCClient`` and ``AsyncRPCClient``.

On whenever opentelemetry-api is installed (``ZRPC_OPENTELEMETRY = None``,
the default; ``False`` turns it off). Spans go wherever the process's tracer
provider sends them: configure the SDK as usual (a ``TracerProvider`` set in
settings.py, or ``opentelemetry-instrument``); until a provider is set,
nothing is done (a few hundred nanoseconds a call).

Spans follow OpenTelemetry's semantic conventions for RPC (v1.2x, the
``rpc.system`` generation): named after the function, ``rpc.system`` =
``zerorpc``, ``rpc.method``, ``server.address`` and ``server.port`` on the
client, error status and ``error.type`` on failure (the remote exception's
name, ``DeadlineExceeded``, ``TimeoutExpired`` ...). A stream is one span,
ended when the stream ends or is closed, with its item count in
``rpc.zerorpc.stream.items``.

The client span covers one logical call, its retries included (a refused
attempt never ran, so no server span hangs under it; ``server.address`` is
the endpoint of the last attempt). Its W3C ``traceparent``/``tracestate`` go
in the zerorpc header beside the call's context (``request_id`` ...); the
server span is its child and is current while the function runs, so the
spans of the function's queries and nested calls nest under it. A call from
a stock zerorpc client carries none: its server span starts a new trace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar, Token
from typing import Any

from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed

from django_zrpc import __version__, conf, context
from django_zrpc.client.streams import ClosingAsyncIterator

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImproperlyConfigured(
        "django_zrpc.contrib.opentelemetry needs opentelemetry-api: "
        'pip install "django-zrpc[opentelemetry]"'
    ) from err

SYSTEM = "zerorpc"
#: The attribute that holds the number of items a stream sent or received.
STREAM_ITEMS = "rpc.zerorpc.stream.items"

_tracer = trace.get_tracer("django_zrpc", __version__)


_provider_set = False
_next_look = 0.0


def _configured() -> bool:
    """Whether a tracer provider is set (the SDK's, say).

    Until one is, every span is a no-op: the API alone costs 10-16 us a
    call and side to make nothing, so nothing is done. A provider, once set,
    stays (the API sets one once), so only the positive answer is kept.
    """
    global _provider_set, _next_look
    if not _provider_set:
        # Asking costs 1.5 us (the API reads an environment variable each
        # time): a provider set later counts from the next look, within 1 s.
        now = time.monotonic()
        if now < _next_look:
            return False
        _next_look = now + 1.0
        _provider_set = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    return _provider_set


class _HeaderGetter(Getter[dict[str, Any]]):
    """Read trace context from a zerorpc header, whose values a peer may have sent of any type."""

    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


_getter = _HeaderGetter()


def inject(header: dict[str, Any]) -> None:
    """Add the current trace context to a call's header (a ``context`` header writer)."""
    if _configured():
        propagate.inject(header)


def endpoint_attributes(endpoint: str) -> dict[str, Any]:
    """Return ``server.address``, ``server.port`` and ``network.transport`` of a ZeroMQ endpoint."""
    transport, _, where = endpoint.partition("://")
    if transport == "ipc":
        return {"server.address": where, "network.transport": "unix"}
    host, _, port = where.rpartition(":")
    attributes: dict[str, Any] = {"server.address": host.strip("[]") or where}
    if port.isdigit():
        attributes["server.port"] = int(port)
    if transport == "tcp":
        attributes["network.transport"] = "tcp"
    return attributes


def _server_span(request_event: Any, parent: Any) -> Span:
    """Start the SERVER span of a call, child of the caller's span in ``parent``."""
    return _tracer.start_span(
        request_event.name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": SYSTEM, "rpc.method": request_event.name},
    )


def _fail(span: Span, error_type: str, message: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message[:500]))


def _error_type(error: BaseException) -> str:
    # A remote error is named after the server's exception, not RemoteError.
    return getattr(error, "name", None) or type(error).__qualname__


# -- the calling side ----------------------------------------------------------


class ClientTracer:
    """Make the CLIENT span of each ``RPCClient`` call (see ``django_zrpc.client.tracing``)."""

    def __init__(self) -> None:
        context.add_header_writer(inject)

    #: Whether spans are made: while no tracer provider is set, every span
    #: would be a no-op, and the call goes untraced.
    active = staticmethod(_configured)

    def trace(self, call: Any, client: Any, name: str, args: Any, kwargs: Any) -> Any:
        """Make ``call``'s CLIENT span (``active()`` said spans are made)."""
        span = self._start(client, name)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = call(client, name, *args, **kwargs)
        except BaseException as err:
            _fail(span, _error_type(err), str(err))
            span.end()
            raise
        finally:
            otel_context.detach(token)
        if isinstance(result, Iterator):
            return TracedStream(result, span)
        span.end()
        return result

    async def trace_async(self, call: Any, client: Any, name: str, args: Any, kwargs: Any) -> Any:
        """``trace`` for ``AsyncRPCClient.call``, a coroutine: the span is current in its task."""
        span = self._start(client, name)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = await call(client, name, *args, **kwargs)
        except BaseException as err:
            _fail(span, _error_type(err), str(err))
            span.end()
            raise
        finally:
            otel_context.detach(token)
        if isinstance(result, AsyncIterator):
            return TracedAsyncStream(result, span)
        span.end()
        return result

    def _start(self, client: Any, name: str) -> Span:
        attributes = {"rpc.system": SYSTEM, "rpc.method": name}
        if len(client.endpoints) == 1:
            attributes.update(endpoint_attributes(client.endpoints[0]))
        return _tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    def attempt(self, endpoint: str) -> None:
        if not _provider_set:
            return  # no provider: no span records (asking for it cost 1 us a call)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(endpoint_attributes(endpoint))


class _StreamSpan:
    """The CLIENT span of a stream: ended once, at its end, its error or its close."""

    def __init__(self, span: Span) -> None:
        self._span: Span | None = span
        self._items = 0

    def _end(self, error: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        span.set_attribute(STREAM_ITEMS, self._items)
        if error is not None:
            _fail(span, _error_type(error), str(error))
        span.end()


class TracedStream(_StreamSpan, Iterator[Any]):
    """A stream whose CLIENT span ends with it: at its end, its error, or ``close()``."""

    def __init__(self, stream: Iterator[Any], span: Span) -> None:
        super().__init__(span)
        self._stream = stream

    def __next__(self) -> Any:
        try:
            item = next(self._stream)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as err:
            self._end(err)
            raise
        self._items += 1
        return item

    def close(self) -> None:
        """Abandon the stream; the server gives the call up."""
        try:
            self._stream.close()  # type: ignore[attr-defined]
        finally:
            self._end(None)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class TracedAsyncStream(_StreamSpan, ClosingAsyncIterator):
    """An ``AsyncRPCClient`` stream whose CLIENT span ends with it, as ``TracedStream``'s."""

    def __init__(self, stream: AsyncIterator[Any], span: Span) -> None:
        super().__init__(span)
        self._stream = stream

    async def __anext__(self) -> Any:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as err:
            self._end(err)
            raise
        self._items += 1
        return item

    def close(self) -> None:
        """Abandon the stream; the server gives the call up."""
        try:
            self._stream.close()  # type: ignore[attr-defined]
        finally:
            self._end(None)


# -- the serving side ------------------------------------------------------------


class _Served:
    """The SERVER span of the call a worker runs, and how to put the context back."""

    __slots__ = ("failed", "items", "span", "token")

    def __init__(self, span: Span, token: Token[otel_context.Context]) -> None:
        self.span = span
        self.token = token
        self.items = 0
        self.failed = False


# Per worker greenlet (gevent gives each greenlet its own context), as are
# the hooks of one call: before_exec, stream items, after_call.
_served: ContextVar[_Served | None] = ContextVar("django_zrpc.otel_served", default=None)


class OpenTelemetryMiddleware:
    """Server middleware: a SERVER span per call, the caller's span its parent."""

    def __init__(self) -> None:
        if not conf.opentelemetry_enabled():
            raise MiddlewareNotUsed("ZRPC_OPENTELEMETRY is False.")
        # Nested calls made with the core Client carry the trace on too.
        context.add_header_writer(inject)

    def server_before_exec(self, request_event: Any) -> None:
        if not _configured():
            return
        parent = propagate.extract(request_event.header, getter=_getter)
        span = _server_span(request_event, parent)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        _served.set(_Served(span, token))

    def server_stream_item(self, request_event: Any) -> None:
        served = _served.get()
        if served is not None:
            served.items += 1

    def server_after_exec(self, request_event: Any, reply_event: Any) -> None:
        served = _served.get()
        if served is not None and reply_event.name == "STREAM_DONE":
            served.span.set_attribute(STREAM_ITEMS, served.items)

    def server_inspect_exception(
        self, request_event: Any, reply_event: Any, task_context: Any, exc_info: Any
    ) -> None:
        served = _served.get()
        if served is not None:
            served.failed = True
            served.span.record_exception(exc_info[1])
            _fail(served.span, type(exc_info[1]).__qualname__, str(exc_info[1]))

    def server_after_call(self, request_event: Any, exc_info: Any) -> None:
        served = _served.get()
        if served is None:
            return  # the function was not found: no span began
        _served.set(None)
        try:
            if served.items:
                served.span.set_attribute(STREAM_ITEMS, served.items)
            if exc_info is not None and not served.failed:
                _interrupted(served.span, exc_info[1])
            served.span.end()
        finally:
            otel_context.detach(served.token)

    def server_call_expired(self, request_event: Any) -> None:
        """Record a call dropped unstarted, its caller gone, as a failed span of its trace."""
        if not _configured():
            return
        span = _server_span(request_event, propagate.extract(request_event.header, getter=_getter))
        _fail(span, "DeadlineExceeded", "The caller's deadline passed before the call started.")
        span.end()


def _interrupted(span: Span, error: BaseException) -> None:
    """Mark a span whose call was stopped from outside: deadline, lost caller, server stopping."""
    # Here, not at the top: the server's calls load gevent, which an asyncio
    # process tracing AsyncRPCClient's calls must not.
    from django_zrpc.server.calls import CANCELLED, DEADLINE_PASSED, CallLost

    reason = str(error)
    if isinstance(error, CallLost) and reason == CANCELLED:
        # The caller closed a stream it had read enough of: not a failure.
        span.set_attribute("rpc.zerorpc.cancelled", True)
        return
    if isinstance(error, CallLost) and reason == DEADLINE_PASSED:
        _fail(span, "DeadlineExceeded", "The call ran past its caller's deadline.")
        return
    _fail(span, type(error).__qualname__, reason or "The call was interrupted.")
