"""One call's attempts, for both clients: where each goes, and whether and when to try again.

``RPCClient.call`` and ``AsyncRPCClient.call`` are the same loop but for how
they wait (``gevent.sleep``, ``await asyncio.sleep``); what the loop decides
lives here once: the endpoints refused, the attempt number, the error being
retried, what the attempts that reached no server found, and the rule of
the retry rule of ``retry.py``, the endpoint's budget, the server's pushback.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django_zrpc.client.retry import backoff, counts_against, may_retry, pushback
from django_zrpc.exceptions import HandshakeFailed, PoolExhausted
from django_zrpc.metrics import client as client_metrics
from django_zrpc.wire import unreachable

if TYPE_CHECKING:
    from django_zrpc.client.options import ClientOptions

logger = logging.getLogger("django_zrpc.client")


class Attempts:
    """The attempts of one call ``name`` of ``client``, within ``timeout`` seconds."""

    __slots__ = (
        "client",
        "deadline",
        "endpoint",
        "idempotent",
        "last",
        "name",
        "number",
        "refused",
        "retrying",
        "timeout",
        "unreached",
    )

    def __init__(
        self, client: ClientOptions, name: str, timeout: float, idempotent: bool | None
    ) -> None:
        self.client = client
        self.name = name
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.idempotent = idempotent
        # Endpoints that refused this client's handshake: the same keys would
        # be refused again, so only the others are tried.
        self.refused: set[str] = set()
        self.number = 0
        self.retrying = False  # the next attempt is a retry: it never waits for a full pool
        self.endpoint = client._balancer.source  # in the log, if none could be chosen
        self.last: Exception | None = None  # the error being retried
        # What the attempts that reached no server found, to say in the last
        # error; made at the first failure, so that a call that works pays nothing.
        self.unreached: unreachable.Attempts | None = None

    def choose(self, state: Any) -> str:
        """Return the endpoint of the next attempt, among ``state``'s pools."""
        balancer = self.client._balancer
        try:
            self.endpoint = endpoint = balancer.choose(state, self.refused)
        except Exception:
            self.endpoint = balancer.source  # in the log: none could be chosen
            raise
        return endpoint

    def pause_after(self, error: Exception) -> float:
        """Return the seconds to wait before the next attempt after ``error``, or raise.

        Raised: ``error`` when it may not be sent again; the error being
        retried when a retry finds its pool full (it would queue behind the
        calls that filled it until its deadline: the caller learns now why
        the call failed); one ``ServerUnavailable`` naming every attempt when
        none reached a server.
        """
        client, endpoint = self.client, self.endpoint
        if isinstance(error, PoolExhausted):
            if self.last is None:
                raise error
            client_metrics.record_retry_refused(endpoint, "pool_full")
            raise self.last from None
        if self.unreached is None:
            self.unreached = unreachable.Attempts(self.name, started=self.deadline - self.timeout)
        self.unreached.note(error)
        if self.idempotent is None:
            self.idempotent = client.idempotent
        pause = self._pause(error, client, endpoint, self.idempotent)
        if pause is None:
            final = self.unreached.final(error)
            if final is None:
                raise error
            raise final from None
        self.last = error
        self.number += 1
        self.retrying = True
        return pause

    def _pause(
        self, error: Exception, client: ClientOptions, endpoint: str, idempotent: bool
    ) -> float | None:
        """Seconds to wait before sending the call again after ``error``; None: raise it.

        An endpoint that refused the handshake is not tried again for this
        call (the same keys would be refused). Otherwise ``retry.py``'s rule,
        while ``endpoint``'s retry budget lasts, after the pause its server
        asked for (else a backoff), within the call's deadline and while
        the client is open.
        """
        budget = None
        if client.retry_budget and counts_against(error):
            budget = client._budget(endpoint)
            budget.failed()
        if isinstance(error, HandshakeFailed):
            self.refused.add(endpoint)
            if client._balancer.all_refused(self.refused):
                return None
        if client._closed or not may_retry(error, idempotent):
            return None
        if budget is not None and not budget.allows_retry():
            client_metrics.record_retry_refused(endpoint, "budget")
            return None
        # The server's pushback is its guess of when it will have room: a
        # floor under the backoff, which still grows if the guess was short.
        pause = max(backoff(self.number), pushback(error) or 0.0)
        if time.monotonic() + pause >= self.deadline:
            return None
        client_metrics.record_retry(endpoint, self.name, error)
        logger.info(
            "Retrying rpc %s (attempt %d) after %s from %s: %s",
            self.name,
            self.number + 2,
            type(error).__name__,
            endpoint,
            error,
        )
        return pause
