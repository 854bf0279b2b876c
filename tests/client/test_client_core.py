"""django_zrpc's client core against a stock zerorpc 0.6.3 server and against runrpc."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import gevent
import pytest

from django_zrpc.client.gevent.connection import Client
from django_zrpc.exceptions import LostRemote, RemoteError, TimeoutExpired
from tests.conftest import ROOT, free_port, subprocess_env


class StockServer:
    """tests/zerorpc_server.py in a process of its own."""

    def __init__(self, heartbeat: float = 1) -> None:
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "tests/zerorpc_server.py", str(self.port), str(heartbeat)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(10)


STOCK_ENDPOINTS: set[str] = set()


@pytest.fixture(scope="module", params=["zerorpc", "runrpc"])
def endpoint(request):
    """The endpoint of a server with echo, sleep, fail and count_up, heartbeat 1 s.

    One server of each kind for the module: the tests that use it only call it.
    """
    if request.param == "zerorpc":
        server = StockServer()
        STOCK_ENDPOINTS.add(server.endpoint)
        yield server.endpoint
        server.stop()
    else:
        yield request.getfixturevalue("server").endpoint


@pytest.fixture
def client(endpoint):
    with Client(endpoint, timeout=10, heartbeat=1) as client:
        yield client


def test_call(client):
    assert client.echo(5) == 5
    assert client("echo", {"a": [1, b"x"]}) == {"a": [1, b"x"]}


def test_a_runrpc_process_names_itself_to_its_connections_and_zerorpc_does_not(endpoint, client):
    assert client.peer is None  # told in ZeroMQ's handshake, read from the first reply
    assert client.echo(1) == 1
    if endpoint in STOCK_ENDPOINTS:
        assert client.peer is None
        return
    assert isinstance(client.peer, str)
    assert len(client.peer) == 16
    with Client(endpoint, timeout=10) as other:
        other.echo(2)
        assert other.peer == client.peer  # the same process


def test_remote_error_has_name_and_message(client):
    with pytest.raises(RemoteError) as caught:
        client.fail("boom")
    assert (caught.value.name, caught.value.msg) == ("ValueError", "boom")
    assert client.echo(1) == 1


def test_unknown_function(client, endpoint):
    with pytest.raises(RemoteError) as caught:
        client.no_such_function()
    if endpoint in STOCK_ENDPOINTS:
        assert (caught.value.name, caught.value.msg) == ("NameError", "no_such_function")
    else:  # runrpc says what is wrong and where to look, under zerorpc's error name
        assert caught.value.name == "NameError"
        assert caught.value.msg == (
            "No function is named 'no_such_function' here. manage.py rpclist "
            "(or zerorpc's _zerorpc_list) lists the functions served."
        )


def test_a_misspelled_function_is_answered_with_the_closest_name(server):
    with Client(server.endpoint, timeout=10, heartbeat=1) as client:
        with pytest.raises(RemoteError, match="Did you mean 'echo'") as caught:
            client.call("ecko", 1)
        with pytest.raises(RemoteError, match="Did you mean 'echo'"):
            client.call("_zerorpc_help", "ecko")
    assert caught.value.name == "NameError"
    assert "No function is named 'ecko' here." in caught.value.msg


def test_stream_of_250_items_needs_more_credit_than_the_first_100(client):
    assert list(client.count_up(250)) == list(range(250))


def test_call_lasting_three_heartbeats(client):
    assert client.sleep(3.5) == 3.5


def test_sixty_four_concurrent_calls_share_one_socket(client):
    calls = [gevent.spawn(client.echo, i) for i in range(64)]
    gevent.joinall(calls, timeout=30, raise_error=True)
    assert [call.value for call in calls] == list(range(64))


def test_timeout_is_raised_within_the_timeout(client):
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="calling remote method sleep"):
        client.sleep(5, timeout=1)
    assert 1 <= time.monotonic() - started < 1.5
    assert client.echo("after") == "after"


def test_an_abandoned_stream_is_given_up(client):
    stream = client.count_up(1000, 0.01)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert client._pending == {}
    assert client.echo("still fine") == "still fine"


def test_server_killed_mid_call_is_lost_remote():
    server = StockServer(heartbeat=1)
    with Client(server.endpoint, timeout=30, heartbeat=1) as client:
        assert client.echo(1) == 1
        call = gevent.spawn(client.sleep, 30)
        gevent.sleep(0.5)
        server.stop(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(LostRemote):
            call.get(timeout=10)
        assert time.monotonic() - started < 4  # two heartbeats, one tick late at most


def test_calls_to_a_dead_endpoint_each_fail_within_their_timeout():
    # zerorpc blocks for good once ~1000 unsent requests fill its queue (#236):
    # 1,100 calls at once leave 1,100 unsent requests queued together.
    # (One after the other, each dropped at its timeout, they took 12 s.)
    def timed_call() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            client.echo(1)
        return time.monotonic() - started

    with Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.005, heartbeat=1) as client:
        calls = [gevent.spawn(timed_call) for _ in range(1100)]
        finished = gevent.joinall(calls, timeout=30, raise_error=True)
        assert len(finished) == 1100  # none blocked
        assert client._pending == {}
    assert max(call.value for call in calls) < 0.5


def test_a_call_given_up_on_never_runs_when_the_server_comes_back(start_server):
    port = free_port()
    with Client(f"tcp://127.0.0.1:{port}", timeout=0.3, heartbeat=1) as client:
        with pytest.raises(TimeoutExpired):
            client.echo("given up")
        server = start_server("--heartbeat", "1", port=port)
        deadline = time.monotonic() + 10
        while True:  # the socket reconnects by itself
            try:
                assert client.echo("back") == "back"
                break
            except TimeoutExpired:
                assert time.monotonic() < deadline
    server.wait_for("rpc echo OK")
    assert sum("rpc echo OK" in line for line in server.lines) == 1


def test_a_slow_stream_reader_is_not_timed_out_between_items(endpoint):
    with Client(endpoint, timeout=1, heartbeat=1) as client:
        items = []
        for item in client.count_up(2):
            items.append(item)
            gevent.sleep(1.5)  # longer than the call's timeout, between items
    assert items == [0, 1]


def test_a_call_to_a_server_that_is_down_fails_at_its_timeout_not_its_heartbeat():
    with Client(f"tcp://127.0.0.1:{free_port()}", timeout=1.5, heartbeat=0.2) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            client.echo(1)
    assert 1.5 <= time.monotonic() - started < 2


CLOSE_EARLY = """
import gevent
from django_zrpc.client.gevent.connection import Client
from django_zrpc.server.engine import Server

