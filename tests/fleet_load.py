"""Load for the fleet tests: callers calling ``server_pid`` until stopped, every outcome kept."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import gevent

from django_zrpc import RPCClient


@dataclass
class Load:
    """``callers`` greenlets calling ``client.server_pid()`` in a loop until ``stop()``."""

    client: RPCClient
    callers: int = 64
    #: (time, server pid) of each call that succeeded.
    answers: list[tuple[float, int]] = field(default_factory=list)
    #: (time, error) of each call that failed.
    failures: list[tuple[float, BaseException]] = field(default_factory=list)
    #: Seconds each caller waits after a call that succeeded (0: none).
    pause: float = 0.0

    def __post_init__(self) -> None:
        self._running = True
        self._greenlets = [gevent.spawn(self._call) for _ in range(self.callers)]

    def _call(self) -> None:
        for _ in range(1_000_000):
            if not self._running:
                return
            try:
                self.answers.append((time.monotonic(), self.client.server_pid()))
                if self.pause:
                    gevent.sleep(self.pause)
            except Exception as err:
                self.failures.append((time.monotonic(), err))
                gevent.sleep(0.01)

    def run_for(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def stop(self) -> None:
        self._running = False
        gevent.joinall(self._greenlets, timeout=30)

    def shares(self, since: float = 0.0) -> collections.Counter[int]:
        return collections.Counter(pid for at, pid in self.answers if at >= since)

    def first_answer_from(self, pid: int) -> float | None:
        return next((at for at, who in self.answers if who == pid), None)


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` (yielding to greenlets) until true or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        gevent.sleep(step)
    return bool(condition())
