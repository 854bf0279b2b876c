"""zerorpc-style server middleware, called by name; hooks that must not break a call are guarded."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger("django_zrpc.server")

#: zerorpc's server hook names (from zerorpc.Context._hooks) the server calls, plus
#: django_zrpc's server_after_call, server_worker_idle (called now and then
#: on an idle worker; returns whether it still holds something to let go of),
#: server_call_expired(request_event) (a call dropped unstarted: its caller's
#: deadline passed while it waited for a worker) and
#: server_stream_item(request_event) (after each item a stream sends).
#: zerorpc's client hooks have no counterpart: RPCClient takes no middleware.
HOOK_NAMES = (
    "server_worker_idle",
    "load_task_context",
    "get_task_context",
    "server_before_exec",
    "server_after_exec",
    "server_inspect_exception",
    "server_after_call",
    "server_call_expired",
    "server_stream_item",
)

# A hook that raises here would end the call before its reply is sent and leave
# the caller waiting: log the error instead.
_GUARDED = frozenset(
    {"server_inspect_exception", "server_after_call", "server_call_expired", "server_stream_item"}
)


class Hooks:
    """The middleware's hooks, grouped by name, in middleware order."""

    def __init__(self, middleware: Iterable[Any] = ()) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOK_NAMES}
        for instance in middleware:
            for name in HOOK_NAMES:
                hook = getattr(instance, name, None)
                if hook is None and isinstance(instance, dict):
                    hook = instance.get(name)
                if hook is not None:
                    self._hooks[name].append(_logged_errors(hook) if name in _GUARDED else hook)

    def has(self, name: str) -> bool:
        return bool(self._hooks[name])

    def call(self, name: str, *args: Any) -> None:
        for hook in self._hooks[name]:
            hook(*args)

    def call_any(self, name: str) -> bool:
        """Call every hook ``name``; return whether any returned a true value."""
        return any([hook() for hook in self._hooks[name]])

    def get_task_context(self) -> dict[str, Any]:
        context: dict[str, Any] = {}
        for hook in self._hooks["get_task_context"]:
            # Called while building every reply, errors included: a hook that
            # raised here would leave the caller without one.
            try:
                context.update(hook())
            except Exception:
                logger.exception("Middleware hook %r raised; its context is left out.", hook)
        return context


def _logged_errors(hook: Callable[..., Any]) -> Callable[..., None]:
    def guarded(*args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("Middleware hook %r raised; the call goes on.", hook)

    return guarded
