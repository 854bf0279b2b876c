"""runrpc's side of the zerorpc protocol over TCP: stock clients, raw and hostile peers.

Its engine, django_zrpc.server.engine, in a real ``manage.py runrpc`` process;
tests/server/test_server_core.py looks at the same engine in-process.
"""

from __future__ import annotations

import random
import signal
import time

import gevent
import msgpack
import pytest
import zerorpc

from tests.conftest import abandon_call, raw_dealer, request


def test_sixty_four_concurrent_calls_from_one_stock_client(server):
    with server.client(timeout=20) as client:
        calls = [gevent.spawn(client.echo, i) for i in range(64)]
        gevent.joinall(calls, timeout=30, raise_error=True)
    assert [call.value for call in calls] == list(range(64))


@pytest.fixture(scope="module")
def one_worker_server(start_module_server):
    """A server with one worker and room for one more call, for the tests that fill it.

    Each test leaves it idle, as it found it.
    """
    return start_module_server("--heartbeat", "1", "--concurrency", "1")


def test_a_caller_that_stops_heartbeating_has_its_call_cancelled(one_worker_server):
    server = one_worker_server
    abandon_call(server, "sleep", 30)
    # The only worker is free again: a new call does not wait 30 s.
    with server.client(timeout=5, heartbeat=1) as client:
        assert client.echo("free") == "free"


def test_raw_peer_sees_the_v3_wire(server):
    sock = raw_dealer(server.endpoint)
    try:
        sock.send_multipart([b"", request("echo", [7], b"id-1")])
        empty, blob = sock.recv_multipart()
        header, name, args = msgpack.unpackb(blob, raw=False)
        assert empty == b""
        assert (name, args) == ("OK", [7])
        assert header["response_to"] == b"id-1"
        assert header["v"] == 3
        assert isinstance(header["message_id"], bytes)
        assert len(header["message_id"]) == 32
        # A string id (zerorpc for Node.js sends those) is echoed as a string.
        sock.send_multipart([b"", request("echo", ["node"], "node-id")])  # type: ignore[arg-type]
        header, name, args = msgpack.unpackb(sock.recv_multipart()[1], raw=False)
        assert (header["response_to"], name, args) == ("node-id", "OK", ["node"])
    finally:
        sock.close()


def hostile_frames(count: int, seed: int = 1234) -> list[list[bytes]]:
    """Garbage, broken msgpack, wrong structures, wrong types, deep nesting, huge claims."""
    rng = random.Random(seed)
    valid = request("echo", [1])
    fixed = [
        [b"", b""],
        [b"", b"\xc1"],
        [b"", msgpack.packb([1, 2])],
        [b"", msgpack.packb([[], "echo", []])],
        [b"", msgpack.packb([{"message_id": [1]}, "echo", []])],
        [b"", msgpack.packb([{"message_id": {"a": 1}}, "echo", []])],
        [b"", msgpack.packb([{"message_id": b"x", "v": "3"}, "echo", []])],
        [b"", msgpack.packb([{"message_id": b"x"}, 42, []])],
        [b"", msgpack.packb([{"message_id": b"x"}, "echo", 5])],
        [b"", msgpack.packb([{"message_id": b"x", "response_to": [1]}, "_zpc_hb", [0]])],
        [b"", msgpack.packb([{"message_id": b"x", "response_to": b"nope"}, "_zpc_more", ["a"]])],
        [b"", b"\x91" * 100_000],  # 100,000 nested arrays
        [b"", b"\xdd\xff\xff\xff\xff"],  # claims 4 billion items
        [b"", b"\xdf\xff\xff\xff\xff"],  # claims 4 billion map entries
        [b"not-empty", valid],
        [valid],
        [b"", b"", b"", valid],
    ]
    frames = list(fixed)
    while len(frames) < count:
        kind = rng.randrange(3)
        if kind == 0:
            frames.append([b"", rng.randbytes(rng.randrange(1, 64))])
        elif kind == 1:  # a valid event with bytes flipped
            blob = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            frames.append([b"", bytes(blob)])
        else:  # a valid event cut short
            frames.append([b"", valid[: rng.randrange(1, len(valid))]])
    return frames


def test_thousands_of_hostile_frames_leave_the_server_answering(server):
    mark = server.mark()
    sock = raw_dealer(server.endpoint)
    try:
        for frames in hostile_frames(5000):
            sock.send_multipart(frames)
    finally:
        sock.close()
    with server.client(timeout=10) as client:
        # Some mutated frames are valid calls: while they run, ServerBusy is
        # the right answer; the server must answer, and soon answer "alive".
        deadline = time.monotonic() + 10
        answers = []
        while "alive" not in answers and time.monotonic() < deadline:
            try:
                answers.append(client.echo("alive"))
            except zerorpc.RemoteError as err:
                answers.append(err.name)
                gevent.sleep(0.1)
        assert answers[-1] == "alive", "still busy 10 s after the flood"
        assert set(answers) <= {"ServerBusy", "alive"}
        assert list(client.count_up(3)) == [0, 1, 2]
    server.wait_for("Dropped ", since=mark)
    assert server.proc.poll() is None


def test_calls_past_concurrency_and_backlog_are_refused_at_once(one_worker_server):
    server = one_worker_server
    with server.client(timeout=15, heartbeat=1) as client:
        running = gevent.spawn(client.sleep, 2.5)  # the one worker
        waiting = gevent.spawn(client.sleep, 0.1)  # the backlog (= concurrency)
        gevent.sleep(0.5)
        started = time.monotonic()
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.echo(1)
        assert time.monotonic() - started < 1
        assert caught.value.name == "ServerBusy"
        # The queued call outlived two heartbeat periods and still succeeds.
        gevent.joinall([running, waiting], timeout=15, raise_error=True)
    assert (running.value, waiting.value) == (2.5, 0.1)


def test_sigterm_lets_a_running_call_finish_and_refuses_new_ones(start_server):
    server = start_server("--heartbeat", "1")
    with server.client(timeout=10, heartbeat=1) as client:
        running = gevent.spawn(client.sleep, 1.5)
        gevent.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        gevent.sleep(0.2)
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.echo(1)
        assert caught.value.name == "ServerStopping"
        assert running.get(timeout=10) == 1.5
    assert server.stop() == 0
