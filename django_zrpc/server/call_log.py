"""How the server logs each call's end, on the ``django_zrpc.server`` logger.

A mixin of ``engine.Server``. A call that went as its caller expected is
logged at INFO (or not at all, without ``log_calls``); one its function
failed in is logged at ERROR with its traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django_zrpc.server.state import State
from django_zrpc.wire import remote_errors

if TYPE_CHECKING:
    from django_zrpc.server.calls import Call

logger = logging.getLogger("django_zrpc.server")


class CallLog(State):
    """Log the end of each call, at a level that says whether it is a fault."""

    def _log(
        self,
        call: Call,
        elapsed_ms: float,
        outcome: str,
        error: Any = None,
        request_id: str | None = None,
    ) -> None:
        name = call.request.name
        if request_id is not None:
            name = f"{name} [request {request_id}]"
        if outcome == "OK":
            if self._log_calls:
                logger.info("rpc %s OK in %.1f ms", name, elapsed_ms)
        elif outcome == "lost":
            logger.warning("rpc %s lost its caller: %s", name, error)
        elif outcome == "deadline":
            logger.warning("rpc %s interrupted: %s", name, error)
        elif outcome == "cancelled":
            # A caller that stops reading a stream early: routine, not a fault.
            logger.info("rpc %s stopped: its caller cancelled it", name)
        elif outcome == "unknown":
            logger.warning("rpc %s: no such function is registered", name)
        elif error is not None and remote_errors.expected(error):
            # Raised for the caller to handle (a view's 404, say): routine, and
            # a traceback on every such call would bury the real faults.
            logger.info(
                "rpc %s raised %s in %.1f ms: %s", name, type(error).__name__, elapsed_ms, error
            )
        else:
            logger.error(
                "rpc %s failed in %.1f ms: %s: %s",
                name,
                elapsed_ms,
                type(error).__name__,
                error,
                exc_info=(type(error), error, error.__traceback__),
            )
