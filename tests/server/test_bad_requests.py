"""Every request that can be answered, is: bad requests get an error at once (issue 13, item 6)."""

from __future__ import annotations

import re
import time

import msgpack
import pytest

from django_zrpc import RPCClient
from django_zrpc.wire import protocol, values
from tests.conftest import raw_dealer


def _header(number: int) -> dict:
    return {"message_id": b"r%031d" % number, "v": 3}


def _nested_tuples(depth: int) -> msgpack.ExtType:
    value: object = []
    for _ in range(depth):
        value = msgpack.ExtType(values.TUPLE, msgpack.packb([value], use_bin_type=True))
    return value  # type: ignore[return-value]


def _event(number: int, name: object, args: object) -> bytes:
    return msgpack.packb([_header(number), name, args], use_bin_type=True)


BAD_REQUESTS = {
    "an empty name": lambda n: _event(n, "", []),
    "a 10 KB name": lambda n: _event(n, "x" * 10_000, []),
    "a name that is not UTF-8": lambda n: (
        b"\x93" + msgpack.packb(_header(n)) + b"\xa2\xff\xfe" + msgpack.packb([])
    ),
    "a 200,000-item argument": lambda n: _event(n, "echo", [list(range(200_000))]),
    "tuples nested 40 deep": lambda n: _event(n, "echo", [_nested_tuples(40)]),
    "keyword arguments with a non-string key": lambda n: _event(
        n, "echo", [msgpack.ExtType(values.KWARGS, msgpack.packb({1: 2}))]
    ),
}


def test_a_request_the_server_cannot_read_is_answered_at_once_naming_the_limits(server):
    mark = server.mark()
    sock = raw_dealer(server.endpoint)
    try:
        for number, (case, blob) in enumerate(BAD_REQUESTS.items()):
            started = time.monotonic()
            sock.send_multipart([b"", blob(number)])
            _, reply = sock.recv_multipart()  # RCVTIMEO: 10 s
            header, name, args = msgpack.unpackb(reply, raw=False)
            assert time.monotonic() - started < 1, case
            assert header["response_to"] == _header(number)["message_id"], case
            assert (name, args[0]) == ("ERR", "BadRequest"), case
            assert "ZRPC_MAX_CONTAINER_LEN" in args[1], case
        # Frames that say nothing of their sender are dropped, and every one
        # is counted in the rate-limited warning, also the end of a burst.
        for _ in range(9):
            sock.send_multipart([b"", b"\xc1 not msgpack"])
        deadline = time.monotonic() + 3
        counted = 0
        while time.monotonic() < deadline and counted < len(BAD_REQUESTS) + 9:
            logged = re.findall(r"Dropped (\d+) bad frame", server.output_since(mark))
            counted = sum(int(found) for found in logged)
            time.sleep(0.05)
        assert counted == len(BAD_REQUESTS) + 9
    finally:
        sock.close()


def test_rpcclient_refuses_what_a_server_would_before_sending(server):
    client = RPCClient(server.endpoint, timeout=5)
    try:
        for name in ("", "x" * (protocol.MAX_NAME_LEN + 1)):
            with pytest.raises(ValueError, match="is not a function name a server takes"):
                client.call(name)
        with pytest.raises(ValueError, match="ZRPC_MAX_MESSAGE_BYTES"):
            client.echo("x" * (protocol.DEFAULT_MAX_EVENT_BYTES + 1))
        with pytest.raises(TypeError, match="out of msgpack's range"):
            client.echo(2**64)
        assert client.echo(2**64 - 1) == 2**64 - 1  # the connection is fine
    finally:
        client.close()
