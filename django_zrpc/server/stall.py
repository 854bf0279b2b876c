"""A warning when the event loop stops turning, naming the RPC call that holds it.

gevent ships a monitor thread that reports a blocked loop
(``gevent.config.monitor_thread``, ``EventLoopBlocked``), and it is not used
here for two reasons. It traces every greenlet switch to know which greenlet
ran: measured on the 2-core development machine (2026-11-29), a ping-pong
between two greenlets went from 6.6-7.0 to 9.0-9.3 µs per round trip with it
on, and a call crosses several switches on each side. And it prints a report
of every greenlet's stack to stderr, where the operator needs one line naming
the function to register with ``blocking=True``. This watch costs one wake-up
of the loop every 0.1 s.
"""

from __future__ import annotations

import logging
import sys
import time
from types import CodeType

import gevent
from gevent import monkey

logger = logging.getLogger("django_zrpc.server")


class StallWatch:
    """Log when the event loop stops turning, naming the call that holds it.

    A greenlet stamps the time every tenth of a second; an OS thread checks the
    stamp. When it is older than ``after`` seconds, some code runs without ever
    yielding (CPU-bound work, or a driver that blocks): heartbeats and every
    other call wait for it. The loop thread's innermost frame of ``holder``
    (the server's code that runs one call) names the call, by its local
    ``request``.
    """

    def __init__(self, after: float, holder: CodeType) -> None:
        self.after = after
        self._holder = holder
        self._stamp = time.monotonic()
        # The OS thread's id (patched threading.get_ident() gives a greenlet's).
        self._loop_thread = monkey.get_original("_thread", "get_ident")()
        self._running = True

    def run(self) -> None:
        start_thread = monkey.get_original("_thread", "start_new_thread")
        start_thread(self._watch, ())
        try:
            while True:
                self._stamp = time.monotonic()
                gevent.sleep(0.1)
        finally:
            self._running = False

    def _watch(self) -> None:
        sleep = monkey.get_original("time", "sleep")
        reported = False
        while self._running:
            sleep(0.25)
            stalled = time.monotonic() - self._stamp
            if stalled < self.after:
                reported = False
            elif not reported:
                reported = True
                name = self._blocking_call()
                logger.warning(
                    "The event loop has not turned for %.1f s%s: heartbeats and other "
                    "calls wait. Register CPU-bound functions with "
                    "@rpc.register(blocking=True).",
                    stalled,
                    f", held by rpc {name}" if name else "",
                )

    def _blocking_call(self) -> str | None:
        frame = sys._current_frames().get(self._loop_thread)
        while frame is not None:
            if frame.f_code is self._holder:
                request = frame.f_locals.get("request")
                return getattr(request, "name", None)
            frame = frame.f_back
        return None
