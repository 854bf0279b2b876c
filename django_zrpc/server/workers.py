"""How the server runs calls: its workers, the queue, deadlines and streams.

A mixin of ``engine.Server``. ``concurrency`` persistent worker greenlets take
calls from the queue (or are handed one while idle, the last to become idle
first); each call runs in its caller's context and language, with the
middleware hooks around it, and ends in one reply, or in a stream of them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gevent
from django.utils import translation
from gevent.hub import Waiter

from django_zrpc.context import CallContext
from django_zrpc.context import _current as _current_call
from django_zrpc.server import access
from django_zrpc.server import observer as observed
from django_zrpc.server.builtins import unknown_function
from django_zrpc.server.callers import outcome_of_loss
from django_zrpc.server.calls import (
    CANCELLED,
    DEADLINE_PASSED,
    Call,
    CallLost,
    IdleWorker,
    ServedFunction,
    absorb_pending_kill,
    activate_language,
    run_unless_lost,
    split_kwargs,
)
from django_zrpc.server.state import State
from django_zrpc.wire import protocol

if TYPE_CHECKING:
    from django_zrpc.contracts.validate import Contract

logger = logging.getLogger("django_zrpc.server")

# How _work_on logs a call stopped from outside, by the reason it was stopped for.
_INTERRUPTED = {CANCELLED: "cancelled", DEADLINE_PASSED: "deadline"}


class Workers(State):
    """Run the calls routed to the server, ``concurrency`` at a time."""

    def _work(self) -> None:
        worker = IdleWorker()
        self._workers_running += 1
        try:
            while True:
                self._work_on(self._waiting.popleft() if self._waiting else self._wait(worker))
        finally:
            self._workers_running -= 1
            if self._on_worker_exit is not None:
                self._on_worker_exit()

    def _wait(self, worker: IdleWorker) -> Call:
        """Wait on top of the idle workers for a call; between calls, let go of what is idle."""
        worker.waiter = Waiter()
        self._idle.append(worker)
        # Whether the worker may hold something to let go of (a database
        # connection past CONN_MAX_AGE): only then does it wake now and then.
        holding = self.idle_check is not None
        try:
            while True:
                timer = None
                if holding:
                    timer = self._hub.loop.timer(self.idle_check)
                    timer.start(worker.waiter.switch, None)
                try:
                    worker.waiter.get()
                finally:
                    if timer is not None:
                        timer.close()
                call = worker.call
                if call is not None:
                    worker.call = None
                    return call
                try:
                    holding = self._hooks.call_any("server_worker_idle")
                except Exception:
                    # A worker that died here would take calls and run none.
                    logger.exception("A server_worker_idle hook raised; the worker goes on.")
        except BaseException:
            # Killed while idle (the server stopping): no call may be handed
            # to it any more.
            if worker in self._idle:
                self._idle.remove(worker)
            raise

    def _work_on(self, call: Call) -> None:
        if call.lost:
            return
        if call.expired(time.monotonic()):
            self._expire(call)
            return
        call.worker = gevent.getcurrent()
        started = time.monotonic()
        self._observer.call_started(call.request.name, started - call.received)
        timer = None
        if call.deadline is not None:
            timer = self._hub.loop.timer(max(call.deadline - started, 0.0))
            timer.start(self._on_deadline, call)
        try:
            self._execute(call)
        except CallLost as lost:
            self._log(call, 0.0, _INTERRUPTED.get(str(lost), "lost"), lost)
            outcome = outcome_of_loss(str(lost))
            self._observer.call_ended(call.request.name, outcome, time.monotonic() - started)
        except Exception:
            logger.exception("Call %s failed outside its function.", call.request)
        finally:
            if timer is not None:
                timer.close()
            call.worker = None
            self._calls.pop((call.identity, call.request.message_id), None)
            if call.kill_pending:
                absorb_pending_kill()

    def _expire(self, call: Call) -> None:
        """Drop a call whose caller stopped waiting before any worker could start it.

        The one place such a call ends: ``server_call_expired`` hooks (metrics)
        see each one. No reply: the caller's own timeout is its answer
        (``TimeoutExpired``), and a reply could beat it there.
        """
        logger.warning(
            "rpc %s dropped unstarted: its caller's deadline passed while it waited for a worker",
            call.request.name,
        )
        self._hooks.call("server_call_expired", call.request)
        self._lose(call, DEADLINE_PASSED)

    def _on_deadline(self, call: Call) -> None:
        """Interrupt a running call at its caller's deadline, as if the caller cancelled it.

        Run by the hub (a timer): it only schedules the kill. No reply, as for
        an expired call. A ``blocking=True`` function's thread cannot be
        stopped: it runs to its end (its transaction commits), its result dropped.
        """
        if call.replied or call.lost or call.deadline is None:
            return  # done, or a stream whose first item is out
        self._lose(call, DEADLINE_PASSED)

    def _execute(self, call: Call) -> None:
        request = call.request
        started = time.perf_counter()
        outcome: str = "OK"
        exc_info: Any = None
        error: BaseException | None = None
        context = CallContext.from_header(
            request.name, request.header, request.client_key, call.deadline
        )
        token = _current_call.set(context)
        language = activate_language(context.language)
        try:
            self._hooks.call("load_task_context", request.header)
            served = self._functions.get(request.name)
            if served is None:
                outcome = "unknown"
                raise NameError(unknown_function(request.name, self.function_names))
            self._hooks.call("server_before_exec", request)
            # After the hooks (old DB connections closed), before the arguments are read.
            access.check(context, self._observer)
            reply = self._run(call, served, context)
            self._hooks.call("server_after_exec", request, reply)
            self._emit(call, reply)
            call.replied = True
        except BaseException as err:
            exc_info = sys.exc_info()
            if not isinstance(err, Exception) or isinstance(err, CallLost):
                raise  # the call was interrupted: lost caller, or the server stopping
            outcome = "unknown" if outcome == "unknown" else "error"
            error = err
            self._reply_with(call, exc_info)
        finally:
            try:
                self._hooks.call("server_after_call", request, exc_info)
            finally:
                # Also when the call is interrupted here: the worker's next
                # call must not inherit this caller's language or context.
                del exc_info
                if language:
                    translation.deactivate()
                _current_call.reset(token)
        seconds = time.perf_counter() - started
        # What a call takes, smoothed over about the last ten: the pushback
        # of a ServerBusy refusal is made of it.
        if self._call_seconds:
            self._call_seconds += (seconds - self._call_seconds) * 0.1
        else:
            self._call_seconds = seconds or 1e-6
        self._log(call, seconds * 1000, outcome, error, context.request_id)
        if error is None:
            self._observer.call_ended(request.name, observed.OK, seconds)
        else:
            self._observer.call_ended(request.name, observed.ERROR, seconds, type(error).__name__)

    def _run(self, call: Call, served: ServedFunction, context: CallContext) -> protocol.Event:
        """Run the call's function (or start its stream); return the reply to send."""
        request = call.request
        args, kwargs = split_kwargs(request.args)
        admit = served.admit
        if admit is not None:
            # Before the function, its thread or its generator: a call that
            # does not fit its contract never runs.
            args, kwargs = admit(args, kwargs)
        if served.stream:
            self._stream(call, served(*args, **kwargs), context, served.contract)
            return self._event(call, protocol.STREAM_DONE, None)
        if served.blocking:
            result = _run_in_thread(call, served, args, kwargs)
        else:
            result = served(*args, **kwargs)
        if admit is not None and served.contract is not None:
            result = served.contract.encode_result(result)
        return self._event(call, protocol.OK, [result])

    def _reply_with(self, call: Call, exc_info: Any) -> None:
        """Answer ``call`` with the exception its function raised, as the hooks see it."""
        reply = self._error_event(call, exc_info)
        task_context = self._hooks.get_task_context()
        self._hooks.call("server_inspect_exception", call.request, reply, task_context, exc_info)
        self._emit_error(call, reply)
        call.replied = True

    def _stream(
        self,
        call: Call,
        iterable: Iterable[Any],
        context: CallContext,
        contract: Contract | None = None,
    ) -> None:
        iterator = iter(iterable)
        on_item = self._hooks.has("server_stream_item")
        encode = None if contract is None else contract.encode_item
        sent = 0
        try:
            for item in iterator:
                self._send(call, protocol.STREAM, item if encode is None else encode(item))
                sent += 1
                if call.deadline is not None:
                    # The caller's timeout runs only until its first item.
                    call.deadline = None
                    _current_call.set(dataclasses.replace(context, deadline=None))
                if on_item:
                    self._hooks.call("server_stream_item", call.request)
        finally:
            self._observer.stream_items_sent(call.request.name, sent)
            # Close a generator now, also when the caller was lost, so that
            # what it holds (a server-side database cursor) is released.
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


def _run_in_thread(call: Call, served: ServedFunction, args: Any, kwargs: Any) -> Any:
    """Run a ``blocking=True`` function in an OS thread; return its result.

    This greenlet waits, the loop goes on. A lost caller cannot stop a thread
    that started; its result is dropped.
    """
    return gevent.get_hub().threadpool.apply(
        contextvars.copy_context().run,
        (run_unless_lost, call, served, args, kwargs),
    )
