"""``RPCClient``: call RPC functions from views through pooled connections.

``RPCClient("tcp://host:4242")``, ``RPCClient([...several endpoints...])``, or
one source of them: ``"dns:///name:4242"`` or ``"redis://host:6379/0?service=name"``
(``django_zrpc.discovery``, whose directory says where calls may go now).
Calls take a place on a connection from a bounded pool (``django_zrpc.client.gevent.pool``)
of the endpoint they go to, up to ``calls_per_connection`` sharing one, and
give it back when the reply (or, for a stream, the last item) has arrived.

A call goes to the endpoint with the fewest calls in flight from this thread.
An endpoint that could not be reached, went silent, failed the handshake or
refused calls (busy, stopping) is avoided for ``down_for`` seconds and then
tried again, and calls that never ran there are sent elsewhere. When an
address leaves the directory its pool is closed: calls in flight on it end
as they would have, new ones go elsewhere.

Safe wherever Django runs: pools are kept per process and per OS thread (so
per gevent hub): greenlets of a gevent-patched server share one pool, each OS
thread of an unpatched threaded server has its own (closed when the thread
ends), and a process made by ``fork`` makes new connections and stops the I/O
of the ones it inherited.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

import gevent
from gevent import monkey

from django_zrpc import context
from django_zrpc.client import options as client_options
from django_zrpc.client import tracing
from django_zrpc.client.as_user import ActsAsUser
from django_zrpc.client.attempts import Attempts
from django_zrpc.client.gevent.connection import CallByName, Client
from django_zrpc.client.gevent.pool import Pool
from django_zrpc.client.gevent.stream import PooledStream, Stream
from django_zrpc.client.options import ClientOptions
from django_zrpc.metrics import client as client_metrics

logger = logging.getLogger("django_zrpc.client")

# Sockets inherited through fork are kept referenced, never used or closed:
# closing them in the child could disturb the parent's.
_INHERITED: list[Any] = []


class _ThreadState:
    """The pools of one OS thread (and so one gevent hub) in one process."""

    def __init__(self) -> None:
        self.pid = client_options.pid
        self.pools: dict[str, Pool] = {}
        # The directory's version these pools were last matched against.
        self.version = -1

    def __del__(self) -> None:
        # The thread ended (a thread-per-request server does that after each
        # request): its hub will not run again, so close the sockets only.
        if self.pid == client_options.pid:
            for pool in self.pools.values():
                pool.abandon()


# Per OS thread, also under gevent's monkey-patching (whose threading.local is
# per greenlet): all greenlets of a thread share one hub, and so one set of pools.
_OSThreadLocal = monkey.get_original("threading", "local")


class RPCClient(ClientOptions, CallByName, ActsAsUser):
    """Call the functions served at ``endpoints`` through pooled connections."""

    def __init__(self, endpoints: str | Sequence[str], **options: Any) -> None:
        """``endpoints`` and the options of ``ClientOptions`` (``django_zrpc.client_options``)."""
        super().__init__(endpoints, **options)
        self._local = _OSThreadLocal()

    # -- calling ---------------------------------------------------------------

    @tracing.traced
    def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        """Call ``name``; return its result, or an iterator for a stream.

        A call that never ran (refused ``ServerBusy`` or ``ServerStopping``,
        or never delivered: ``ServerUnavailable``, ``HandshakeFailed``) is
        sent again, on another connection or endpoint, with a short backoff,
        until ``timeout`` runs out. A call that may have run (``LostRemote``,
        ``TimeoutExpired``, an error of the function) is not, unless it is
        ``idempotent`` (default: the client's): then ``LostRemote`` and
        ``CallInterrupted`` are retried too. Inside an RPC function, the call
        waits no longer than what is left of that function's caller's deadline.
        """
        if self._closed:
            raise RuntimeError(f"This RPCClient of {self.endpoints} is closed.")
        if self._contracts is not None:  # schema=: refuse a bad call before it is sent
            self._contracts.check(name, args, {**kwargs, **more} if kwargs else more)
        timeout = context.inherited_timeout(self.timeout if timeout is None else timeout)
        attempts = Attempts(self, name, timeout, idempotent)
        if not self._balancer.directory.looked:
            self._await_first_look(attempts.deadline)
        for _ in itertools.count():
            try:
                state = self._state()
                endpoint = attempts.choose(state)
                started = time.perf_counter()
                try:
                    result = self._call_once(
                        state,
                        endpoint,
                        name,
                        args,
                        kwargs,
                        more,
                        attempts.deadline,
                        attempts.retrying,
                    )
                except Exception as err:
                    client_metrics.record_outcome(endpoint, name, started, err)
                    raise
                client_metrics.record_outcome(endpoint, name, started)
                self._attempt_succeeded(endpoint)
                return result
            except Exception as err:
                gevent.sleep(attempts.pause_after(err))
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(
        self,
        state: _ThreadState,
        endpoint: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        more: dict[str, Any],
        deadline: float,
        retrying: bool = False,
    ) -> Any:
        tracing.attempt(endpoint)
        pool = state.pools.get(endpoint)
        if pool is None:
            pool = self._new_pool(state, endpoint)
        remaining = max(deadline - time.monotonic(), 0.001)
        # A retry never waits for room: see the call loop.
        connection = pool.acquire(0 if retrying else min(self.pool_timeout, remaining))
        try:
            result = connection.call(name, *args, timeout=remaining, kwargs=kwargs, **more)
        except BaseException as err:
            self._give_back_failed(pool, endpoint, connection, err)
            raise
        self._balancer.succeeded(endpoint)
        # Client makes Stream itself, never a subclass; isinstance() on an
        # abstract base class's subclass costs 0.4 us a call.
        if type(result) is Stream:
            return PooledStream(result, pool, connection)
        pool.release(connection)
        return result

    # -- connections -------------------------------------------------------------

    def connections(self) -> int:
        """Connections open in this thread's pools (idle or in use)."""
        return sum(pool.connections for pool in self._state().pools.values())

    def close(self) -> None:
        """Close this thread's connections; the client can no longer be used."""
        self._closed = True
        for pool in self._state().pools.values():
            pool.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _await_first_look(self, deadline: float) -> None:
        """Give a new directory until ``deadline`` to look once (a few ms, usually)."""
        for _ in range(100_000):
            if self._balancer.directory.looked or time.monotonic() >= deadline:
                return
            gevent.sleep(0.005)

    def _new_pool(self, state: _ThreadState, endpoint: str) -> Pool:
        options = self._connection_options()
        pool = state.pools[endpoint] = Pool(
            endpoint,
            lambda: Client(endpoint, **options),
            self.pool_size,
            self.calls_per_connection,
        )
        client_metrics.set_endpoint_up(endpoint, True)
        return pool

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None or state.pid != client_options.pid:
            if state is not None:
                _INHERITED.append(state)  # made before fork: never to be used
                self._balancer.after_fork()
            state = self._local.state = _ThreadState()
        return state
