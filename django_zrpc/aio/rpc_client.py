"""``AsyncRPCClient``: call RPC functions from async views, on asyncio, with no gevent.

    client = AsyncRPCClient("tcp://10.0.0.5:4242", timeout=5)
    ticket = await client.get_ticket(id=1)
    async for row in await client.ticket_list(100):
        ...

The asyncio counterpart of ``RPCClient``, with its options, its retry rule
(``django_zrpc.retry``) and its pool's bounds (``aio.pool``). Connections
belong to an event loop: each loop that uses the client (an ASGI server's one
loop; each ``asyncio.run`` of a test; each ``async_to_sync`` call) has its own
pools, and a loop's connections close when it shuts down.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import weakref
from collections.abc import Sequence
from typing import Any

from django_zrpc.aio.connection import AsyncConnection
from django_zrpc.aio.endpoints import choose_endpoint
from django_zrpc.aio.pool import AsyncPool
from django_zrpc.aio.stream import AsyncStream, PooledAsyncStream
from django_zrpc.client_options import check_options, validate_endpoints
from django_zrpc.core.calls_out import CallByName
from django_zrpc.curve import client_keys
from django_zrpc.discovery import DEFAULT_REFRESH, is_discovery
from django_zrpc.exceptions import HandshakeFailed, LostRemote, RemoteError, ServerUnavailable
from django_zrpc.retry import backoff, may_retry

logger = logging.getLogger("django_zrpc.client")


class _LoopState:
    """The pools of one event loop in one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pools: dict[str, AsyncPool] = {}


class AsyncRPCClient(CallByName):
    """Call the functions served at ``endpoints`` from coroutines, through pooled connections."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 30.0,
        heartbeat: float | None = 5.0,
        pool_size: int = 10,
        calls_per_connection: int = 100,
        pool_timeout: float | None = None,
        down_for: float = 5.0,
        connect_timeout: float = 1.0,
        idempotent: bool = False,
        refresh: float = DEFAULT_REFRESH,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_server: str | os.PathLike[str] | None = None,
    ) -> None:
        self.endpoints = validate_endpoints(endpoints)
        if any(is_discovery(endpoint) for endpoint in self.endpoints):
            # Issue 16 gave the asyncio client fixed endpoints; finding them
            # (django_zrpc.discovery) runs on gevent for now.
            raise ValueError(
                f"AsyncRPCClient calls fixed endpoints only, not {self.endpoints[0]!r}: give "
                "it 'tcp://host:port' endpoints (RPCClient follows dns:/// and redis:// ones)."
            )
        check_options(
            {
                "timeout": timeout,
                "heartbeat": heartbeat,
                "pool_size": pool_size,
                "calls_per_connection": calls_per_connection,
                "pool_timeout": pool_timeout,
                "down_for": down_for,
                "connect_timeout": connect_timeout,
                "idempotent": idempotent,
                "refresh": refresh,
            }
        )
        self.curve = client_keys(curve_secret, curve_server)
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.pool_size = pool_size
        self.calls_per_connection = calls_per_connection
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self.down_for = down_for
        self.connect_timeout = connect_timeout
        self.idempotent = idempotent
        # Per event loop, forgotten with it.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        # Sockets inherited through fork: kept referenced, never used or closed.
        self._inherited: list[_LoopState] = []
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopState] | None = None
        self._down_until: dict[str, float] = {}
        self._turn = itertools.count()
        self._closed = False

    # -- calling ---------------------------------------------------------------

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
        run and is ``idempotent``), until ``timeout`` runs out.
        """
        if self._closed:
            raise RuntimeError(f"This AsyncRPCClient of {self.endpoints} is closed.")
        timeout = self.timeout if timeout is None else timeout
        idempotent = self.idempotent if idempotent is None else idempotent
        deadline = time.monotonic() + timeout
        # Endpoints that refused this client's handshake: the same keys would
        # be refused again, so only the others are tried.
        refused: set[str] = set()
        for attempt in itertools.count():
            endpoint = self._choose_endpoint(refused)
            try:
                return await self._call_once(endpoint, name, args, kwargs, more, deadline)
            except Exception as err:
                if isinstance(err, HandshakeFailed):
                    refused.add(endpoint)
                    if refused.issuperset(self.endpoints):
                        raise
                pause = backoff(attempt)
                if not may_retry(err, idempotent) or time.monotonic() + pause >= deadline:
                    raise
                logger.info(
                    "Retrying rpc %s (attempt %d) after %s from %s: %s",
                    name,
                    attempt + 2,
                    type(err).__name__,
                    endpoint,
                    err,
                )
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(
        self,
        endpoint: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        more: dict[str, Any],
        deadline: float,
    ) -> Any:
        pool = self._pool(endpoint)
        remaining = max(deadline - time.monotonic(), 0.001)
        connection = await pool.acquire(min(self.pool_timeout, remaining))
        try:
            result = await connection.call(name, *args, timeout=remaining, kwargs=kwargs, **more)
        except (LostRemote, ServerUnavailable):
            # The server went silent, or was never reached: retire the
            # connection and avoid the endpoint for a while.
            pool.discard(connection)
            self._down_until[endpoint] = time.monotonic() + self.down_for
            raise
        except RemoteError as err:
            if err.name in ("ServerStopping", "CallInterrupted"):
                # The process behind this connection is going away.
                pool.discard(connection)
                if len(self.endpoints) > 1:
                    self._down_until[endpoint] = time.monotonic() + self.down_for
            else:
                pool.release(connection)  # a remote error: the connection is fine
            raise
        except BaseException:
            pool.release(connection)
            raise
        self._down_until.pop(endpoint, None)
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

    def _choose_endpoint(self, refused: set[str]) -> str:
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        pools = self._state().pools

        def in_flight(endpoint: str) -> int:
            pool = pools.get(endpoint)
            return pool.in_flight if pool is not None else 0

        return choose_endpoint(
            self.endpoints,
            refused,
            self._down_until,
            in_flight,
            time.monotonic(),
            next(self._turn),
        )

    def _pool(self, endpoint: str) -> AsyncPool:
        state = self._state()
        pool = state.pools.get(endpoint)
        if pool is None:
            pool = state.pools[endpoint] = AsyncPool(
                endpoint,
                lambda: AsyncConnection(
                    endpoint,
                    timeout=self.timeout,
                    heartbeat=self.heartbeat,
                    connect_timeout=self.connect_timeout,
                    curve=self.curve,
                ),
                self.pool_size,
                self.calls_per_connection,
            )
        return pool

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop and last[1].pid == os.getpid():
            return last[1]  # the usual case: one loop (an ASGI server's)
        state = self._states.get(loop)
        if state is None or state.pid != os.getpid():
            if state is not None:
                self._inherited.append(state)  # made before fork: never to be used
            state = self._states[loop] = _LoopState()
        # A weak reference: the last loop is not kept alive by its client.
        self._last = (weakref.ref(loop), state)
        return state
