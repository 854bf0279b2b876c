"""A warning that a hostile or broken peer could repeat endlessly, logged at most once a second."""

from __future__ import annotations

import logging
import time

import gevent


class RateLimitedLog:
    """Log ``template % (count, detail)`` at most once a second; count what was held back.

    What is held back is logged when its second is over, so a burst is
    counted in full even when nothing follows it.
    """

    def __init__(self, logger: logging.Logger, template: str) -> None:
        self.logger = logger
        self.template = template
        self._since = 0
        self._latest = ""
        self._next_log = 0.0
        self._flush_scheduled = False

    def record(self, detail: str) -> None:
        self._since += 1
        self._latest = detail
        now = time.monotonic()
        if now >= self._next_log:
            self._log(now)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            gevent.spawn_later(self._next_log - now, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        now = time.monotonic()
        if now < self._next_log:  # logged again meanwhile: its second is not over
            if self._since:
                self._flush_scheduled = True
                gevent.spawn_later(self._next_log - now, self._flush)
        elif self._since:
            self._log(now)

    def _log(self, now: float) -> None:
        self.logger.warning(self.template, self._since, self._latest)
        self._since = 0
        self._next_log = now + 1.0
