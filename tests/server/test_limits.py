"""What a runrpc server gives away, and what it takes in: tracebacks, built-ins, sizes."""

from __future__ import annotations

from pathlib import Path

import gevent
import msgpack
import pytest
import zerorpc

from tests.conftest import raw_dealer


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_errors_carry_no_traceback_by_default(server):
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.fail("secret-free")
    assert caught.value.traceback is None
    assert str(caught.value) == "ValueError: secret-free"


def test_errors_carry_the_traceback_with_debug(start_server):
    server = start_server(DJANGO_DEBUG="1")
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.fail("shown")
    assert "raise ValueError(message)" in caught.value.traceback


def test_builtins_can_be_switched_off(start_server, project_settings):
    args, env = project_settings(ZRPC_BUILTINS=False)
    server = start_server(*args, **env)
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client._zerorpc_list()
        assert caught.value.name == "NameError"
        assert client.echo(1) == 1


def test_oversized_and_amplifying_frames_leave_memory_bounded(server):
    mark = server.mark()
    with server.client() as client:
        client.echo("warm up")
    before = rss_kb(server.proc.pid)
    header = {"message_id": b"x" * 32, "v": 3}
    frames = [
        # A million empty maps in one array: past the container length limit.
        msgpack.packb([header, "echo", [{} for _ in range(1_000_000)]]),
        # 150,000 empty maps in arrays each under the length limit: past the
        # limit on containers per event (unchecked, 16 MiB of these would
        # become a gigabyte of dicts).
        msgpack.packb([header, "echo", [[{}] * 1000 for _ in range(150)]]),
        # 17 MB of bytes: past ZRPC_MAX_MESSAGE_BYTES (ZeroMQ drops the peer).
        msgpack.packb([header, "echo", [b"\0" * (17 * 1024 * 1024)]]),
    ]
    for frame in frames:
        sock = raw_dealer(server.endpoint)
        try:
            sock.send_multipart([b"", frame])
            gevent.sleep(1)
        finally:
            sock.close()
    with server.client() as client:
        assert client.echo("still here") == "still here"
    grown_mb = (rss_kb(server.proc.pid) - before) / 1024
    print(f"server RSS grew by {grown_mb:.1f} MB")
    assert grown_mb < 40, f"the server grew by {grown_mb:.0f} MB"
    server.wait_for("Dropped ", since=mark)
