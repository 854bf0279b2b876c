"""The server core (django_zrpc.server.engine) in-process: what is easier to see from inside.

tests/server/test_runrpc_protocol.py calls the same engine in a runrpc process over TCP.
"""

from __future__ import annotations

import os
import time

import gevent
import pytest
import zerorpc

from django_zrpc.server.engine import STOP_LINGER, ServedFunction, Server


@pytest.fixture
def core():
    servers = []

    def make(**kwargs) -> tuple[Server, str]:
        functions = {
            "echo": ServedFunction(lambda x: x),
            "nap": ServedFunction(lambda s: gevent.sleep(s) or s),
            "repeat": ServedFunction(lambda text, times: text * times),
        }
        server = Server(functions, heartbeat=1, **kwargs)
        endpoint = server.bind("tcp://127.0.0.1:0")
        servers.append((server, gevent.spawn(server.run)))
        return server, endpoint

    yield make
    for server, runner in servers:
        if not runner.dead:
            server.stop()
            runner.join(5)
        server.close()


def test_every_worker_runs_its_exit_callback_when_the_server_stops(core):
    exits = []
    server, endpoint = core(concurrency=3, on_worker_exit=lambda: exits.append(1))
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    try:
        assert client.echo("x") == "x"
    finally:
        client.close()
    server.stop()
    # The server answers ServerStopping for STOP_LINGER, then its workers exit.
    deadline = time.monotonic() + STOP_LINGER + 5
    while len(exits) < 3 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert len(exits) == 3


def test_stop_ends_a_call_past_the_grace_period_with_an_error(core):
    server, endpoint = core(concurrency=2)
    client = zerorpc.Client(endpoint, timeout=10, heartbeat=1)
    try:
        napping = gevent.spawn(client.nap, 30)
        gevent.sleep(0.3)
        gevent.spawn(server.stop, 0.5)
        with pytest.raises(zerorpc.RemoteError) as caught:
            napping.get(timeout=5)
        assert caught.value.name == "CallInterrupted"  # it had started: not ServerStopping
    finally:
        client.close()


def test_a_call_that_replied_is_neither_killed_nor_answered_again(core):
    finished = []

    class SlowCleanup:
        def server_after_call(self, request_event, exc_info):
            gevent.sleep(0.5)
            finished.append(request_event.name)

    server, endpoint = core(concurrency=1, middleware=[SlowCleanup()])
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    try:
        assert client.echo("x") == "x"  # replied; its cleanup runs 0.5 s more
        server.stop(0)
        deadline = time.monotonic() + 5
        while not finished and time.monotonic() < deadline:
            gevent.sleep(0.05)
    finally:
        client.close()
    assert finished == ["echo"]  # the cleanup was not interrupted


class RaisesWhenIdle:
    """Middleware whose server_worker_idle hook raises the first time."""

    def __init__(self) -> None:
        self.calls = 0

    def server_worker_idle(self) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the idle hook failed")
        return True


def test_a_failing_idle_hook_leaves_every_worker_serving(core):
    hook = RaisesWhenIdle()
    _, endpoint = core(concurrency=2, middleware=[hook], idle_check=0.05)
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    try:
        assert client.echo(1) == 1
        deadline = time.monotonic() + 5
        while hook.calls < 3 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert hook.calls >= 3  # it went on after raising
        both = [gevent.spawn(client.nap, 0.2), gevent.spawn(client.nap, 0.2)]
        gevent.joinall(both, timeout=5, raise_error=True)
        assert [call.value for call in both] == [0.2, 0.2]
    finally:
        client.close()


def test_a_result_past_the_message_limit_fails_that_call_alone(core):
    from django_zrpc.client.gevent.connection import Client
    from django_zrpc.wire.protocol import Unpacker

    _, endpoint = core(unpacker=Unpacker(max_event_bytes=100_000))
    with Client(endpoint, timeout=5, unpacker=Unpacker(max_event_bytes=100_000)) as client:
        napping = gevent.spawn(client.nap, 0.5)
        gevent.sleep(0.1)
        with pytest.raises(zerorpc.RemoteError, match="more than a message may hold") as big:
            client.repeat("x", 200_000)
        assert big.value.name == "ValueError"
        assert napping.get(timeout=5) == 0.5  # the connection, and its other call, go on


def test_calls_cancelled_while_queued_leave_the_queue(core):
    from django_zrpc.wire import protocol
    from tests.conftest import raw_dealer, request

    server, endpoint = core(concurrency=1, backlog=5)
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    sock = raw_dealer(endpoint)
    try:
        busy = gevent.spawn(client.nap, 1)
        gevent.sleep(0.2)
        for number in range(200):
            message_id = b"q%031d" % number
            cancel = {"message_id": b"c%031d" % number, "v": 3, "response_to": message_id}
            sock.send_multipart([b"", request("echo", [number], message_id)])
            sock.send_multipart([b"", protocol.pack(protocol.CANCEL, [], cancel)])
        gevent.sleep(0.3)
        assert len(server._waiting) <= 5
        assert busy.get(timeout=5) == 1
    finally:
        sock.close()
        client.close()


def _io_thread_policies() -> dict[int, int]:
    policies = {}
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as comm:
            if comm.read().startswith("ZMQbg/IO"):
                policies[int(task)] = os.sched_getscheduler(int(task))
    return policies


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_servers_zeromq_io_thread_runs_as_batch_work_and_the_callers_thread_does_not(core):
    before = _io_thread_policies()
    _server, endpoint = core()
    # The thread names itself and sets its policy once it runs.
    deadline = time.monotonic() + 5
    new: dict[int, int] = {}
    while not new and time.monotonic() < deadline:
        gevent.sleep(0.01)
        new = {tid: policy for tid, policy in _io_thread_policies().items() if tid not in before}
    assert list(new.values()) == [os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the probe ran on a thread of its own
    client = zerorpc.Client(endpoint, timeout=10)
    try:
        assert client.echo("batched") == "batched"
    finally:
        client.close()


def test_a_server_just_started_reports_no_worker_busy(core):
    # Sampled before its workers first ran (a worker's metrics are sampled
    # as it starts), an idle server must not look saturated.
    server, endpoint = core(concurrency=4)
    gevent.sleep(0)  # the server's run() has spawned its workers; they have not run yet
    assert server.load() == (0, 0, 0)
    gevent.sleep(0.05)
    assert server.load() == (0, 0, 0)
    client = zerorpc.Client(endpoint, timeout=5, heartbeat=1)
    try:
        caller = gevent.spawn(client.nap, 1)
        for _ in range(100):
            if server.load()[2] == 1:
                break
            gevent.sleep(0.02)
        assert server.load() == (1, 0, 1)
        assert caller.get(timeout=5) == 1
    finally:
        client.close()
    assert server.load() == (0, 0, 0)
