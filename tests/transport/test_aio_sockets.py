"""The asyncio client's DEALER socket: what is queued in one turn of the loop goes out together.

Against a plain ZeroMQ ROUTER on 127.0.0.1, which sees exactly what arrives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import zmq

from django_zrpc.transport.aio_sockets import DealerSocket

pytestmark = pytest.mark.asyncio


class Owner:
    def __init__(self, name: str, wanted: bool = True) -> None:
        self.name = name
        self.wanted = wanted


def dealer(events: list, received: list | None = None) -> DealerSocket:
    return DealerSocket(
        1 << 24,
        None,
        on_frames=(received if received is not None else []).append,
        logger=logging.getLogger("tests"),
        wanted=lambda owner: owner.wanted,
        on_sent=lambda owner: events.append(("sent", owner.name)),
        on_waiting=lambda owner, future: events.append(("waiting", owner.name)),
        on_failed=lambda owner, error: events.append(("failed", owner.name, error)),
    )


def receive_blobs(sock: zmq.Socket, count: int) -> list[bytes]:
    return [sock.recv_multipart()[-1] for _ in range(count)]


async def test_queued_messages_go_at_the_end_of_the_turn_in_order_unwanted_ones_dropped(router):
    sock, endpoint = router
    events: list = []
    client = dealer(events)
    try:
        client.socket.connect(endpoint)
        for _ in range(200):  # the connection is made (IMMEDIATE: no queue before)
            if client.socket.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
                break
            await asyncio.sleep(0.01)
        first, ended, last = Owner("first"), Owner("ended"), Owner("last")
        client.send([b"", b"1"], first)
        client.send([b"", b"2"], ended)
        client.send([b"", b"3"])  # no owner: a heartbeat, say: always goes
        client.send([b"", b"4"], last)
        assert events == []  # nothing goes before the turn ends
        ended.wanted = False  # its call ended meanwhile
        await asyncio.sleep(0)
        assert events == [("sent", "first"), ("sent", "last")]
        blobs = await asyncio.to_thread(receive_blobs, sock, 3)
        assert blobs == [b"1", b"3", b"4"]
    finally:
        client.close()


async def test_with_no_connection_a_message_waits_then_goes(router):
    sock, endpoint = router
    events: list = []
    client = dealer(events)
    try:
        waiting = Owner("waiting")
        client.send([b"", b"late"], waiting)  # not connected yet: IMMEDIATE refuses it
        await asyncio.sleep(0)
        assert events == [("waiting", "waiting")]
        client.socket.connect(endpoint)
        blobs = await asyncio.to_thread(receive_blobs, sock, 1)
        assert blobs == [b"late"]
        for _ in range(200):
            if ("sent", "waiting") in events:
                break
            await asyncio.sleep(0.01)
        assert events == [("waiting", "waiting"), ("sent", "waiting")]
    finally:
        client.close()


async def test_every_reply_reaches_on_frames_from_the_callback_a_large_one_whole(router):
    # More replies at once than one drain takes (DRAIN), and a 10 MiB one
    # among them, which arrives as a view of ZeroMQ's message, not a copy.
    sock, endpoint = router
    events: list = []
    received: list = []
    client = dealer(events, received)
    large = os.urandom(10 * 1024 * 1024)
    try:
        client.socket.connect(endpoint)
        client.send([b"", b"hello"], Owner("hello"))
        identity, _, _ = await asyncio.to_thread(sock.recv_multipart)

        def reply_all() -> None:
            for index in range(300):
                sock.send_multipart([identity, b"", b"%d" % index])
            sock.send_multipart([identity, b"", large])

        await asyncio.to_thread(reply_all)
        deadline = time.monotonic() + 10
        while len(received) < 301 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [bytes(frames[1]) for frames in received[:300]] == [
            b"%d" % index for index in range(300)
        ]
        assert isinstance(received[300][1], memoryview)
        assert received[300][1] == large
    finally:
        client.close()
