"""A warning that a hostile or broken peer could repeat endlessly, logged at most once a second."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Log ``template % (count, detail)`` at most once a second; count what was held back."""

    def __init__(self, logger: logging.Logger, template: str) -> None:
        self.logger = logger
        self.template = template
        self._since = 0
        self._next_log = 0.0

    def record(self, detail: str) -> None:
        self._since += 1
        now = time.monotonic()
        if now >= self._next_log:
            self.logger.warning(self.template, self._since, detail)
            self._since = 0
            self._next_log = now + 1.0
