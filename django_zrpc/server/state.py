"""What the jobs of the server share: the attributes and methods each may rely on.

``engine.Server`` is made of one mixin per job (``routing``, ``workers``,
``callers``, ``call_log``), and each job reads what ``Server.__init__`` sets
and calls methods of the others. ``State`` declares them once, for the type
checker and the reader; at run time it holds nothing, so that a call costs
what it did when the server was one class.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gevent
    from gevent.hub import Hub

    from django_zrpc.server.calls import Call, IdleWorker, ServedFunction
    from django_zrpc.server.heap import HeapTrimmer
    from django_zrpc.server.hooks import Hooks
    from django_zrpc.server.observer import Observer
    from django_zrpc.server.ratelimit import RateLimitedLog
    from django_zrpc.transport.socket_loop import SocketLoop
    from django_zrpc.wire import protocol


class State:
    """The attributes ``Server.__init__`` sets, and the methods its jobs call across."""

    # What the server was built with.
    name: str
    heartbeat: float
    concurrency: int
    backlog: int
    function_names: list[str]
    idle_check: float | None
    _functions: dict[str, ServedFunction]
    _send_tracebacks: bool
    _log_calls: bool
    _hooks: Hooks
    _unpacker: protocol.Unpacker
    _new_id: protocol.MessageIds
    _observer: Observer
    _on_worker_exit: Callable[[], None] | None

    # Its socket's reader and watchers.
    _io: SocketLoop
    _hub: Hub
    _trimmer: HeapTrimmer | None
    _prober: gevent.Greenlet | None
    _probe_again: bool
    _drops: RateLimitedLog
    _handshake_failures: RateLimitedLog

    # Its calls: in flight (running or queued), queued, and its idle workers.
    _calls: dict[tuple[Any, Any], Call]
    _waiting: deque[Call]
    _idle: list[IdleWorker]
    # Worker greenlets that have begun to run and not ended: the busy ones
    # are these, less the idle.
    _workers_running: int
    _call_seconds: float
    _accepting: bool
    _serving_plain: bool
    _last_refused: float

    if TYPE_CHECKING:
        # Each defined by one job and called by another.
        def _event(self, call: Call, name: str, args: Any) -> protocol.Event: ...

        def _error_event(self, call: Call, exc_info: Any) -> protocol.Event: ...

        def _emit(self, call: Call, event: protocol.Event, spend: bool = True) -> None: ...

        def _emit_error(self, call: Call, reply: protocol.Event) -> None: ...

        def _send(self, call: Call, name: str, args: Any, spend: bool = True) -> None: ...

        def _reply_error(
            self,
            call: Call,
            name: str,
            message: str,
            never_started: bool = False,
            retry_after: float | None = None,
        ) -> None: ...

        def _lose(self, call: Call, reason: str) -> None: ...

        def _expire(self, call: Call) -> None: ...

        def _log(
            self,
            call: Call,
            elapsed_ms: float,
            outcome: str,
            error: Any = None,
            request_id: str | None = None,
        ) -> None: ...
