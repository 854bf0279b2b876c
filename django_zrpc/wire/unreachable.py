"""What a caller is told when no server could be reached: the wait, the endpoints, a hint.

One connection gives up on an unsent call with ``ServerUnavailable`` after
its connect timeout; a client then tries again, maybe elsewhere, until the
call's own timeout. The error of the last attempt alone would name one
endpoint and a fraction of the wait, so ``Attempts`` keeps what each attempt
found and the client raises one error that says it all. Free of gevent and
sockets: both clients and the commands share it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django_zrpc.exceptions import HandshakeFailed, ServerUnavailable


def error(name: str, endpoints: Sequence[str], attempts: int, waited: float) -> ServerUnavailable:
    """Return the ``ServerUnavailable`` of call ``name``, which reached none of ``endpoints``."""
    tried = " or ".join(endpoints)
    plural = "" if attempts == 1 else "s"
    message = (
        f"Calling remote method {name}: no connection to {tried} could be made "
        f"in {_seconds(waited)} ({attempts} attempt{plural}). {_hint(endpoints)}"
    )
    return ServerUnavailable(message, endpoints=endpoints, attempts=attempts, waited=waited)


def _seconds(waited: float) -> str:
    # A tenth of a second is what a person reads; below that, milliseconds
    # keep a very short timeout from reading as no wait at all.
    return f"{waited:.1f} s" if waited >= 0.1 else f"{waited * 1000:.0f} ms"


def _hint(endpoints: Sequence[str]) -> str:
    """Say what to check, and the command that starts a server at the first endpoint."""
    where = endpoints[0] if len(endpoints) == 1 else "any of them"
    if not endpoints[0].startswith("tcp://"):
        return f"Is a server running at {where}?"  # runrpc binds TCP only
    question = f"Is runrpc running at {where}?"
    start = f"Start it with `manage.py runrpc {endpoints[0].removeprefix('tcp://')}`"
    if len(endpoints) > 1:
        start += " on its host, and likewise for the others"
    return f"{question} {start}."


class Attempts:
    """The attempts of one call that reached no server, to say them all in its final error."""

    def __init__(self, name: str, started: float) -> None:
        """Call ``name``, which started at ``started`` (``time.monotonic()``)."""
        self.name = name
        self.started = started
        self.endpoints: list[str] = []
        self.count = 0

    def note(self, err: BaseException) -> None:
        """Note the error of one attempt; only those that reached no server count."""
        if _unreached(err):
            assert isinstance(err, ServerUnavailable)
            self.count += err.attempts
            self.endpoints.extend(e for e in err.endpoints if e not in self.endpoints)

    def final(self, err: BaseException) -> ServerUnavailable | None:
        """Return the error that sums up the call when its last attempt, ``err``, reached no server.

        None when ``err`` is another error: it is raised as it is.
        """
        if not _unreached(err) or not self.count:
            return None
        return error(self.name, self.endpoints, self.count, time.monotonic() - self.started)


def _unreached(err: BaseException) -> bool:
    # A refused handshake reached a server, and a closed pool or an empty
    # directory names no endpoint: those keep their own messages.
    return (
        isinstance(err, ServerUnavailable)
        and not isinstance(err, HandshakeFailed)
        and bool(err.endpoints)
    )
