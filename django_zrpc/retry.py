"""The retry rule of every client: send again only what never ran, unless it is idempotent.

Free of gevent and sockets, so that ``RPCClient`` and an asyncio client share it.
"""

from __future__ import annotations

import random

from django_zrpc.exceptions import LostRemote, RemoteError, ServerUnavailable

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
