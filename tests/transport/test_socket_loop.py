"""The gevent socket loop: sends, receives and large frames against a plain ROUTER.

The ROUTER answers from an OS thread of its own, at once, so replies often
arrive while the next request is being sent: a send that took the socket's
edge of a reply and left it unread would leave the test waiting.
"""

from __future__ import annotations

import logging
import os
import time

import gevent
import gevent.event
import pytest
import zmq
from gevent import monkey

from django_zrpc.transport.socket_loop import SocketLoop

LARGE = os.urandom(10 * 1024 * 1024)


@pytest.fixture
def echo_router(router):
    """The ROUTER, sending every message straight back from an OS thread; yields its endpoint."""
    sock, endpoint = router
    sock.setsockopt(zmq.RCVTIMEO, 200)  # how soon the thread sees that the test ended
    running = [True]
    ended = monkey.get_original("threading", "Event")()

    def serve() -> None:
        try:
            while running[0]:
                try:
                    sock.send_multipart(sock.recv_multipart(copy=False), copy=False)
                except zmq.Again:
                    continue
        finally:
            ended.set()

    monkey.get_original("_thread", "start_new_thread")(serve, ())
    yield endpoint
    running[0] = False
    assert ended.wait(5)  # before the router's socket is closed


@pytest.fixture
def dealer_loop(echo_router):
    """A DEALER connected to the echo ROUTER, its loop running; yields (loop, received, sent)."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.connect(echo_router)
    received: list[list[bytes]] = []
    arrived = gevent.event.Event()
    sent: list[str] = []

    def on_frames(frames: list[bytes]) -> None:
        received.append(frames)
        arrived.set()

    loop = SocketLoop(sock, on_frames, logging.getLogger("tests"), on_sent=sent.append)
    greenlet = gevent.spawn(loop.run)
    try:
        yield loop, received, arrived, sent
    finally:
        greenlet.kill()
        sock.close(linger=0)
        context.term()


def wait_for(received: list, count: int, arrived: gevent.event.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while len(received) < count and time.monotonic() < deadline:
        arrived.clear()
        arrived.wait(0.05)
    assert len(received) >= count, f"{len(received)} of {count} arrived in {seconds} s"


def test_a_send_while_the_loop_sleeps_leaves_from_the_caller_at_once(dealer_loop):
    loop, received, arrived, sent = dealer_loop
    loop.send([b"", b"first"], "first")
    wait_for(received, 1, arrived, 10)  # connected, and the loop asleep again
    gevent.sleep(0.01)
    loop.send([b"", b"second"], "second")
    # Sent before send() returned, not on the loop's next pass.
    assert sent == ["first", "second"]
    wait_for(received, 2, arrived, 10)
    assert [frames[1] for frames in received] == [b"first", b"second"]


def test_replies_arriving_during_sends_are_all_received(dealer_loop):
    # One request at a time, each sent the moment the last reply is handled,
    # and then ten at once: 2,000 round trips within a generous bound.
    loop, received, arrived, _sent = dealer_loop
    loop.send([b"", b"warm-up"])
    wait_for(received, 1, arrived, 10)
    for index in range(1000):
        loop.send([b"", b"%d" % index])
        wait_for(received, index + 2, arrived, 5)
    for batch in range(100):
        for index in range(10):
            loop.send([b"", b"%d-%d" % (batch, index)])
        wait_for(received, 1001 + (batch + 1) * 10, arrived, 5)
    assert [frames[1] for frames in received[1:1001]] == [b"%d" % i for i in range(1000)]


def test_a_large_frame_goes_and_comes_back_whole_as_a_view(dealer_loop):
    loop, received, arrived, _sent = dealer_loop
    loop.send([b"", LARGE])
    wait_for(received, 1, arrived, 30)
    empty, blob = received[0]
    assert empty == b""
    assert isinstance(blob, memoryview)  # ZeroMQ's message itself, not a copy
    assert blob == LARGE
