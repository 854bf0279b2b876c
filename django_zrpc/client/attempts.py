"""One call's attempts, for both clients: where each goes, and whether and when to try again.

``RPCClient.call`` and ``AsyncRPCClient.call`` are the same loop but for how
they wait (``gevent.sleep``, ``await asyncio.sleep``); what the loop decides
lives here once: the endpoints refused, the attempt number, the error being
retried, what the attempts that reached no server found, and the rule of
``ClientOptions._retry_pause`` (the retry rule, the budget, the pushback).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django_zrpc.exceptions import PoolExhausted
from django_zrpc.metrics import client as client_metrics
from django_zrpc.wire import unreachable

if TYPE_CHECKING:
    from django_zrpc.client.options import ClientOptions


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
        pause = client._retry_pause(
            error, self.number, endpoint, self.name, self.refused, self.idempotent, self.deadline
        )
        if pause is None:
            final = self.unreached.final(error)
            if final is None:
                raise error
            raise final from None
        self.last = error
        self.number += 1
        self.retrying = True
        return pause
