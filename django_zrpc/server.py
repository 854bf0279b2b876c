"""Build a zerorpc server from the registry and the middleware list, and run it.

The server has its own ``zerorpc.Context`` (never the process-global one), so
middleware registered here does not leak into zerorpc clients in the same
process. Calls run on ``concurrency`` persistent worker greenlets rather than a
greenlet spawned per call: Django keeps one database connection per greenlet,
so only persistent workers let ``CONN_MAX_AGE`` reuse a connection, and their
number bounds the connections the server can open.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import gevent.local
import gevent.queue
import zerorpc
import zmq
from django.core.exceptions import MiddlewareNotUsed
from django.db import connections
from django.utils.module_loading import import_string
from zerorpc.decorators import DecoratorBase
from zerorpc.patterns import ReqRep, ReqStream

from django_zrpc import conf
from django_zrpc.exceptions import LostRemote
from django_zrpc.introspection import argspec
from django_zrpc.registry import RPCFunction, rpc

logger = logging.getLogger("django_zrpc.server")


class _Served(DecoratorBase):
    """A registered function as zerorpc serves it, with a Python 3 argspec."""

    def __init__(self, entry: RPCFunction) -> None:
        super().__init__(entry.func)
        self.pattern = ReqStream() if entry.stream else ReqRep()

    def _zerorpc_args(self) -> list[Any] | None:
        return argspec(self._functor)


# zerorpc's hook names (zerorpc.Context._hooks), which middleware may define.
ZERORPC_HOOKS = (
    "resolve_endpoint",
    "load_task_context",
    "get_task_context",
    "server_before_exec",
    "server_after_exec",
    "server_inspect_exception",
    "client_handle_remote_error",
    "client_before_request",
    "client_after_request",
    "client_patterns_list",
)


def _logged_errors(hook: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``hook`` so that an error in it is logged instead of raised.

    zerorpc calls ``server_inspect_exception`` outside its error handling: a
    hook that raises there (a Sentry client failing, say) would kill the task
    before the error reply is sent and leave the caller waiting.
    """

    def guarded(*args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("Middleware hook %r raised; the call goes on.", hook)

    return guarded


def _hooks_of(instance: Any) -> dict[str, Callable[..., Any]]:
    hooks = {name: getattr(instance, name) for name in ZERORPC_HOOKS if hasattr(instance, name)}
    if "server_inspect_exception" in hooks:
        hooks["server_inspect_exception"] = _logged_errors(hooks["server_inspect_exception"])
    return hooks


def load_middleware(paths: Sequence[str]) -> list[Any]:
    """Instantiate each middleware class; one raising MiddlewareNotUsed is left out."""
    loaded = []
    for path in paths:
        factory = import_string(path)
        try:
            loaded.append(factory())
        except MiddlewareNotUsed as err:
            logger.debug("Middleware %s is not used: %s", path, err)
    return loaded


class RPCServer(zerorpc.Server):
    """A zerorpc server for registered functions, with persistent workers.

    Besides zerorpc's hooks, middleware may define ``server_after_call(request_event)``:
    it runs after every call however it ended (result, error, or a caller lost
    mid-call, where zerorpc runs no hook at all).
    """

    def __init__(
        self,
        functions: Iterable[RPCFunction],
        *,
        name: str,
        heartbeat: float,
        concurrency: int,
        middleware: Sequence[Any] = (),
    ) -> None:
        context = zerorpc.Context()
        context.setsockopt(zmq.IPV6, 1)  # so [::1]:port binds; IPv4 still works
        for instance in middleware:
            context.register_middleware(_hooks_of(instance))
        self._after_call = [
            _logged_errors(m.server_after_call)
            for m in middleware
            if hasattr(m, "server_after_call")
        ]
        self.concurrency = concurrency
        self.heartbeat = heartbeat
        self._call = gevent.local.local()
        methods = {entry.name: _Served(entry) for entry in functions}
        self.function_names = sorted(methods)
        super().__init__(methods, name=name, context=context, heartbeat=heartbeat)

    def close(self) -> None:
        super().close()
        self._context.destroy(linger=1000)

    def _acceptor(self) -> None:
        # A rendezvous channel: when every worker is busy the acceptor waits,
        # as zerorpc's pool_size does (the hardening issue replaces this).
        handoff: gevent.queue.Channel = gevent.queue.Channel()
        workers = [gevent.spawn(self._work, handoff) for _ in range(self.concurrency)]
        try:
            while True:
                handoff.put(self._multiplexer.recv())
        finally:
            gevent.killall(workers)

    def _work(self, handoff: gevent.queue.Channel) -> None:
        try:
            while True:
                try:
                    self._async_task(handoff.get())
                except LostRemote:
                    # zerorpc's heartbeat throws LostRemote into the task's
                    # greenlet; one that lands just after the call ended has
                    # nothing left to cancel.
                    continue
                except Exception:
                    # zerorpc's task ran into a bug of its own; keep the worker.
                    logger.exception("A call failed outside its function; the worker goes on.")
        finally:
            connections.close_all()

    def _async_task(self, initial_event: Any) -> None:
        self._call.exc_info = None
        started = time.perf_counter()
        try:
            super()._async_task(initial_event)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            exc_info, self._call.exc_info = self._call.exc_info, None
            self._log_call(initial_event.name, elapsed_ms, exc_info)
            for hook in self._after_call:
                hook(initial_event)

    def _print_traceback(self, protocol_v1: bool, exc_infos: Any) -> tuple[Any, ...]:
        # zerorpc logs every error here with an empty message; keep the
        # exception for our own log line and only format the reply.
        self._call.exc_info = tuple(exc_infos)
        exc_type, exc_value, exc_tb = exc_infos
        if protocol_v1:
            return (repr(exc_value),)
        formatted = "".join(traceback.format_exception(exc_type, exc_value, exc_tb))
        return (exc_type.__name__, str(exc_value), formatted)

    def _log_call(self, name: str, elapsed_ms: float, exc_info: Any) -> None:
        if exc_info is None:
            logger.info("rpc %s OK in %.1f ms", name, elapsed_ms)
        elif isinstance(exc_info[1], LostRemote):
            logger.warning(
                "rpc %s lost its caller after %.1f ms: %s", name, elapsed_ms, exc_info[1]
            )
        elif name not in self._methods:
            logger.warning("rpc %s: no such function is registered", name)
        else:
            logger.error(
                "rpc %s failed in %.1f ms: %s: %s",
                name,
                elapsed_ms,
                exc_info[0].__name__,
                exc_info[1],
                exc_info=exc_info,
            )


def build_server(*, heartbeat: float | None = None, concurrency: int | None = None) -> RPCServer:
    """Return an unbound server for every registered function, per the settings."""
    return RPCServer(
        rpc,
        name=conf.get("SERVER_NAME"),
        heartbeat=heartbeat if heartbeat is not None else conf.get("HEARTBEAT"),
        concurrency=concurrency if concurrency is not None else conf.get("CONCURRENCY"),
        middleware=load_middleware(conf.get("MIDDLEWARE")),
    )
