"""A service's addresses as last seen, and the thread that keeps them current."""

from __future__ import annotations

import importlib
import logging
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("django_zrpc.discovery")

#: Seconds an address that keeps failing to connect is skipped, at most.
MAX_CONNECT_BACKOFF = 60.0


class Directory:
    """The addresses calls may go to. Read without locks: ``addresses`` is replaced whole."""

    def __init__(self, source: str, addresses: Sequence[str] = ()) -> None:
        self.source = source
        self.addresses: tuple[str, ...] = tuple(addresses)
        #: Goes up each time ``addresses`` changes, so users notice cheaply.
        self.version = 0
        #: Why there are no addresses (or why they may be stale), for errors and logs.
        self.problem: str | None = None
        #: Whether the source was looked at once (successfully or not).
        self.looked = True
        # Address -> connections failed in a row. Kept here, not per client:
        # every client of the source skips an address that one found dead.
        self._connect_failures: dict[str, int] = {}

    def update(self, addresses: Sequence[str]) -> None:
        new = tuple(sorted(set(addresses)))
        if new != self.addresses:
            logger.info("%s: %s", self.source, ", ".join(new) if new else "no instance now")
            self.addresses = new
            self.version += 1
            for gone in [a for a in self._connect_failures if a not in new]:
                self._connect_failures.pop(gone, None)

    def refresh_soon(self) -> None:
        """Look again soon: an address failed. A fixed list has nothing to look at."""

    def connect_failed(self, address: str, first: float) -> float:
        """Note that no connection to ``address`` could be made; return seconds to skip it.

        ``first`` the first time, doubled at each failure in a row, up to
        ``MAX_CONNECT_BACKOFF``: a dead address listed for ever (a stale
        entry, a host gone) costs a call a minute, not a call every few seconds.
        """
        failures = self._connect_failures.get(address, 0) + 1
        self._connect_failures[address] = failures
        return min(first * 2 ** min(failures - 1, 16), max(first, MAX_CONNECT_BACKOFF))

    def connected(self, address: str) -> None:
        """``address`` answered a call: its next failure is skipped for the first period again."""
        self._connect_failures.pop(address, None)

    def no_address(self) -> str:
        """Say why there is no address to call, as a sentence."""
        return f"No RPC server is known for {self.source}: {self.problem or 'none is listed'}."


class StaticDirectory(Directory):
    """The endpoints the client was given."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        super().__init__(", ".join(endpoints), endpoints)
        self.addresses = tuple(endpoints)  # in the order given


class WatchedDirectory(Directory):
    """A directory that a thread of its own keeps current with ``watch()``.

    The thread is a real OS thread even in a process that gevent patched:
    lookups block it, never a hub that serves calls. It holds the directory
    weakly and ends once no client uses the directory.
    """

    #: Seconds between attempts while the source cannot be reached, at most.
    MAX_RETRY_PAUSE = 5.0

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.looked = False
        self._wake = _original("_thread", "allocate_lock")()
        self._wake.acquire()
        self._unreachable_since: float | None = None
        start_thread(_run_watcher, weakref.ref(self))

    def refresh_soon(self) -> None:
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already woken

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if woken; return whether woken."""
        return bool(self._wake.acquire(True, max(seconds, 0.0)))

    def watch_once(self) -> float:
        """Look once (or, for a subscription, until it ends); return seconds until the next look."""
        raise NotImplementedError

    def reached(self) -> None:
        """The source answered: log that it is back if it was not."""
        if self._unreachable_since is not None:
            down = time.monotonic() - self._unreachable_since
            logger.warning("%s is reachable again after %.1f s.", self.source, down)
        self._unreachable_since = None
        self.problem = None

    def unreachable(self, error: BaseException, what: str) -> None:
        """The source failed: keep the addresses known, say so once per outage."""
        self.problem = f"{what}: {error}"
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            kept = ", ".join(self.addresses) or "none"
            logger.warning(
                "%s; calls go on to the addresses known (%s) and it is tried again.",
                self.problem,
                kept,
            )


def _run_watcher(ref: Callable[[], WatchedDirectory | None]) -> None:
    failures = 0
    while True:
        directory = ref()
        if directory is None:
            return
        try:
            pause = directory.watch_once()
            failures = 0
        except Exception:  # watch_once reports what it expects; this is a bug
            logger.exception("Discovery of %s failed; trying again.", directory.source)
            pause = 1.0
        directory.looked = True
        if directory.problem is not None:
            failures += 1
            pause = min(0.25 * 2**failures, directory.MAX_RETRY_PAUSE)
        if pause > 0:
            directory.sleep(pause)
        del directory


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent patched it (gevent is not imported if absent)."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def start_thread(function: Callable[..., None], *args: Any) -> None:
    """Run ``function(*args)`` in a new OS thread, even where gevent patched threads."""
    _original("_thread", "start_new_thread")(function, args)
