"""One call as the server holds it: the function it runs, its state, and its worker's mailbox.

``core/server.py`` routes events to these and runs them; what a call is, and
the small steps of running one (keyword arguments, the caller's language, a
blocking function in its thread), live here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
from django.conf import settings
from django.utils import translation
from gevent.hub import Waiter

from django_zrpc import context
from django_zrpc.exceptions import LostRemote
from django_zrpc.wire import protocol, values

if TYPE_CHECKING:
    from django_zrpc.contracts.validate import Contract

logger = logging.getLogger("django_zrpc.server")

#: Why a call the caller cancelled (a stream it closed) is stopped.
CANCELLED = "the caller cancelled the call"
#: Why a call that ran past its caller's deadline is stopped.
DEADLINE_PASSED = "the caller's deadline passed"


class ServedFunction:
    """What the server calls for one name: a function, whether it streams, its contract.

    ``admit`` is None for a function served as it is (no contract, not
    deprecated): the worker's one test per call. Otherwise the worker calls
    ``admit(args, kwargs)`` before the function runs; it returns the
    arguments checked and converted (the contract's ``bind`` itself, for a
    function that is not deprecated).
    """

    __slots__ = ("_warned", "admit", "blocking", "contract", "deprecated", "func", "name", "stream")

    def __init__(
        self,
        func: Callable[..., Any],
        stream: bool = False,
        blocking: bool = False,
        *,
        contract: Contract | None = None,
        deprecated: str | None = None,
        name: str = "",
    ) -> None:
        self.func = func
        self.stream = stream
        self.blocking = blocking
        self.contract = contract
        self.deprecated = deprecated
        self.name = name or getattr(func, "__name__", "?")
        self._warned: set[str | None] = set()
        self.admit: Callable[[Any, dict[str, Any]], tuple[Any, dict[str, Any]]] | None = None
        if deprecated is not None:
            self.admit = self._admit_deprecated
        elif contract is not None:
            self.admit = contract.bind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The frame raven's zerorpc middleware looks for: it hides the frames
        # above the one named __call__ and keeps the function's own.
        return self.func(*args, **kwargs)

    def _admit_deprecated(self, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        call = context.current_call()
        client_key = call.client_key if call is not None else None
        if client_key not in self._warned:
            # Once per caller and process: enough to find who still calls
            # it, without a line per call in the log.
            self._warned.add(client_key)
            logger.warning(
                "rpc %s is deprecated (%s) and was called by %s.",
                self.name,
                self.deprecated,
                f"client key {client_key}" if client_key else "a caller without a client key",
            )
        if self.contract is not None:
            return self.contract.bind(args, kwargs)
        return args, kwargs


class CallLost(LostRemote):
    """Thrown into a worker whose caller stopped heartbeating."""

    def __init__(self, call: Call, message: str) -> None:
        super().__init__(message)
        self.call = call


class Call(protocol.Heard):
    """One call in flight: queued, running, or streaming."""

    __slots__ = (
        "credit_event",
        "credits",
        "deadline",
        "identity",
        "kill_pending",
        "lost",
        "received",
        "replied",
        "request",
        "rich",
        "worker",
    )

    def __init__(self, request: protocol.Event, now: float) -> None:
        # A django_zrpc caller says its heartbeat period; a stock one is
        # judged by zerorpc's until its heartbeats show its own.
        super().__init__(now, protocol.announced_period(request.header))
        self.request = request
        # When it came, to tell how long it waited for a worker.
        self.received = now
        self.identity = request.identity
        # Each side may send one event before the other grants more (_zpc_more).
        self.credits = 1
        self.credit_event: gevent.event.Event | None = None
        self.worker: gevent.Greenlet | None = None
        self.lost = False
        # Set once the final reply (OK, STREAM_DONE or ERR) is sent: from then
        # on the call is only cleaning up and is never killed or answered again.
        self.replied = False
        # Whether the caller reads django_zrpc's value types (see values.py).
        self.rich = request.header.get(values.HEADER) == values.VERSION
        self.kill_pending = False
        # When the caller stops waiting (on time.monotonic()), from the time
        # left it sent; None: it sent none, or a stream's first item is out.
        self.deadline = context.deadline_from(request.header, now)

    def expired(self, now: float) -> bool:
        """Whether the caller has stopped waiting for this call."""
        return self.deadline is not None and now >= self.deadline

    def add_credits(self, count: int) -> None:
        self.credits += count
        if self.credit_event is not None:
            self.credit_event.set()

    def take_credit(self) -> None:
        """Wait until the caller can take one more event, then spend a credit."""
        while self.credits <= 0:
            if self.credit_event is None:
                self.credit_event = gevent.event.Event()
            self.credit_event.clear()
            self.credit_event.wait()
        self.credits -= 1


class IdleWorker:
    """An idle worker's mailbox: the call handed to it, and the waiter that wakes it.

    A gevent ``Waiter``, switched to from the hub: the cheapest hand-off
    between greenlets (a gevent ``Event`` cost 3-4 us more per call). A fresh
    one for each idle spell, so that a wake-up that comes late (the idle
    timer and a call at once) lands in one nobody waits on any more.
    """

    __slots__ = ("call", "waiter")

    def __init__(self) -> None:
        self.call: Call | None = None
        self.waiter: Waiter = Waiter()


def run_unless_lost(call: Call, served: ServedFunction, args: Any, kwargs: dict[str, Any]) -> Any:
    """Run a blocking function in its thread, unless its caller was lost while it queued."""
    if call.lost:
        raise LostRemote("The caller was lost before the call started.")
    return served(*args, **kwargs)


def activate_language(language: str | None) -> bool:
    """Activate the caller's language for the call, if the project has it; return whether.

    A worker between calls speaks ``LANGUAGE_CODE``: a caller in that language
    (most of them) costs nothing, where activating and deactivating would cost
    a sixth of the server's time per call.
    """
    if not language or language == settings.LANGUAGE_CODE:
        return False
    try:
        # Only the project's languages: translation catalogues are cached
        # per language, and a hostile peer could name endless ones.
        translation.activate(translation.get_supported_language_variant(language))
    except LookupError:
        return False
    return True


def split_kwargs(args: list[Any] | tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
    """Split a django_zrpc caller's keyword arguments (the last item) from the positional ones."""
    if args and type(args[-1]) is values.Kwargs:
        return args[:-1], args[-1]
    return args, {}


def absorb_pending_kill() -> None:
    # The lost-caller exception was scheduled with kill(block=False) and may
    # not have landed yet; let it land here, between calls, rather than in the
    # worker's next call.
    try:
        gevent.sleep(0)
    except CallLost:
        pass
