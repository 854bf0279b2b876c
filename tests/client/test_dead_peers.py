"""A dead peer is noticed when its connection closes, not two heartbeats later; heartbeats of
any period keep a live call alive (issue 13, items 2 and 3)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import gevent
import msgpack
import pytest

from django_zrpc import RPCClient
from django_zrpc.client.gevent.connection import Client
from django_zrpc.exceptions import LostRemote
from django_zrpc.wire import protocol
from tests.conftest import ROOT, free_port, raw_dealer, request, subprocess_env

# A caller in a process of its own: it sends one call and waits to be killed.
CALLER = """
import sys, time, msgpack, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
header = {"message_id": b"c" * 32, "v": 3}
sock.send_multipart([b"", msgpack.packb([header, "sleep", [30]], use_bin_type=True)])
print("sent", flush=True)
time.sleep(60)
"""


def test_a_killed_callers_call_is_stopped_within_1_5_s(start_server):
    # The default heartbeat would take 10 s to notice.
    server = start_server("--heartbeat", "5")
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, server.endpoint],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "sent"
        time.sleep(0.5)  # the call is running
        caller.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        server.wait_for("rpc sleep lost its caller: the caller's connection closed", timeout=5)
        assert time.monotonic() - killed < 1.5
    finally:
        caller.kill()
        caller.wait(5)


def test_calls_in_flight_fail_within_1_5_s_when_the_server_is_killed(start_server):
    server = start_server("--heartbeat", "5")
    client = RPCClient(server.endpoint, timeout=30)
    try:
        assert client.echo(1) == 1
        calls = [gevent.spawn(client.sleep, 30) for _ in range(8)]
        gevent.sleep(0.5)
        server.stop(signal.SIGKILL)
        killed = time.monotonic()
        gevent.joinall(calls, timeout=10)
        elapsed = time.monotonic() - killed
        assert all(isinstance(call.exception, LostRemote) for call in calls), [
            call.exception for call in calls
        ]
        assert "closed while sleep was in flight" in str(calls[0].exception)
        assert elapsed < 1.5
    finally:
        client.close()


def test_callers_on_5_s_heartbeats_finish_a_3_s_call_on_a_1_s_server(start_server):
    server = start_server("--heartbeat", "1")
    client = RPCClient(server.endpoint, timeout=20)  # its default heartbeat: 5 s
    try:
        with server.client(timeout=20, heartbeat=5) as stock:  # zerorpc's own client
            calls = [gevent.spawn(stock.sleep, 3), gevent.spawn(client.sleep, 3)]
            gevent.joinall(calls, timeout=15, raise_error=True)
        assert [call.value for call in calls] == [3, 3]
    finally:
        client.close()
    assert "lost its caller" not in server.output


def test_a_call_given_up_for_silence_is_answered_at_once(start_server):
    server = start_server("--heartbeat", "1")
    sock = raw_dealer(server.endpoint)
    try:
        sock.send_multipart([b"", request("sleep", [30], b"g" * 32)])
        # Two quick heartbeats show a 0.3 s period; then silence.
        for number in range(2):
            beat = {"message_id": b"b%031d" % number, "v": 3, "response_to": b"g" * 32}
            sock.send_multipart([b"", protocol.pack(protocol.HEARTBEAT, [0], beat)])
            time.sleep(0.3)
        silent = time.monotonic()
        while True:
            _, blob = sock.recv_multipart()  # RCVTIMEO: 10 s
            _, name, args = msgpack.unpackb(blob, raw=False)
            if name != protocol.HEARTBEAT:
                break
        assert name == "ERR"
        assert args[0] == "LostRemote"
        assert "without a heartbeat" in args[1]
        # Judged by its own period (0.3 s) against the server's (1 s): 2 s.
        assert time.monotonic() - silent < 4
    finally:
        sock.close()


def test_a_heartbeat_stock_clients_cannot_follow_is_warned_of(start_server):
    server = start_server("--heartbeat", "12")
    assert "--heartbeat 12 is longer than zerorpc's default of 5 s" in server.output


def test_a_client_on_1_s_heartbeats_finishes_a_3_s_call_on_a_stock_5_s_server():
    port = free_port()
    stock = subprocess.Popen(
        [sys.executable, "tests/zerorpc_server.py", str(port), "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert stock.stdout is not None
        assert stock.stdout.readline().strip() == "ready"
        with Client(f"tcp://127.0.0.1:{port}", timeout=20, heartbeat=1) as client:
            assert client.sleep(3) == 3
    finally:
        stock.kill()
        stock.wait(5)


def test_a_server_restarted_between_two_calls_fails_neither(start_server):
    port = free_port()
    first = start_server(port=port)
    with Client(first.endpoint, timeout=10) as client:
        assert client.echo(1) == 1
        first.stop(signal.SIGKILL)
        start_server(port=port)
        # This thread's hub does not run meanwhile: the old connection's
        # DISCONNECTED is still waiting when the next call goes out on the new.
        time.sleep(1)
        assert client.echo(2) == 2


def test_a_call_sent_to_a_server_gone_silent_fails_within_two_of_its_heartbeats(start_server):
    # SIGSTOP: the connection stays open and the server says nothing (as when
    # its host is cut off). The call never hears a heartbeat of its own: the
    # period the server announced on the connection's first reply judges it,
    # not zerorpc's 5 s (which took 10 s).
    server = start_server("--heartbeat", "1")
    client = RPCClient(server.endpoint, timeout=30, heartbeat=1)
    try:
        assert client.echo("first") == "first"
        server.proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(LostRemote, match="after 2s without a heartbeat"):
                client.echo("unanswered")
            assert time.monotonic() - started < 2.3
        finally:
            server.proc.send_signal(signal.SIGCONT)
    finally:
        client.close()


def test_a_caller_gone_silent_is_judged_by_the_period_it_announced(start_server):
    server = start_server("--heartbeat", "1")
    sock = raw_dealer(server.endpoint)
    try:
        # Says it beats every 0.5 s, then never does: lost after 2 x 1 s.
        header = {"message_id": b"s" * 32, "v": 3, protocol.HEARTBEAT_PERIOD: 0.5}
        sock.send_multipart([b"", protocol.pack("sleep", [30], header)])
        started = time.monotonic()
        while True:
            _, blob = sock.recv_multipart()  # RCVTIMEO: 10 s
            _, name, args = msgpack.unpackb(blob, raw=False)
            if name != protocol.HEARTBEAT:
                break
        assert (name, args[0]) == ("ERR", "LostRemote")
        # Checked every second: between 2 s and 3 s, where zerorpc's 5 s took 10 s.
        assert time.monotonic() - started < 3.5
    finally:
        sock.close()
