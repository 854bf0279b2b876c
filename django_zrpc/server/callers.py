"""The server's side of its callers: heartbeats, and calls whose caller is gone.

A mixin of ``engine.Server``: one ticker sends every call's heartbeats and
gives up the calls whose caller fell silent; a closed connection makes the
server probe its callers at once, so that a gone caller's calls end without
waiting for the heartbeats to run out.
"""

from __future__ import annotations

import time

import gevent
import zmq

from django_zrpc.server import observer as observed
from django_zrpc.server.calls import CANCELLED, DEADLINE_PASSED, Call, CallLost
from django_zrpc.server.state import State
from django_zrpc.transport.monitor import DISCONNECTED, FAILED_EVENTS, SERVER, describe_failure
from django_zrpc.wire import protocol

#: Why calls are given up when the server stops.
STOPPING_REASON = "the server is stopping"


class Callers(State):
    """Keep each call's caller in sight, and give up the calls of callers that left."""

    def _on_socket_event(self, event: int, value: int) -> None:
        if event == DISCONNECTED:
            self._probe_callers()
            if self._trimmer is not None:
                self._trimmer.peer_left()
        elif event in FAILED_EVENTS:
            self._observer.handshake_refused()
            # Refused keys (HANDSHAKE_FAILED_AUTH) are logged by the ZAP
            # handler, with the key.
            if event != zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._handshake_failures.record(describe_failure(event, value, SERVER))

    def _tick(self) -> None:
        while True:
            gevent.sleep(self.heartbeat)
            now = time.monotonic()
            for call in list(self._calls.values()):
                if call.replied or call.lost:
                    continue  # cleaning up; the caller expects nothing more
                if call.worker is None and call.expired(now):
                    self._expire(call)  # out of the queue: it holds a place in the bound
                    continue
                patience = call.patience(self.heartbeat)
                if now - call.last_seen > patience:
                    # The caller may be alive and only slow: tell it, at no
                    # cost if it is gone, rather than leave it waiting.
                    reason = f"Lost remote after {patience:g}s without a heartbeat"
                    self._reply_error(call, "LostRemote", f"The server gave the call up: {reason}.")
                    self._lose(call, reason)
                else:
                    self._send(call, protocol.HEARTBEAT, [0], spend=False)

    def _probe_callers(self) -> None:
        """Send a heartbeat to every caller with a call in flight, now and twice more.

        Called when a connection closed: a caller whose connection is gone
        makes the send fail (ROUTER_MANDATORY), and its calls are given up in
        _on_unreachable. libzmq may still be taking the connection down when
        the event arrives, hence the later tries; connections that close
        meanwhile join the same round.
        """
        if not self._calls:
            return  # nothing in flight: nothing to stop
        if self._prober is not None:
            self._probe_again = True
            return
        self._prober = gevent.spawn(self._probe_rounds)

    def _probe_rounds(self) -> None:
        try:
            self._probe_again = True
            while self._probe_again:
                self._probe_again = False
                for delay in (0.0, 0.1, 0.4):
                    gevent.sleep(delay)
                    self._heartbeat_each_caller()
        finally:
            self._prober = None

    def _heartbeat_each_caller(self) -> None:
        probed = set()
        for call in list(self._calls.values()):
            if not (call.replied or call.lost) and call.identity not in probed:
                probed.add(call.identity)
                self._send(call, protocol.HEARTBEAT, [0], spend=False)

    def _on_unreachable(self, call: Call | None) -> None:
        if call is None:
            return
        for other in list(self._calls.values()):
            if other.identity == call.identity:
                self._lose(other, "the caller's connection closed")

    def _lose(self, call: Call, reason: str) -> None:
        if call.replied or call.lost:
            return
        call.lost = True
        if call.worker is None:
            # Still queued: out of the queue and the bound at once (a caller
            # that cancels queued calls must not grow the queue past it).
            self._calls.pop((call.identity, call.request.message_id), None)
            self._observer.call_refused(call.request.name, outcome_of_loss(reason))
            try:
                self._waiting.remove(call)
            except ValueError:
                pass  # handed to a worker already, which will skip it
        elif not call.kill_pending:
            # Running: it stays counted against the bound until its worker is
            # free, even if the function swallows the exception.
            call.kill_pending = True
            call.worker.kill(CallLost(call, reason), block=False)


def outcome_of_loss(reason: str) -> str:
    """Return the observer's outcome for a call given up for ``reason`` (see ``_lose``)."""
    if reason == CANCELLED:
        return observed.CANCELLED
    if reason == DEADLINE_PASSED:
        return observed.DEADLINE
    if reason == STOPPING_REASON:
        return observed.STOPPING
    return observed.LOST
