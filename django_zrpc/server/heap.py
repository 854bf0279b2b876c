"""Give the memory of peers that left back to the system (glibc's ``malloc_trim``).

libzmq's I/O thread allocates about 65 KB per connected peer and frees it when
the peer leaves, but glibc keeps the freed pages resident: a server that once
had 4,000 peers kept 115 MB more than it started with after they all left,
and more after each such crowd (docs/memory.rst). No libzmq or glibc setting
bounds it; ``malloc_trim(0)`` returns it, in 0.1 ms when there is nothing to
return and some tens of ms after a crowd.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import gevent


def malloc_trim() -> Callable[[int], int] | None:
    """Return glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """Trim the heap at most every ``every`` seconds, when peers have left since the last time."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._trim = malloc_trim()
        self._departures = 0

    def peer_left(self) -> None:
        self._departures += 1

    def run(self) -> None:
        if self._trim is None:
            return
        pool = gevent.get_hub().threadpool
        while True:
            gevent.sleep(self.every)
            if self._departures:
                self._departures = 0
                # In a thread: the loop serves on while glibc walks its heaps.
                pool.apply(self._trim, (0,))
