"""A zerorpc server (protocol v3) on pyzmq + gevent, without zerorpc's per-call machinery.

One ROUTER socket; one reader greenlet that validates every frame and routes
events; ``concurrency`` persistent worker greenlets fed from a queue; one
ticker for every call's heartbeats and lost-caller detection. zerorpc spawns
2-4 greenlets and a channel stack per call; here a call is a small object.

Robust by construction: a bad frame is logged and dropped, an event for an
unknown call is dropped, a call past ``concurrency + backlog`` gets a
``ServerBusy`` error at once, and the reader never runs user code, so
heartbeats keep flowing however busy the workers are.

``Server`` is built here, with its lifecycle; its jobs live beside it, one
mixin each: ``routing`` (reading requests, writing replies), ``workers``
(running calls and streams), ``callers`` (heartbeats, lost callers) and
``call_log``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gevent
import gevent.event
import zmq

from django_zrpc.curve import ServerKeys
from django_zrpc.server import observer as observed
from django_zrpc.server.builtins import builtins as builtin_functions
from django_zrpc.server.call_log import CallLog
from django_zrpc.server.callers import STOPPING_REASON, Callers
from django_zrpc.server.calls import Call, IdleWorker, ServedFunction
from django_zrpc.server.heap import HeapTrimmer
from django_zrpc.server.hooks import Hooks
from django_zrpc.server.ratelimit import RateLimitedLog
from django_zrpc.server.routing import MAX_ERROR_MESSAGE_LEN, MAX_TRACEBACK_LEN, Routing
from django_zrpc.server.stall import StallWatch
from django_zrpc.server.workers import Workers
from django_zrpc.server.zap import Authenticator
from django_zrpc.transport.io_threads import batch_io_threads
from django_zrpc.transport.monitor import SocketMonitor
from django_zrpc.transport.socket_loop import SocketLoop
from django_zrpc.wire import protocol

__all__ = [
    "MAX_ERROR_MESSAGE_LEN",
    "MAX_TRACEBACK_LEN",
    "STOPPING_REASON",
    "STOP_LINGER",
    "ServedFunction",
    "Server",
]

logger = logging.getLogger("django_zrpc.server")

#: Seconds a stopped server keeps refusing calls before it closes its socket.
STOP_LINGER = 0.5


class Server(Routing, Workers, Callers, CallLog):
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
        self._make_socket(curve)
        self._make_loops(trim_every)
        self._make_queues(idle_check)
        self._on_worker_exit = on_worker_exit
        self._log_calls = log_calls
        # Told of each call's fate, for metrics; the base class does nothing.
        self._observer = observer or observed.NOTHING

    def _make_socket(self, curve: ServerKeys | None) -> None:
        """Make the ROUTER socket, and its ZAP handler when ``curve`` keys are given."""
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

    def _make_loops(self, trim_every: float | None) -> None:
        """Make what watches the socket: its monitor, its reader, the heap trimmer."""
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
            user_ids=self.curve is not None,
        )
        self._drops = RateLimitedLog(logger, "Dropped %d bad frame(s); latest: %s")
        self._handshake_failures = RateLimitedLog(
            logger, "%d client(s) failed the CURVE handshake; latest: %s"
        )

    def _make_queues(self, idle_check: float | None) -> None:
        """Make the calls' bookkeeping: calls in flight, the queue and the idle workers."""
        self._calls: dict[tuple[Any, Any], Call] = {}
        # Calls no worker has taken yet, and the idle workers, the last to
        # become idle on top: a light load keeps going to the same few workers
        # (and their database connections) instead of waking every one in turn.
        self._waiting: deque[Call] = deque()
        self._call_seconds = 0.0
        self._idle: list[IdleWorker] = []
        self._workers_running = 0
        # Seconds between an idle worker's calls of the server_worker_idle
        # hooks (closing connections past CONN_MAX_AGE); None: never.
        self.idle_check = idle_check if self._hooks.has("server_worker_idle") else None
        self._accepting = True
        #: Why the server stopped by itself, if it did (runrpc exits with 1).
        self.failure: str | None = None
        self._stopped = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []

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
        # A worker spawned but not yet run is not busy: counting it so made
        # a server just started report every worker busy until its next sample.
        busy = self._workers_running - len(self._idle)
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
