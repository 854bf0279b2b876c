"""Where a client's next call goes, and what a failure there says: one rule for both clients.

``RPCClient`` (gevent) and ``AsyncRPCClient`` (asyncio) each keep pools per
thread or per event loop; this keeps what they share: the directory of
addresses (``django_zrpc.discovery``), which endpoints are down and until
when, the choice of the endpoint with the fewest calls in flight, and the
closing of pools whose address left. Free of gevent and asyncio.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from django_zrpc.discovery import directory_for
from django_zrpc.exceptions import LostRemote, RemoteError, ServerUnavailable
from django_zrpc.metrics import client as client_metrics

logger = logging.getLogger("django_zrpc.client")

#: Refusals after which the process behind a connection is going away: a new
#: connection (another --workers process, a restarted server) is wanted.
_LEAVING = frozenset({"ServerStopping", "CallInterrupted"})


class Balancer:
    """The endpoints of one client: where calls go, and which are down."""

    def __init__(self, endpoints: Sequence[str], refresh: float, down_for: float) -> None:
        self.endpoints = list(endpoints)
        self.refresh = refresh
        self.down_for = down_for
        self.directory = directory_for(self.endpoints, refresh)
        self._down_until: dict[str, float] = {}
        self._turn = itertools.count()

    @property
    def source(self) -> str:
        return self.directory.source

    def after_fork(self) -> None:
        """A child made by fork: the directory's lookup thread did not come along."""
        self.directory = directory_for(self.endpoints, self.refresh)

    def all_refused(self, refused: set[str]) -> bool:
        """Whether every address refused this client's handshake."""
        return refused.issuperset(self.directory.addresses)

    def choose(self, state: Any, refused: set[str]) -> str:
        """The address, not refused nor down, with the fewest calls in flight in ``state``.

        ``state``: one thread's or event loop's ``pools`` (address -> pool,
        each with ``calls_in_flight``) and the directory ``version`` they match.

        Ties are taken in turn, so that a light load spreads too; when every
        address is down, the one that failed longest ago (it may be back).
        Raises ``ServerUnavailable`` when the directory lists none.
        """
        directory = self.directory
        addresses = directory.addresses
        if state.version != directory.version:
            self._retire_gone(state, addresses)
            state.version = directory.version
        if len(addresses) == 1 and not refused:
            return addresses[0]
        candidates = [e for e in addresses if e not in refused]
        if not candidates:
            raise ServerUnavailable(directory.no_address())
        now = time.monotonic()
        down_until = self._down_until
        up = [e for e in candidates if down_until.get(e, 0.0) <= now]
        if not up:
            return min(candidates, key=lambda e: down_until.get(e, 0.0))
        start = next(self._turn) % len(up)
        pools = state.pools
        best, fewest = up[start], None
        for endpoint in up[start:] + up[:start]:
            pool = pools.get(endpoint)
            calls = pool.calls_in_flight if pool is not None else 0
            if fewest is None or calls < fewest:
                best, fewest = endpoint, calls
        if down_until and best in down_until:
            # Its time down is over: this call tries it, and the others keep
            # avoiding it until the try answers (succeeded() or failed()).
            down_until[best] = now + self.down_for
        return best

    def failed(self, endpoint: str, error: BaseException) -> bool:
        """Note a call's failure at ``endpoint``; return whether to retire its connection.

        Unreachable (``ServerUnavailable``): avoided for ``down_for``, doubled
        at each such failure in a row (``Directory.connect_failed``), and
        looked up again soon; silent (``LostRemote``): avoided for
        ``down_for``, looked up again soon. Stopping (``ServerStopping``,
        ``CallInterrupted``): a new connection reaches another process, and
        with others to go to it is avoided too; so is one that said
        ``ServerBusy``. A function's own error says nothing of the endpoint.
        """
        if isinstance(error, ServerUnavailable):
            # Never reached: skipped for longer each time in a row.
            self._mark_down(endpoint, for_=self.directory.connect_failed(endpoint, self.down_for))
            self.directory.refresh_soon()
            return True
        if isinstance(error, LostRemote):
            self._mark_down(endpoint)
            self.directory.refresh_soon()
            return True
        if isinstance(error, RemoteError):
            if error.name in _LEAVING:
                self._mark_down(endpoint, only_if_others=True)
                return True
            if error.name == "ServerBusy":
                self._mark_down(endpoint, only_if_others=True)
        return False

    def succeeded(self, endpoint: str) -> None:
        if self._down_until.pop(endpoint, None) is not None:
            self.directory.connected(endpoint)
            client_metrics.set_endpoint_up(endpoint, True)

    def _mark_down(
        self, endpoint: str, only_if_others: bool = False, for_: float | None = None
    ) -> None:
        if not only_if_others or len(self.directory.addresses) > 1:
            self._down_until[endpoint] = time.monotonic() + (for_ or self.down_for)
            client_metrics.set_endpoint_up(endpoint, False)

    def _retire_gone(self, state: Any, addresses: tuple[str, ...]) -> None:
        """Close the pools of addresses that left; their calls in flight end as they would."""
        for endpoint in [e for e in state.pools if e not in addresses]:
            # Closing a pool lets other callers run, and one of them may be
            # retiring the same departed addresses: each pool is closed once.
            pool = state.pools.pop(endpoint, None)
            if pool is None:
                continue
            logger.info("%s left %s; closing its connections.", endpoint, self.source)
            pool.close()
            self._down_until.pop(endpoint, None)
