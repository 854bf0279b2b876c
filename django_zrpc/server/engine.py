"""A zerorpc server (protocol v3) on pyzmq + gevent, without zerorpc's per-call machinery.

One ROUTER socket; one reader greenlet that validates every frame and routes
events; ``concurrency`` persistent worker greenlets fed from a queue; one
ticker for every call's heartbeats and lost-caller detection. zerorpc spawns
2-4 greenlets and a channel stack per call; here a call is a small object.

Robust by construction: a bad frame is logged and dropped, an event for an
unknown call is dropped, a call past ``concurrency + backlog`` gets a
``ServerBusy`` error at once, and the reader never runs user code, so
heartbeats keep flowing however busy the workers are.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gevent
import gevent.event
import zmq
from django.utils import translation
from gevent.hub import Waiter

from django_zrpc.context import CallContext
from django_zrpc.context import _current as _current_call
from django_zrpc.curve import ServerKeys
from django_zrpc.server import observer as observed
from django_zrpc.server.builtins import builtins as builtin_functions
from django_zrpc.server.builtins import unknown_function
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
from django_zrpc.server.heap import HeapTrimmer
from django_zrpc.server.hooks import Hooks
from django_zrpc.server.ratelimit import RateLimitedLog
from django_zrpc.server.stall import StallWatch
from django_zrpc.server.zap import Authenticator
from django_zrpc.transport.io_threads import batch_io_threads
from django_zrpc.transport.monitor import (
    DISCONNECTED,
    FAILED_EVENTS,
    SERVER,
    SocketMonitor,
    describe_failure,
)
from django_zrpc.transport.socket_loop import SocketLoop
from django_zrpc.wire import protocol, remote_errors, values

logger = logging.getLogger("django_zrpc.server")

# How _work_on logs a call stopped from outside, by the reason it was stopped for.
_INTERRUPTED = {CANCELLED: "cancelled", DEADLINE_PASSED: "deadline"}

#: Seconds a stopped server keeps refusing calls before it closes its socket.
STOP_LINGER = 0.5
#: Why calls are given up when the server stops.
STOPPING_REASON = "the server is stopping"
#: The longest error message and traceback an ERR reply carries, in characters.
MAX_ERROR_MESSAGE_LEN = 10_000
MAX_TRACEBACK_LEN = 100_000


class Server:
    """Serve ``functions`` (name -> ServedFunction) on a ROUTER socket."""

    def __init__(
        self,
        functions: Mapping[str, ServedFunction],
        *,
        name: str = "django_zrpc",
        heartbeat: float = 5.0,
        concurrency: int = 100,
        backlog: int | None = None,
        middleware: Iterable[Any] = (),
        unpacker: protocol.Unpacker | None = None,
        on_worker_exit: Callable[[], None] | None = None,
        idle_check: float | None = None,
        log_calls: bool = True,
        send_tracebacks: bool = False,
        builtins: bool = True,
        stall_after: float = 1.0,
        curve: ServerKeys | None = None,
        stop_linger: float = STOP_LINGER,
        quiet_linger: float = 0.0,
        trim_every: float | None = 10.0,
        observer: observed.Observer | None = None,
    ) -> None:
        self.name = name
        self.heartbeat = heartbeat
        self.concurrency = concurrency
        self.backlog = concurrency if backlog is None else backlog
        self.function_names = sorted(functions)
        self._functions = dict(functions)
        if builtins:
            for builtin, func in builtin_functions(name, functions).items():
                self._functions[builtin] = ServedFunction(func)
        self._send_tracebacks = send_tracebacks
        self.stall_after = stall_after
        self.stop_linger = stop_linger
        # A worker of runrpc --workers hands over for up to quiet_linger
        # seconds, until no call was refused for stop_linger: its listener
        # accepts connections until the socket closes (unbinding would close
        # the connections it accepted, calls in flight and all), and a call
        # that arrives once it is closed is lost to its caller. Meanwhile it
        # refuses (ServerStopping) the calls of django_zrpc clients, which send
        # them again on a new connection, and serves those of other zerorpc
        # clients, which cannot: refused, each of their calls failed.
        self.quiet_linger = quiet_linger
        self._last_refused = 0.0
        self._serving_plain = False
        self._hooks = Hooks(middleware)
        self._unpacker = unpacker or protocol.Unpacker()
        self._new_id = protocol.MessageIds()
        self._context = zmq.Context()
        batch_io_threads(self._context)
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.IPV6, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, self._unpacker.max_event_bytes)
        # A reply to a caller whose connection is gone raises EHOSTUNREACH
        # instead of vanishing: that is how a closed connection's calls are
        # found (see _probe_callers).
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        #: Which process this is, told to each client in ZeroMQ's handshake
        #: (see protocol.INSTANCE_PROPERTY).
        self.instance = protocol.new_instance()
        try:
            self._socket.setsockopt(
                zmq.METADATA, f"{protocol.INSTANCE_PROPERTY}:{self.instance}".encode()
            )
        except (AttributeError, zmq.ZMQError):
            pass  # libzmq before 4.3: clients spread calls over connections, as before
        self.curve = curve
        self._authenticator: Authenticator | None = None
        if curve is not None:
            # The ZAP handler is bound before the server socket exists on the
            # network: a client is never admitted without it.
            self._authenticator = Authenticator(self._context, curve.allow)
            curve.apply(self._socket)
        self._monitor = SocketMonitor(self._socket, self._on_socket_event)
        self._prober: gevent.Greenlet | None = None
        self._probe_again = False
        # Peers that left leave their buffers' pages resident; give them back.
        self._trimmer = HeapTrimmer(trim_every) if trim_every else None
        self._io = SocketLoop(
            self._socket,
            self._on_frames,
            logger,
            on_unreachable=self._on_unreachable,
            user_ids=curve is not None,
        )
        self._calls: dict[tuple[Any, Any], Call] = {}
        # Calls no worker has taken yet, and the idle workers, the last to
        # become idle on top: a light load keeps going to the same few workers
        # (and their database connections) instead of waking every one in turn.
        self._waiting: deque[Call] = deque()
        self._call_seconds = 0.0
        self._idle: list[IdleWorker] = []
        # Seconds between an idle worker's calls of the server_worker_idle
        # hooks (closing connections past CONN_MAX_AGE); None: never.
        self.idle_check = idle_check if self._hooks.has("server_worker_idle") else None
        self._accepting = True
        #: Why the server stopped by itself, if it did (runrpc exits with 1).
        self.failure: str | None = None
        self._stopped = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._drops = RateLimitedLog(logger, "Dropped %d bad frame(s); latest: %s")
        self._handshake_failures = RateLimitedLog(
            logger, "%d client(s) failed the CURVE handshake; latest: %s"
        )
        self._on_worker_exit = on_worker_exit
        self._log_calls = log_calls
        # Told of each call's fate, for metrics; the base class does nothing.
        self._observer = observer or observed.NOTHING

    # -- lifecycle ---------------------------------------------------------

    def bind(self, endpoint: str, fd: int | None = None) -> str:
        """Bind to ``endpoint``; return the endpoint actually bound (resolves port 0).

        ``fd``: a TCP socket already bound to ``endpoint`` and listening,
        shared with other processes (``ZMQ_USE_FD``): each accepts the
        connections the kernel gives it.
        """
        if fd is not None:
            self._socket.setsockopt(zmq.USE_FD, fd)
        self._socket.bind(endpoint)
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def run(self) -> None:
        """Serve until ``stop()``; return once in-flight calls are finished or ended."""
        # One thread per worker at most, so a blocking call never waits for a
        # thread behind the bound that --concurrency sets.
        threadpool = gevent.get_hub().threadpool
        threadpool.maxsize = max(threadpool.maxsize, self.concurrency)
        self._hub = gevent.get_hub()
        self._greenlets = [gevent.spawn(self._work) for _ in range(self.concurrency)]
        self._greenlets.append(gevent.spawn(self._tick))
        if self.stall_after:
            watch = StallWatch(self.stall_after, Server._execute.__code__)
            self._greenlets.append(gevent.spawn(watch.run))
        if self._authenticator is not None:
            # Kept to be killed by the test of what follows its death.
            self._authenticator_greenlet = gevent.spawn(self._authenticator.run)
            self._authenticator_greenlet.link(self._on_authenticator_end)
            self._greenlets.append(self._authenticator_greenlet)
        monitor = SocketLoop(self._monitor.pair, self._monitor.on_frames, logger)
        self._greenlets.append(gevent.spawn(monitor.run))
        if self._trimmer is not None:
            self._greenlets.append(gevent.spawn(self._trimmer.run))
        reader = gevent.spawn(self._io.run)
        try:
            self._stopped.wait()
            if not self.quiet_linger:
                # Keep answering ServerStopping a moment longer: a call that
                # arrives after the socket closes is lost to its caller, who
                # only learns of it from heartbeats, and cannot tell whether it
                # ran. A worker lingered in stop(), serving as it did.
                gevent.sleep(self.stop_linger)
        finally:
            gevent.killall(self._greenlets)
            self._io.flush()  # the last replies, ServerStopping errors among them
            reader.kill()

    @property
    def served_names(self) -> frozenset[str]:
        """The names calls may name: the functions and zerorpc's built-ins."""
        return frozenset(self._functions)

    @property
    def accepting(self) -> bool:
        """Whether new calls are taken: False from the moment ``stop()`` is called."""
        return self._accepting

    def load(self) -> tuple[int, int, int]:
        """Return the calls running, the calls waiting for a worker, and the workers busy.

        Read when wanted (a metrics scrape), so that nothing is counted per call.
        """
        waiting = len(self._waiting)
        busy = self.concurrency - len(self._idle) if self._greenlets else 0
        return len(self._calls) - waiting, waiting, busy

    def problems(self) -> list[str]:
        """Return why the server cannot serve new calls now, in sentences; empty if it can."""
        found = []
        if not self._accepting:
            found.append("The server is stopping.")
        greenlet = getattr(self, "_authenticator_greenlet", None)
        if greenlet is not None and greenlet.dead:
            found.append("The CURVE ZAP handler stopped: no client can connect.")
        return found

    def _on_authenticator_end(self, greenlet: gevent.Greenlet) -> None:
        if not self._accepting:
            return  # the server is stopping: so is its ZAP handler
        # No new client could connect (ZAP_ENFORCE_DOMAIN refuses them all):
        # stop, so that the process manager starts a healthy server.
        self.failure = f"The CURVE ZAP handler stopped: {greenlet.exception or 'it returned'}"
        logger.critical("%s; no client can connect, so the server stops.", self.failure)
        gevent.spawn(self.stop)

    def stop(self, grace: float = 0.0) -> None:
        """Stop taking calls, give running ones ``grace`` seconds, end the rest with an error."""
        self._accepting = False
        deadline = time.monotonic() + grace
        if self.quiet_linger:
            self._hand_over()
        while self._calls and time.monotonic() < deadline:
            gevent.sleep(0.05)
        for call in list(self._calls.values()):
            if call.replied or call.lost:
                continue
            # ServerStopping only for a call that never started, so that a
            # caller may retry it elsewhere; one that started may have done
            # part of its work.
            if call.worker is None:
                self._reply_error(
                    call, "ServerStopping", "The server stopped before the call started.", True
                )
            else:
                self._reply_error(
                    call,
                    "CallInterrupted",
                    "The server stopped during the call; it may have run in part.",
                )
            self._lose(call, STOPPING_REASON)
        self._stopped.set()

    def _hand_over(self) -> None:
        """Serve plain zerorpc callers until no django_zrpc call was refused for a while.

        The refused ones' clients open new connections, which the kernel
        gives to the other workers more often than to this one.
        """
        self._serving_plain = True
        self._last_refused = time.monotonic()
        quiet_by = time.monotonic() + self.quiet_linger
        try:
            while time.monotonic() < quiet_by:
                quiet_for = time.monotonic() - self._last_refused
                if quiet_for < self.stop_linger:
                    gevent.sleep(self.stop_linger - quiet_for)
                    continue
                # On a starved CPU the timer can fire in the same turn of the
                # loop as a batch of calls not yet read: read them first.
                gevent.sleep(0.01)
                if time.monotonic() - self._last_refused >= self.stop_linger:
                    break
        finally:
            # From here every call is refused, and the socket closes as soon
            # as the running ones end, replies first: a plain caller gets the
            # close right behind its last reply, and its next call goes out
            # on its next connection, to another worker.
            self._serving_plain = False

    def close(self) -> None:
        self._io.stop_watching()
        self._monitor.close()
        self._socket.close(linger=1000)
        if self._authenticator is not None:
            self._authenticator.close()
        self._context.term()

    # -- receiving ---------------------------------------------------------

    def _on_frames(self, frames: list[bytes], client_key: str | None = None) -> None:
        identity: tuple[bytes, ...] | None = None
        try:
            identity, blob = protocol.split_frames(frames)
            event = self._unpacker.unpack(blob)
        except protocol.BadEvent as err:
            self._drops.record(str(err))
            self._observer.frame_dropped()
            if identity is None:
                # Frames after the event: the envelope still says who asked.
                identity, blob = protocol.envelope_of(frames) or (None, b"")
            if identity is not None:
                self._refuse(identity, blob, str(err))
            return
        event.identity = identity
        event.client_key = client_key
        self._route(event)

    def _refuse(self, identity: tuple[bytes, ...], blob: bytes, reason: str) -> None:
        """Answer a request that cannot be read with an error, if its header says who asked."""
        header = protocol.request_header(blob)
        if header is None:
            return
        call = Call(protocol.Event("", [], header, identity), time.monotonic())
        self._reply_error(
            call,
            "BadRequest",
            f"The server cannot read this request: {reason}. Its limits: names of 1 to "
            f"{protocol.MAX_NAME_LEN} characters, {self._unpacker.limits()}.",
        )

    def _on_socket_event(self, event: int, value: int) -> None:
        if event == DISCONNECTED:
            self._probe_callers()
            if self._trimmer is not None:
                self._trimmer.peer_left()
        elif event in FAILED_EVENTS:
            self._observer.handshake_refused()
            # Refused keys (HANDSHAKE_FAILED_AUTH) are logged by the ZAP
            # handler, with the key.
            if event != zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._handshake_failures.record(describe_failure(event, value, SERVER))

    def _route(self, event: protocol.Event) -> None:
        response_to = event.response_to
        if response_to is not None:
            call = self._calls.get((event.identity, response_to))
            if call is None:
                return  # a late heartbeat or credit for a call that ended
            name = event.name
            call.heard(time.monotonic(), name == protocol.HEARTBEAT)
            if name == protocol.MORE:
                count = event.args[0] if isinstance(event.args, list | tuple) and event.args else 0
                if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                    call.add_credits(min(count, 1_000_000))
            elif name == protocol.HEARTBEAT:
                self._send(call, protocol.HEARTBEAT, [0], spend=False)
            elif name == protocol.CANCEL:
                self._lose(call, CANCELLED)
            return
        # Without response_to an event is a request, whatever its name: a
        # heartbeat of this shape belongs to no call, and its sender is told
        # so (see unknown_function) rather than left waiting.
        key = (event.identity, event.message_id)
        if key in self._calls:
            self._drops.record(f"duplicate message_id {event.message_id!r:.40}")
            self._observer.frame_dropped()
            return
        call = Call(event, time.monotonic())
        if not isinstance(event.args, list | tuple):
            self._reply_error(
                call,
                "TypeError",
                f"The call's arguments are a {type(event.args).__name__} "
                f"({event.args!r:.40}), not an array: send them as a list, [] for none.",
            )
            self._observer.call_refused(event.name, observed.BAD_REQUEST)
        elif not self._accepting and (call.rich or not self._serving_plain):
            self._last_refused = time.monotonic()
            self._observer.call_refused(event.name, observed.STOPPING)
            self._reply_error(
                call, "ServerStopping", "The server is stopping; call again later.", True
            )
        elif len(self._calls) >= self.concurrency + self.backlog:
            self._reply_error(
                call,
                "ServerBusy",
                f"The server is busy: {self.concurrency} calls are running and "
                f"{self.backlog} are waiting; call again later.",
                True,
                retry_after=self._pushback(),
            )
            self._observer.call_refused(event.name, observed.BUSY)
        else:
            self._calls[key] = call
            if self._idle:
                worker = self._idle.pop()
                worker.call = call
                # From the hub: a direct switch would leave this greenlet unscheduled.
                self._hub.loop.run_callback(worker.waiter.switch, None)
            else:
                self._waiting.append(call)

    # -- heartbeats ----------------------------------------------------------

    def _tick(self) -> None:
        while True:
            gevent.sleep(self.heartbeat)
            now = time.monotonic()
            for call in list(self._calls.values()):
                if call.replied or call.lost:
                    continue  # cleaning up; the caller expects nothing more
                if call.worker is None and call.expired(now):
                    self._expire(call)  # out of the queue: it holds a place in the bound
                    continue
                patience = call.patience(self.heartbeat)
                if now - call.last_seen > patience:
                    # The caller may be alive and only slow: tell it, at no
                    # cost if it is gone, rather than leave it waiting.
                    reason = f"Lost remote after {patience:g}s without a heartbeat"
                    self._reply_error(call, "LostRemote", f"The server gave the call up: {reason}.")
                    self._lose(call, reason)
                else:
                    self._send(call, protocol.HEARTBEAT, [0], spend=False)

    def _probe_callers(self) -> None:
        """Send a heartbeat to every caller with a call in flight, now and twice more.

        Called when a connection closed: a caller whose connection is gone
        makes the send fail (ROUTER_MANDATORY), and its calls are given up in
        _on_unreachable. libzmq may still be taking the connection down when
        the event arrives, hence the later tries; connections that close
        meanwhile join the same round.
        """
        if not self._calls:
            return  # nothing in flight: nothing to stop
        if self._prober is not None:
            self._probe_again = True
            return
        self._prober = gevent.spawn(self._probe_rounds)

    def _probe_rounds(self) -> None:
        try:
            self._probe_again = True
            while self._probe_again:
                self._probe_again = False
                for delay in (0.0, 0.1, 0.4):
                    gevent.sleep(delay)
                    self._heartbeat_each_caller()
        finally:
            self._prober = None

    def _heartbeat_each_caller(self) -> None:
        probed = set()
        for call in list(self._calls.values()):
            if not (call.replied or call.lost) and call.identity not in probed:
                probed.add(call.identity)
                self._send(call, protocol.HEARTBEAT, [0], spend=False)

    def _on_unreachable(self, call: Call | None) -> None:
        if call is None:
            return
        for other in list(self._calls.values()):
            if other.identity == call.identity:
                self._lose(other, "the caller's connection closed")

    def _lose(self, call: Call, reason: str) -> None:
        if call.replied or call.lost:
            return
        call.lost = True
        if call.worker is None:
            # Still queued: out of the queue and the bound at once (a caller
            # that cancels queued calls must not grow the queue past it).
            self._calls.pop((call.identity, call.request.message_id), None)
            self._observer.call_refused(call.request.name, _outcome_of_loss(reason))
            try:
                self._waiting.remove(call)
            except ValueError:
                pass  # handed to a worker already, which will skip it
        elif not call.kill_pending:
            # Running: it stays counted against the bound until its worker is
            # free, even if the function swallows the exception.
            call.kill_pending = True
            call.worker.kill(CallLost(call, reason), block=False)

    # -- running calls -------------------------------------------------------

    def _work(self) -> None:
        worker = IdleWorker()
        try:
            while True:
                self._work_on(self._waiting.popleft() if self._waiting else self._wait(worker))
        finally:
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
            outcome = _outcome_of_loss(str(lost))
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
            args, kwargs = split_kwargs(request.args)
            if served.stream:
                self._stream(call, served(*args, **kwargs), context)
                reply = self._event(call, protocol.STREAM_DONE, None)
            elif served.blocking:
                # In an OS thread: this greenlet waits, the loop goes on. A lost
                # caller cannot stop a thread that started; its result is dropped.
                result = gevent.get_hub().threadpool.apply(
                    contextvars.copy_context().run,
                    (run_unless_lost, call, served, args, kwargs),
                )
                reply = self._event(call, protocol.OK, [result])
            else:
                reply = self._event(call, protocol.OK, [served(*args, **kwargs)])
            self._hooks.call("server_after_exec", request, reply)
            self._emit(call, reply)
            call.replied = True
        except BaseException as err:
            exc_info = sys.exc_info()
            if not isinstance(err, Exception) or isinstance(err, CallLost):
                raise  # the call was interrupted: lost caller, or the server stopping
            outcome = "unknown" if outcome == "unknown" else "error"
            error = err
            reply = self._error_event(call, exc_info)
            task_context = self._hooks.get_task_context()
            self._hooks.call("server_inspect_exception", request, reply, task_context, exc_info)
            self._emit_error(call, reply)
            call.replied = True
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

    def _stream(self, call: Call, iterable: Iterable[Any], context: CallContext) -> None:
        iterator = iter(iterable)
        on_item = self._hooks.has("server_stream_item")
        sent = 0
        try:
            for item in iterator:
                self._send(call, protocol.STREAM, item)
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

    # -- sending -------------------------------------------------------------

    def _event(self, call: Call, name: str, args: Any) -> protocol.Event:
        header = {
            "message_id": self._new_id(),
            "v": protocol.PROTOCOL_VERSION,
            # Tells a django_zrpc client that this server reads its value types.
            values.HEADER: values.VERSION,
            protocol.HEARTBEAT_PERIOD: self.heartbeat,
        }
        if self._hooks.has("get_task_context"):
            header.update(self._hooks.get_task_context())
        header["response_to"] = call.request.message_id
        return protocol.Event(name, args, header, call.identity)

    def _error_event(self, call: Call, exc_info: Any) -> protocol.Event:
        exc_type, exc_value, exc_tb = exc_info
        formatted = None
        if self._send_tracebacks:
            # Off by default: a traceback can show paths, hosts and DSNs.
            formatted = "".join(traceback.format_exception(exc_type, exc_value, exc_tb))
            formatted = protocol.cut(formatted, MAX_TRACEBACK_LEN)
        # A message may quote an argument whole (a KeyError does), in repr()
        # four times its size: past the size of a message, no reply would go.
        message = protocol.cut(str(exc_value), MAX_ERROR_MESSAGE_LEN)
        event = self._event(call, protocol.ERR, [exc_type.__name__, message, formatted])
        detail = remote_errors.encode(exc_value)
        if detail is not None:
            event.header[remote_errors.HEADER] = detail
        return event

    def _emit_error(self, call: Call, reply: protocol.Event) -> None:
        """Send an ERR reply; if it cannot go (its details too large), send it bare."""
        try:
            self._emit(call, reply)
        except (TypeError, ValueError) as unsendable:
            name, message, _ = reply.args
            bare = f"{message} (The error's details could not be sent: {unsendable}.)"
            self._emit(call, self._event(call, protocol.ERR, [name, bare, None]))

    def _reply_error(
        self,
        call: Call,
        name: str,
        message: str,
        never_started: bool = False,
        retry_after: float | None = None,
    ) -> None:
        # Sent even without a credit (a stream may be waiting for one): the
        # caller reads it before its buffer of 100 events could be full.
        event = self._event(call, protocol.ERR, [name, message, None])
        if never_started:
            # What lets a django_zrpc caller retry it: the name alone could be
            # a function's own exception.
            refusal: dict[str, Any] = {"type": remote_errors.NEVER_STARTED}
            if retry_after is not None:
                refusal["retry_after"] = retry_after
            event.header[remote_errors.HEADER] = refusal
        self._emit(call, event, spend=call.credits > 0)

    def _pushback(self) -> float | None:
        """Seconds a refused caller should wait before calling again: until the queue drains.

        The calls waiting, and this one, each take a worker for about the
        time a call has been taking, ``concurrency`` at a time. Sent with
        each ``ServerBusy``; a django_zrpc client waits that long before
        its retry (if it retries), instead of coming back within
        milliseconds to a queue that is still full. None until a call has
        ended: then nothing is known of how long calls take.
        """
        if not self._call_seconds:
            return None
        queued = len(self._waiting) + 1
        return round(min(max(queued / self.concurrency * self._call_seconds, 0.001), 10.0), 4)

    def _send(self, call: Call, name: str, args: Any, spend: bool = True) -> None:
        self._emit(call, self._event(call, name, args), spend=spend)

    def _emit(self, call: Call, event: protocol.Event, spend: bool = True) -> None:
        try:
            blob = protocol.pack(event.name, event.args, event.header, call.rich)
        except TypeError as err:  # before a credit is spent
            raise TypeError(f"rpc {call.request.name} cannot send its result: {err}") from None
        limit = self._unpacker.max_event_bytes
        if len(blob) > limit:
            # The caller's socket would drop the connection, and every other
            # call on it: refuse this one alone.
            raise ValueError(
                f"rpc {call.request.name} cannot send its result: {len(blob)} bytes, more "
                f"than a message may hold ({limit}, ZRPC_MAX_MESSAGE_BYTES)"
            )
        if spend:
            call.take_credit()
        assert call.identity is not None
        # A ROUTER never blocks a send: a message for a peer that is gone or
        # whose queue is full is dropped, so a dead caller cannot stall us.
        self._io.send([*call.identity, b"", blob], call)

    def _log(
        self,
        call: Call,
        elapsed_ms: float,
        outcome: str,
        error: Any = None,
        request_id: str | None = None,
    ) -> None:
        name = call.request.name
        if request_id is not None:
            name = f"{name} [request {request_id}]"
        if outcome == "OK":
            if self._log_calls:
                logger.info("rpc %s OK in %.1f ms", name, elapsed_ms)
        elif outcome == "lost":
            logger.warning("rpc %s lost its caller: %s", name, error)
        elif outcome == "deadline":
            logger.warning("rpc %s interrupted: %s", name, error)
        elif outcome == "cancelled":
            # A caller that stops reading a stream early: routine, not a fault.
            logger.info("rpc %s stopped: its caller cancelled it", name)
        elif outcome == "unknown":
            logger.warning("rpc %s: no such function is registered", name)
        elif error is not None and remote_errors.expected(error):
            # Raised for the caller to handle (a view's 404, say): routine, and
            # a traceback on every such call would bury the real faults.
            logger.info(
                "rpc %s raised %s in %.1f ms: %s", name, type(error).__name__, elapsed_ms, error
            )
        else:
            logger.error(
                "rpc %s failed in %.1f ms: %s: %s",
                name,
                elapsed_ms,
                type(error).__name__,
                error,
                exc_info=(type(error), error, error.__traceback__),
            )


def _outcome_of_loss(reason: str) -> str:
    """Return the observer's outcome for a call given up for ``reason`` (see ``_lose``)."""
    if reason == CANCELLED:
        return observed.CANCELLED
    if reason == DEADLINE_PASSED:
        return observed.DEADLINE
    if reason == STOPPING_REASON:
        return observed.STOPPING
    return observed.LOST
