"""Calls seen by observers (the debug toolbar's panel) and answered by a stand-in (``rpc_mock``).

``client/tracing.py`` puts an ``Observing`` in front of both clients' calls
only while an observer or an answerer is set, so that a process with neither
pays nothing for it. Each call becomes a ``CallRecord``, handed to the
observers when it starts and filled in as it ends: for a stream, at its last
item, its error or its close.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from django_zrpc import context
from django_zrpc.client.streams import ClosingAsyncIterator
from django_zrpc.exceptions import TimeoutExpired

#: The options of ``call`` itself, left out of the function's own keyword arguments.
CALL_OPTIONS = ("timeout", "idempotent", "kwargs")

# The record of the call under way in this task or greenlet, for its attempts.
_current: ContextVar[CallRecord | None] = ContextVar("django_zrpc.observed", default=None)


class CallRecord:
    """One call made through ``RPCClient`` or ``AsyncRPCClient``, as observers see it."""

    def __init__(
        self, client: Any, name: str, args: tuple[Any, ...], options: dict[str, Any]
    ) -> None:
        self.function = name
        self.client_endpoints: list[str] = list(getattr(client, "endpoints", ()))
        #: The endpoint of each attempt, in order: more than one means it was retried.
        self.endpoints: list[str] = []
        self.args = args
        self.kwargs = function_kwargs(options)
        self.request_id = _request_id()
        self.caller = _caller()
        self.started = time.perf_counter()
        self.duration: float | None = None  # seconds, once it ended
        self.result: Any = None
        self.error: BaseException | None = None
        self.stream = False
        self.items = 0
        #: Answered by a stand-in (``rpc_mock``), not by a server.
        self.mocked = False

    @property
    def retried(self) -> bool:
        return len(self.endpoints) > 1

    @property
    def timed_out(self) -> bool:
        return isinstance(self.error, TimeoutExpired)

    @property
    def done(self) -> bool:
        return self.duration is not None

    def end(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.duration is None:
            self.duration = time.perf_counter() - self.started
            self.result = result
            self.error = error


def function_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments a call passes to its function, ``call``'s own left out."""
    found = dict(options.get("kwargs") or {})
    found.update((key, value) for key, value in options.items() if key not in CALL_OPTIONS)
    return found


def _request_id() -> str | None:
    """The request id the call carries to the server (it logs it), as ``context.outgoing`` does."""
    call = context.current_call()
    if call is not None:
        return call.request_id
    # The request being served here, which RequestContextMiddleware sets.
    request = context._request.get()
    return getattr(request, "request_id", None)


def _caller() -> str:
    """Return ``path:line`` of the first frame outside django_zrpc: where the call was made."""
    frame = sys._getframe(2)
    for _ in range(50):
        if frame is None:
            break
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("django_zrpc.", "asyncio", "asgiref", "contextlib")):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


class Observing:
    """What the clients call through while observers or an answerer are set.

    ``inner`` is the OpenTelemetry tracer when tracing is on; ``answer`` (a
    stand-in such as ``rpc_mock``) answers calls in place of the server.
    """

    def __init__(
        self, inner: Any, observers: tuple[Callable[[CallRecord], None], ...], answer: Any
    ) -> None:
        self.inner = inner
        self.observers = observers
        self.answer = answer

    def active(self) -> bool:
        return True

    def _start(self, client: Any, name: str, options: dict[str, Any]) -> CallRecord:
        record = CallRecord(client, name, (), options)
        record.mocked = self.answer is not None
        for observer in self.observers:
            observer(record)
        return record

    def trace(self, call: Any, client: Any, name: str, args: Any, kwargs: Any) -> Any:
        record = self._start(client, name, kwargs)
        record.args = args
        if self.answer is not None:
            call = self.answer.call
        token = _current.set(record)
        try:
            inner = self.inner
            if inner is not None and inner.active():
                result = inner.trace(call, client, name, args, kwargs)
            else:
                result = call(client, name, *args, **kwargs)
        except BaseException as err:
            record.end(error=err)
            raise
        finally:
            _current.reset(token)
        if isinstance(result, Iterator):
            record.stream = True
            return ObservedStream(result, record)
        record.end(result)
        return result

    async def trace_async(self, call: Any, client: Any, name: str, args: Any, kwargs: Any) -> Any:
        record = self._start(client, name, kwargs)
        record.args = args
        if self.answer is not None:
            call = self.answer.call_async
        token = _current.set(record)
        try:
            inner = self.inner
            if inner is not None and inner.active():
                result = await inner.trace_async(call, client, name, args, kwargs)
            else:
                result = await call(client, name, *args, **kwargs)
        except BaseException as err:
            record.end(error=err)
            raise
        finally:
            _current.reset(token)
        if isinstance(result, AsyncIterator):
            record.stream = True
            return ObservedAsyncStream(result, record)
        record.end(result)
        return result

    def attempt(self, endpoint: str) -> None:
        record = _current.get()
        if record is not None:
            record.endpoints.append(endpoint)
        inner = self.inner
        if inner is not None:
            inner.attempt(endpoint)


class ObservedStream(Iterator[Any]):
    """A stream whose record ends with it, counting its items."""

    def __init__(self, stream: Iterator[Any], record: CallRecord) -> None:
        self._stream = stream
        self._record = record

    def __next__(self) -> Any:
        try:
            item = next(self._stream)
        except StopIteration:
            self._record.end()
            raise
        except BaseException as err:
            self._record.end(error=err)
            raise
        self._record.items += 1
        return item

    def close(self) -> None:
        self._record.end()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        # What the client's own stream offers beside iteration.
        return getattr(self._stream, name)


class ObservedAsyncStream(ClosingAsyncIterator):
    """``ObservedStream`` for ``AsyncRPCClient``'s streams."""

    def __init__(self, stream: AsyncIterator[Any], record: CallRecord) -> None:
        self._stream = stream
        self._record = record

    async def __anext__(self) -> Any:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._record.end()
            raise
        except BaseException as err:
            self._record.end(error=err)
            raise
        self._record.items += 1
        return item

    def close(self) -> None:
        self._record.end()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
