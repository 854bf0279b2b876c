"""``AsyncRPCClient``: call RPC functions from async views, on asyncio, with no gevent.

    client = AsyncRPCClient("tcp://10.0.0.5:4242", timeout=5)
    ticket = await client.get_ticket(id=1)
    async for row in await client.ticket_list(100):
        ...

The asyncio counterpart of ``RPCClient``, with its options, its retry rule
(``django_zrpc.client.retry``) and its pool's bounds (``client.aio.pool``).
Connections belong to an event loop: each loop that uses the client (an ASGI server's one
loop; each ``asyncio.run`` of a test; each ``async_to_sync`` call) has its own
pools, and a loop's connections close when it shuts down.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

from django_zrpc import context
from django_zrpc.client import options as client_options
from django_zrpc.client import tracing
from django_zrpc.client.aio.connection import AsyncConnection
from django_zrpc.client.aio.pool import AsyncPool
from django_zrpc.client.aio.stream import AsyncStream, PooledAsyncStream
from django_zrpc.client.as_user import AsyncActsAsUser
from django_zrpc.client.attempts import Attempts
from django_zrpc.client.options import ClientOptions
from django_zrpc.metrics import client as client_metrics
from django_zrpc.wire.calls_out import CallByName

logger = logging.getLogger("django_zrpc.client")


class _LoopState:
    """The pools of one event loop in one process."""

    def __init__(self) -> None:
        self.pid = client_options.pid
        self.pools: dict[str, AsyncPool] = {}
        # The directory's version these pools were last matched against.
        self.version = -1


class AsyncRPCClient(ClientOptions, CallByName, AsyncActsAsUser):
    """Call the functions served at ``endpoints`` from coroutines, through pooled connections."""

    def __init__(self, endpoints: str | Sequence[str], **options: Any) -> None:
        """``endpoints`` and the options of ``ClientOptions`` (``django_zrpc.client.options``)."""
        super().__init__(endpoints, **options)
        # Per event loop, forgotten with it.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        # Sockets inherited through fork: kept referenced, never used or closed.
        self._inherited: list[_LoopState] = []
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopState] | None = None

    # -- calling ---------------------------------------------------------------

    @tracing.traced_async
    async def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        """Call ``name``; return its result, or an async iterator for a stream.

        Sent again, as ``RPCClient.call`` does, when it never ran (or may have
        run and is ``idempotent``), until ``timeout`` runs out. Inside an RPC
        function, the call waits no longer than what is left of that
        function's caller's deadline.
        """
        if self._closed:
            raise RuntimeError(f"This AsyncRPCClient of {self.endpoints} is closed.")
        if self._contracts is not None:  # schema=: refuse a bad call before it is sent
            self._contracts.check(name, args, {**kwargs, **more} if kwargs else more)
        timeout = context.inherited_timeout(self.timeout if timeout is None else timeout)
        attempts = Attempts(self, name, timeout, idempotent)
        if not self._balancer.directory.looked:
            await self._await_first_look(attempts.deadline)
        for _ in itertools.count():
            try:
                state = self._state()
                endpoint = attempts.choose(state)
                started = time.perf_counter()
                try:
                    result = await self._call_once(
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
                await asyncio.sleep(attempts.pause_after(err))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(
        self,
        state: _LoopState,
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
        connection = await pool.acquire(0 if retrying else min(self.pool_timeout, remaining))
        try:
            result = await connection.call(name, *args, timeout=remaining, kwargs=kwargs, **more)
        except BaseException as err:
            self._give_back_failed(pool, endpoint, connection, err)
            raise
        self._balancer.succeeded(endpoint)
        if isinstance(result, AsyncStream):
            return PooledAsyncStream(result, pool, connection)
        pool.release(connection)
        return result

    # -- connections -------------------------------------------------------------

    def connections(self) -> int:
        """Connections open in this event loop's pools (idle or in use)."""
        return sum(pool.connections for pool in self._state().pools.values())

    def close(self) -> None:
        """Close the connections of this loop, or of every loop not running; stop calls.

        From inside a loop, its connections. From outside any loop (a
        script's end, a test's teardown), those of the loops that are not
        running now; a loop that runs in another thread keeps its own until
        it shuts down.
        """
        self._closed = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, state in list(self._states.items()):
            if loop is running or (running is None and not loop.is_running()):
                for pool in state.pools.values():
                    pool.close()

    async def aclose(self) -> None:
        """Close this loop's connections (``close()``, for ``async with``)."""
        self.close()

    async def __aenter__(self) -> AsyncRPCClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    async def _await_first_look(self, deadline: float) -> None:
        """Give a new directory until ``deadline`` to look once (a few ms, usually)."""
        for _ in range(100_000):
            if self._balancer.directory.looked or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.005)

    def _new_pool(self, state: _LoopState, endpoint: str) -> AsyncPool:
        options = self._connection_options()
        pool = state.pools[endpoint] = AsyncPool(
            endpoint,
            lambda: AsyncConnection(endpoint, **options),
            self.pool_size,
            self.calls_per_connection,
        )
        client_metrics.set_endpoint_up(endpoint, True)
        return pool

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop and last[1].pid == client_options.pid:
            return last[1]  # the usual case: one loop (an ASGI server's)
        state = self._states.get(loop)
        if state is None or state.pid != client_options.pid:
            if state is not None:
                self._inherited.append(state)  # made before fork: never to be used
                self._balancer.after_fork()
            state = self._states[loop] = _LoopState()
        # A weak reference: the last loop is not kept alive by its client.
        self._last = (weakref.ref(loop), state)
        return state
