"""The call log of ``runrpc``: one line per call on stderr, unless LOGGING says otherwise."""

from __future__ import annotations

import logging
import sys
import time


class _CallLogFormatter(logging.Formatter):
    """Format the time once per second, not once per line: a line is logged per call."""

    _second = -1
    _formatted = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._formatted = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._formatted},{int(record.msecs):03d}"


def ensure_log_handler() -> None:
    """Show the per-call log at INFO unless the project's LOGGING handles it."""
    logger = logging.getLogger("django_zrpc")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CallLogFormatter("[%(asctime)s] %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
