"""Closing or dropping an RPCClient stream frees the server side at once (issue 13, item 4)."""

from __future__ import annotations

import gc
import time

import pytest

from django_zrpc import RPCClient


@pytest.mark.parametrize("how", ["close", "drop"])
def test_an_abandoned_stream_frees_its_worker_within_a_second(start_server, how):
    # One worker and no backlog: until the stream's worker is free, any other
    # call is refused as busy.
    server = start_server("--concurrency", "1", "--backlog", "0")
    client = RPCClient(server.endpoint, timeout=10)
    try:
        stream = client.count_up(10**9)
        assert next(stream) == 0
        if how == "close":
            stream.close()
        else:
            del stream
            gc.collect()
        abandoned = time.monotonic()
        server.wait_for("rpc count_up stopped: its caller cancelled it", 2)
        assert client.echo("free") == "free"
        assert time.monotonic() - abandoned < 1
    finally:
        client.close()
