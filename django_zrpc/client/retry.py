"""The retry rule of every client: send again only what never ran, unless it is idempotent.

And only while the endpoint's retry budget lasts (``RetryBudget``), after the
pause its server asked for (``pushback``). Free of gevent and sockets, so that
``RPCClient`` and an asyncio client share it.
"""

from __future__ import annotations

import random
import threading

from django_zrpc.exceptions import (
    LostRemote,
    PoolExhausted,
    RemoteError,
    ServerUnavailable,
    TimeoutExpired,
)

#: Errors of a server that say the call started and may have done part of its work.
MAY_HAVE_RUN = frozenset({"CallInterrupted", "LostRemote"})


def may_retry(error: BaseException, idempotent: bool) -> bool:
    """Whether a call that failed with ``error`` may be sent again."""
    if isinstance(error, ServerUnavailable):
        return True  # never delivered (HandshakeFailed too); PoolExhausted is not one
    if isinstance(error, RemoteError):
        # Refusals (ServerBusy, ServerStopping) are marked as such by the
        # server: a function's own exception of the same name is not one.
        if getattr(error, "never_started", False):
            return True
        return idempotent and getattr(error, "name", None) in MAY_HAVE_RUN
    return idempotent and isinstance(error, LostRemote)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 20 ms doubling to 0.5 s, jittered."""
    return min(0.02 * 2**attempt, 0.5) * random.uniform(0.5, 1.0)


def pushback(error: BaseException) -> float | None:
    """The seconds the server that refused with ``error`` asked its callers to wait, if it did."""
    seconds = getattr(error, "retry_after", None)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        return float(seconds)
    return None


def counts_against(error: BaseException) -> bool:
    """Whether ``error`` says the endpoint is overloaded, and so spends its retry budget.

    A ``ServerBusy`` refusal and a call that timed out: both say the server
    could not keep up, and a retry would add to its load. A refusal of a
    server that is stopping (a reload of ``runrpc --workers``), an
    unreachable or a lost server spend nothing: their retries go to another
    connection, process or endpoint, and a reload under load must lose no
    call. Nor does a function's own error (an answer), or a pool full on the
    caller's side.
    """
    if isinstance(error, ServerUnavailable | PoolExhausted):
        return False
    if isinstance(error, RemoteError):
        return bool(getattr(error, "never_started", False)) and error.name == "ServerBusy"
    return isinstance(error, TimeoutExpired)


class RetryBudget:
    """A token bucket that stops retries while an endpoint fails more than it succeeds.

    gRPC's retry throttling (gRFC A6): the bucket starts full with
    ``max_tokens``; each failed attempt takes one token, each success gives
    back ``ratio`` of one; calls are sent again only while more than half
    the tokens are left. A server shedding load so gets its refusals back
    as fast failures, not as retries that queue again until their deadline,
    while one that refuses a call now and then (fewer than about ``ratio``
    of them) still has each refusal retried.
    """

    def __init__(self, max_tokens: float, ratio: float) -> None:
        self.max_tokens = float(max_tokens)
        self.ratio = float(ratio)
        self.tokens = self.max_tokens
        # Threads sharing a client (gunicorn's gthread workers) update it.
        self._lock = threading.Lock()

    def failed(self) -> None:
        with self._lock:
            self.tokens = max(self.tokens - 1.0, 0.0)

    def succeeded(self) -> None:
        if self.tokens < self.max_tokens:  # a full bucket, the usual case, costs no lock
            with self._lock:
                self.tokens = min(self.tokens + self.ratio, self.max_tokens)

    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2
