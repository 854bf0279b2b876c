"""What the server tells an observer about its calls: the seam for metrics, free of any library.

``server.engine.Server`` calls these methods at the few points where a call's
fate is decided; the base class does nothing. The Django side's
``django_zrpc.metrics.server.ServerMetrics`` turns them into Prometheus
metrics, so that the engine never imports prometheus_client, an optional
dependency.

Methods are called on the event loop, once or twice per call: they must be
quick and must not block or raise. What changes continuously (calls running
and waiting, workers busy) is not reported call by call but read when wanted
from ``Server.load()``, at no cost per call.
"""

from __future__ import annotations

#: Outcomes of a call that ended, as ``call_ended`` and ``call_refused`` name them.
OK = "ok"
ERROR = "error"
LOST = "lost"
CANCELLED = "cancelled"
#: The caller's deadline passed: before the call started (refused) or while it ran.
DEADLINE = "deadline"
BUSY = "busy"
STOPPING = "stopping"
BAD_REQUEST = "bad_request"


class Observer:
    """Do nothing; subclass to count what the server does."""

    def call_started(self, name: str, waited: float) -> None:
        """A worker took call ``name`` after it waited ``waited`` seconds for one."""

    def call_ended(self, name: str, outcome: str, seconds: float, error: str = "") -> None:
        """Call ``name`` ran for ``seconds``: ``OK``, ``ERROR`` (``error``: the type), ``LOST``...

        ``STOPPING`` is a call the server ended while stopping; ``CANCELLED``
        one whose caller closed its stream; ``DEADLINE`` one interrupted when
        its caller's deadline passed.
        """

    def call_refused(self, name: str, outcome: str) -> None:
        """Call ``name`` never ran: ``BUSY``, ``STOPPING``, ``LOST``, ``DEADLINE``..."""

    def call_denied(self, name: str, reason: str) -> None:
        """Call ``name`` was refused for its caller: ``server.access``'s ``reason``."""

    def stream_items_sent(self, name: str, count: int) -> None:
        """Stream ``name`` sent ``count`` items (reported once, when it ends)."""

    def frame_dropped(self) -> None:
        """A frame that could not be read, or a duplicate request, was dropped."""

    def handshake_refused(self) -> None:
        """A connection failed its handshake (a CURVE key refused, a protocol error)."""


#: The observer of a server given none.
NOTHING = Observer()