with Client("tcp://127.0.0.1:{port}"):
    pass
client = Client("tcp://127.0.0.1:{port}")
try:
    client.echo(object())  # cannot be packed
except TypeError:
    pass
client.close()
first = Server({{}})
first.bind("tcp://127.0.0.1:{port}")
second = Server({{}})
try:
    second.bind("tcp://127.0.0.1:{port}")  # in use
except Exception:
    pass
second.close()
first.close()
gevent.sleep(0.3)
print("still alive")
"""


def test_closing_before_the_io_loop_ran_does_not_abort_the_process():
    # libev aborts the process (exit 134) when a watcher outlives its descriptor.
    result = subprocess.run(
        [sys.executable, "-c", CLOSE_EARLY.format(port=free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "still alive"


def test_django_values_go_plain_to_a_stock_server_and_as_themselves_to_runrpc(client, endpoint):
    import datetime

    value = {"pair": (1, 2), "when": datetime.date(2026, 11, 23)}
    back = client.echo(value)
    if client.server_reads_values:  # runrpc: asked once, then the types travel
        assert back == value
    else:  # a stock zerorpc server: plain msgpack it can read
        assert back == {"pair": [1, 2], "when": "2026-11-23"}
        with pytest.raises(TypeError, match="not a django_zrpc server"):
            client.echo(value=1)
    assert client.server_reads_values is (endpoint not in STOCK_ENDPOINTS)


MANY_CONNECTIONS = """
import os, resource, sys
import django
django.setup()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < 4096:
    sys.exit(f"skip: the hard limit of open files is {hard}; 600 connections need about 2,400")
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
from django_zrpc.client.gevent.connection import Client
clients = [Client("tcp://127.0.0.1:1") for _ in range(600)]
print(len(clients))
"""


def test_one_process_holds_600_connections():
    # Three sockets each (the DEALER and its monitor's pair): past libzmq's
    # default of 1,023 sockets a context.
    done = subprocess.run(
        [sys.executable, "-c", MANY_CONNECTIONS],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.stderr.startswith("skip: "):
        pytest.skip(done.stderr.strip().removeprefix("skip: "))
    assert done.stdout.strip() == "600", done.stderr[-2000:]
