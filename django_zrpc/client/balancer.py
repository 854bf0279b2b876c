"""Where a client's next call goes, and what a failure there says: one rule for both clients.

``RPCClient`` (gevent) and ``AsyncRPCClient`` (asyncio) each keep pools per
thread or per event loop; this keeps what they share: the directory of
addresses (``django_zrpc.discovery``), which endpoints are down and until
when, the choice of the endpoint with the fewest calls in flight, and the
closing of pools whose address left, and the ejection of outliers: an
endpoint that stopped answering while the others answer (a stopped process, a
frozen VM) takes no calls for a time that grows with each ejection, and then
one probe call tells whether it is back. Free of gevent and asyncio.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from django_zrpc import conf
from django_zrpc.discovery import directory_for
from django_zrpc.exceptions import LostRemote, RemoteError, ServerUnavailable, TimeoutExpired
from django_zrpc.metrics import client as client_metrics

logger = logging.getLogger("django_zrpc.client")

#: Refusals after which the process behind a connection is going away: a new
#: connection (another --workers process, a restarted server) is wanted.
_LEAVING = frozenset({"ServerStopping", "CallInterrupted"})

#: The longest ejection, however often an endpoint was ejected (gRFC A50's
#: max_ejection_time default).
MAX_EJECTION = 300.0
#: Seconds between two looks for stalled endpoints: a look walks the
#: endpoints, a call only notes when it was sent.
_SCAN_EVERY = 0.05


class Balancer:
    """The endpoints of one client: where calls go, and which are down."""

    def __init__(self, endpoints: Sequence[str], refresh: float, down_for: float) -> None:
        self.endpoints = list(endpoints)
        self.refresh = refresh
        self.down_for = down_for
        self.directory = directory_for(self.endpoints, refresh)
        self._down_until: dict[str, float] = {}
        # The endpoints whose time down is over and that one call now tries.
        self._trying: set[str] = set()
        self._turn = itertools.count()
        # Read once: the call path reads no settings.
        self.stall = conf.get("OUTLIER_STALL")
        self.failures_to_eject = conf.get("OUTLIER_FAILURES")
        self.eject_for = conf.get("OUTLIER_EJECT_FOR")
        self.max_ejected_share = conf.get("OUTLIER_MAX_EJECTED")
        # endpoint -> when the first call went there since its last answer.
        self._unanswered_since: dict[str, float] = {}
        # endpoint -> calls in a row that timed out or found it silent.
        self._failures: dict[str, int] = {}
        # endpoint -> (ejected until, when ejected, why); and the probe call
        # in flight to an endpoint whose ejection ended: endpoint -> sent at.
        self._ejected: dict[str, tuple[float, float, str]] = {}
        self._probing: dict[str, float] = {}
        # endpoint -> (ejections, when it last returned): each ejection lasts
        # eject_for times their number, forgotten as it stays healthy.
        self._ejections: dict[str, tuple[int, float]] = {}
        self._next_scan = 0.0

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
        if now >= self._next_scan and self.stall is not None:
            self._next_scan = now + _SCAN_EVERY
            self._eject_stalled(up, now)
        if self._ejected:
            probe = self._probe_due(up, now)
            if probe is not None:
                return probe
            up = [e for e in up if e not in self._ejected] or up
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
            self._trying.add(best)
        self._unanswered_since.setdefault(best, now)
        return best

    def failed(self, endpoint: str, error: BaseException) -> bool:
        """Note a call's failure at ``endpoint``; return whether to retire its connection.

        Unreachable (``ServerUnavailable``): avoided for ``down_for``, doubled
        at each such failure in a row (``Directory.connect_failed``), and
        looked up again soon; silent (``LostRemote``): avoided for
        ``down_for``, looked up again soon. Stopping (``ServerStopping``,
        ``CallInterrupted``): a new connection reaches another process, and
        with others to go to it is avoided too; so is one that said
        ``ServerBusy``. A function's own error says nothing of the endpoint
        but that it answers. Timeouts and silences in a row
        (``ZRPC_OUTLIER_FAILURES``) eject it.
        """
        if isinstance(error, TimeoutExpired | LostRemote) and not isinstance(
            error, ServerUnavailable
        ):
            self._count_failure(endpoint)
        if isinstance(error, ServerUnavailable):
            self._unreachable(endpoint)
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
            else:
                self.answered(endpoint)
        elif endpoint in self._probing and not isinstance(error, Exception):
            self._probing.pop(endpoint, None)  # cancelled: the next call probes
        return False

    def succeeded(self, endpoint: str) -> None:
        self._trying.discard(endpoint)
        if self._down_until.pop(endpoint, None) is not None:
            self.directory.connected(endpoint)
            client_metrics.set_endpoint_up(endpoint, True)
        self.answered(endpoint)

    def answered(self, endpoint: str) -> None:
        """``endpoint`` answered a call: it is not stalled."""
        self._unanswered_since.pop(endpoint, None)
        if self._failures:
            self._failures.pop(endpoint, None)
        if self._ejected and endpoint in self._ejected:
            self._return(endpoint)

    def _unreachable(self, endpoint: str) -> None:
        """Skip ``endpoint``, which was never reached, for longer each time in a row.

        The calls that waited for the same connection fail together, and
        count as one: a stopped process's kernel still takes connections, so
        every call sent to it on a new one fails as unreachable at once, and
        counted apart they would keep it away for a minute after it resumes.
        The next failure that counts is the try made when its time is up.
        """
        if endpoint not in self._trying and self._down_until.get(endpoint, 0.0) > time.monotonic():
            return
        self._trying.discard(endpoint)
        self._mark_down(endpoint, for_=self.directory.connect_failed(endpoint, self.down_for))
        self.directory.refresh_soon()

    # -- outliers --------------------------------------------------------------

    def _max_ejected(self) -> int:
        """How many endpoints may be ejected at once: a share, at least one of two or more.

        gRFC A50's 10% rounds to none of a few servers, the usual fleet here;
        ejecting one of two still leaves one to take the calls.
        """
        count = len(self.directory.addresses)
        if count < 2:
            return 0
        return max(1, math.floor(count * self.max_ejected_share))

    def _eject_stalled(self, up: list[str], now: float) -> None:
        """Eject an endpoint that has not answered for ``stall`` seconds while others answer.

        A stopped process answers nothing, yet its calls in flight only fail
        when their timeouts run out, and meanwhile it looks the least loaded
        to every caller whose calls went elsewhere.
        """
        since = self._unanswered_since
        stall = self.stall
        silent = [e for e in up if now - since.get(e, now) > stall and e not in self._ejected]
        if not silent or len(silent) == len(up):
            return  # all silent: the network, or every call is slow; nothing stands out
        for endpoint in silent:
            waited = now - since[endpoint]
            self._eject(
                endpoint,
                now,
                f"no answer for {waited:.1f} s while {len(up) - len(silent)} "
                f"other endpoint(s) answered",
            )

    def _count_failure(self, endpoint: str) -> None:
        if endpoint in self._probing:
            self._probing.pop(endpoint, None)
            self._eject(endpoint, time.monotonic(), "its probe call failed", force=True)
            return
        failures = self._failures[endpoint] = self._failures.get(endpoint, 0) + 1
        if failures >= self.failures_to_eject and endpoint not in self._ejected:
            why = f"{failures} calls in a row timed out or lost it"
            self._eject(endpoint, time.monotonic(), why)

    def _eject(self, endpoint: str, now: float, why: str, force: bool = False) -> None:
        ejected = self._ejected
        if not force and endpoint not in ejected and len(ejected) >= self._max_ejected():
            return
        count, returned = self._ejections.get(endpoint, (0, now))
        # As gRFC A50: the time grows with each ejection (a failed probe's
        # too), and an endpoint healthy for a base time since it returned
        # has one fewer counted.
        if endpoint not in ejected:
            count = max(0, count - int((now - returned) // self.eject_for))
        count += 1
        self._ejections[endpoint] = (count, returned)
        seconds = min(self.eject_for * count, max(MAX_EJECTION, self.eject_for))
        if endpoint not in ejected:
            client_metrics.ejected(endpoint)
            logger.warning(
                "%s is ejected for %.0f s: %s. Calls go to the other endpoints; one probe "
                "call then tells whether it is back.",
                endpoint,
                seconds,
                why,
            )
            ejected[endpoint] = (now + seconds, now, why)
        else:
            logger.warning("%s stays ejected for %.0f s more: %s.", endpoint, seconds, why)
            ejected[endpoint] = (now + seconds, ejected[endpoint][1], why)
        self._failures.pop(endpoint, None)

    def _probe_due(self, up: list[str], now: float) -> str | None:
        """An ejected endpoint whose time is up and that no probe is testing, now probing."""
        for endpoint, (until, _, _) in self._ejected.items():
            if until > now or endpoint not in up:
                continue
            # A probe that never reported (its caller gave up before sending,
            # say) is taken as lost after a base ejection time.
            if now - self._probing.get(endpoint, -math.inf) < self.eject_for:
                continue
            self._probing[endpoint] = now
            self._unanswered_since.setdefault(endpoint, now)
            return endpoint
        return None

    def _return(self, endpoint: str) -> None:
        now = time.monotonic()
        _, since, _ = self._ejected.pop(endpoint)
        self._probing.pop(endpoint, None)
        count, _ = self._ejections.get(endpoint, (1, now))
        self._ejections[endpoint] = (count, now)
        client_metrics.returned(endpoint)
        logger.info(
            "%s answers again after %.1f s ejected; it takes calls again.", endpoint, now - since
        )

    def _mark_down(
        self, endpoint: str, only_if_others: bool = False, for_: float | None = None
    ) -> None:
        if not only_if_others or len(self.directory.addresses) > 1:
            self._down_until[endpoint] = time.monotonic() + (for_ or self.down_for)
            # Its silence while down is not a stall: it is judged afresh when back.
            self._unanswered_since.pop(endpoint, None)
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
            self._trying.discard(endpoint)
            self._unanswered_since.pop(endpoint, None)
            if self._ejected.pop(endpoint, None) is not None:
                client_metrics.returned(endpoint)
