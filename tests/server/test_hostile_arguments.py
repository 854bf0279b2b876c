"""Every hostile request that says who asked gets an answer, one shape at a time (issue 24, item 8).

A raw DEALER sends each shape alone and waits for the reply to its
``message_id``: an ``ERR`` that says what is wrong, or a result. What carries
no usable id cannot be answered (a reply needs a ``response_to``); it is
dropped and counted in the server's rate-limited warning, and no reply to it
comes before the reply to the next good call.
"""

from __future__ import annotations

import re
import reprlib
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import zmq

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.wire import protocol, values
from tests.conftest import raw_dealer

# The server answers at once (a refusal is sent from its reader, a call's
# error from a free worker); five seconds is for a machine other tests load.
ANSWER_WITHIN = 5.0
# A value whose repr is four times its size: "\x01" reads as '\x01'.
SWOLLEN = "\x01" * 5_000_000


def _id(number: int) -> bytes:
    return b"h%031d" % number


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _ext(code: int, value: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, _packb(value))


def _text_ext(code: int, text: str) -> msgpack.ExtType:
    return msgpack.ExtType(code, text.encode())


def _nested(kind: Callable[[Any], Any], depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = kind(value)
    return value


def _call(name: Any, args: Any, **header: Any) -> Callable[[Any], list[bytes]]:
    """Frames of a request ``[header, name, args]``, its header's message_id the shape's own."""
    return lambda mid: [b"", _packb([{"message_id": mid, "v": 3, **header}, name, args])]


def _blob(make: Callable[[Any], bytes]) -> Callable[[Any], list[bytes]]:
    return lambda mid: [b"", make(mid)]


def _header(mid: Any) -> bytes:
    return _packb({"message_id": mid, "v": 3})


# Each shape: what to send (frames, given its message_id), the reply event's
# name, and what its first argument (the error's name) or result must match.
ANSWERED: dict[str, tuple[Callable[[Any], list[bytes]], str, Any]] = {
    # Arguments that are not an array.
    "args an integer": (_call("echo", 5), "ERR", "TypeError"),
    "args a string": (_call("echo", "abc"), "ERR", "TypeError"),
    "args bytes": (_call("echo", b"abc"), "ERR", "TypeError"),
    "args nil": (_call("echo", None), "ERR", "TypeError"),
    "args a map": (_call("echo", {"value": 1}), "ERR", "TypeError"),
    "args a boolean": (_call("echo", True), "ERR", "TypeError"),
    "args a float": (_call("echo", 1.5), "ERR", "TypeError"),
    "args NaN": (_call("echo", float("nan")), "ERR", "TypeError"),
    "args another program's extension": (
        _call("echo", msgpack.ExtType(42, b"x")),
        "ERR",
        "TypeError",
    ),
    "args keyword arguments alone": (
        _call("echo", _ext(values.KWARGS, {"value": 1})),
        "ERR",
        "TypeError",
    ),
    # Arguments in an array, with hostile values in it.
    "a list nested 100 deep": (_call("echo", [_nested(lambda v: [v], 100)]), "OK", None),
    # Deeper than msgpack's packer goes (512 levels): written by hand.
    "a list nested 1000 deep": (
        _blob(lambda mid: b"\x93" + _header(mid) + _packb("echo") + b"\x91" * 1001 + b"\x90"),
        "OK",
        None,
    ),
    "a list nested 5000 deep": (
        _blob(lambda mid: b"\x93" + _header(mid) + _packb("echo") + b"\x91" * 5001 + b"\x90"),
        "ERR",
        "BadRequest",
    ),
    "the largest integer msgpack holds": (_call("echo", [2**64 - 1]), "OK", 2**64 - 1),
    "the smallest integer msgpack holds": (_call("echo", [-(2**63)]), "OK", -(2**63)),
    "a map with non-string keys": (_call("echo", [{1: 2, None: 3}]), "OK", {1: 2, None: 3}),
    "a map with an array for a key": (
        _blob(lambda mid: b"\x93" + _header(mid) + _packb("echo") + b"\x91\x81\x91\x01\x02"),
        "ERR",
        "BadRequest",
    ),
    "keyword arguments that are an array": (
        _call("echo", [_ext(values.KWARGS, [1, 2])]),
        "ERR",
        "BadRequest",
    ),
    "keyword arguments with a non-string key": (
        _call("echo", [_ext(values.KWARGS, {1: 2})]),
        "ERR",
        "BadRequest",
    ),
    "keyword arguments that are not msgpack": (
        _call("echo", [msgpack.ExtType(values.KWARGS, b"\xc1")]),
        "ERR",
        "BadRequest",
    ),
    "an unexpected keyword argument": (
        _call("echo", [_ext(values.KWARGS, {"value": 1, "bogus": 2})]),
        "ERR",
        "TypeError",
    ),
    "keyword arguments before a positional one": (
        _call("echo", [_ext(values.KWARGS, {"value": 1}), 2]),
        "ERR",
        "TypeError",
    ),
    "a datetime that is not one": (
        _call("echo", [_text_ext(values.DATETIME, "yesterday")]),
        "ERR",
        "BadRequest",
    ),
    "a 5 MB datetime that is not one": (
        _call("echo", [_text_ext(values.DATETIME, SWOLLEN)]),
        "ERR",
        "BadRequest",
    ),
    "a signalling NaN decimal": (
        _call("echo", [_text_ext(values.DECIMAL, "sNaN")]),
        "ERR",
        "BadRequest",
    ),
    "a UUID that is not one": (_call("echo", [_text_ext(values.UUID, "x")]), "ERR", "BadRequest"),
    "a set of arrays": (_call("echo", [_ext(values.SET, [[1]])]), "ERR", "BadRequest"),
    "tuples nested 40 deep": (
        _call("echo", [_nested(lambda v: _ext(values.TUPLE, [v]), 40)]),
        "ERR",
        "BadRequest",
    ),
    "a 200,000-item array": (_call("echo", [list(range(200_000))]), "ERR", "BadRequest"),
    "a function's error that quotes a 5 MB argument": (
        _call("raise_django_error", [SWOLLEN]),
        "ERR",
        "KeyError",
    ),
    # Headers.
    "message_id an integer": (lambda mid: _call("echo", [1])(7), "OK", 1),
    "message_id the largest integer": (lambda mid: _call("echo", [1])(2**64 - 1), "OK", 1),
    "message_id a negative integer": (lambda mid: _call("echo", [1])(-1), "OK", 1),
    "message_id a string": (lambda mid: _call("echo", [1])("a string id"), "OK", 1),
    "no protocol version": (
        lambda mid: [b"", _packb([{"message_id": mid}, "echo", [1]])],
        "OK",
        1,
    ),
    "the protocol version a string": (_call("echo", [1], v="3"), "ERR", "BadRequest"),
    "the protocol version a float": (_call("echo", [1], v=3.0), "ERR", "BadRequest"),
    "a negative protocol version": (_call("echo", [1], v=-1), "OK", 1),
    "header keys that are not strings": (
        _blob(lambda mid: _packb([{"message_id": mid, 1: 2, None: [None]}, "echo", [1]])),
        "OK",
        1,
    ),
    "time_left a string": (_call("echo", [1], time_left="soon"), "OK", 1),
    "time_left NaN": (_call("echo", [1], time_left=float("nan")), "OK", 1),
    "time_left beyond a week": (_call("echo", [1], time_left=1e300), "OK", 1),
    "a language of the wrong shape": (_call("echo", [1], language=["de"]), "OK", 1),
    # Names.
    "name an integer": (_call(5, []), "ERR", "BadRequest"),
    "name bytes": (_call(b"echo", [1]), "ERR", "BadRequest"),
    "name nil": (_call(None, []), "ERR", "BadRequest"),
    "name empty": (_call("", []), "ERR", "BadRequest"),
    "name of 10,000 characters": (_call("x" * 10_000, []), "ERR", "BadRequest"),
    "name not UTF-8": (
        _blob(lambda mid: b"\x93" + _header(mid) + b"\xa2\xff\xfe" + _packb([])),
        "ERR",
        "BadRequest",
    ),
    "name of no function": (_call("no_such_function", []), "ERR", "NameError"),
    "name a heartbeat's, without response_to": (_call(protocol.HEARTBEAT, [0]), "ERR", "NameError"),
    "name a credit's, without response_to": (_call(protocol.MORE, [100]), "ERR", "NameError"),
    "name a cancel's, without response_to": (_call(protocol.CANCEL, []), "ERR", "NameError"),
    "name of zerorpc's events, unknown": (_call("_zpc_bogus", []), "ERR", "NameError"),
    # Events that are not [header, name, args].
    "an event of one item": (_blob(lambda mid: _packb([{"message_id": mid}])), "ERR", "BadRequest"),
    "an event of two items": (
        _blob(lambda mid: _packb([{"message_id": mid}, "echo"])),
        "ERR",
        "BadRequest",
    ),
    "an event of four items": (
        _blob(lambda mid: _packb([{"message_id": mid}, "echo", [1], "more"])),
        "ERR",
        "BadRequest",
    ),
    "trailing bytes after the event": (
        lambda mid: [b"", _call("echo", [1])(mid)[1] + b"garbage"],
        "ERR",
        "BadRequest",
    ),
    "an event cut short": (lambda mid: [b"", _call("echo", [1])(mid)[1][:-3]], "ERR", "BadRequest"),
    # Frames.
    "a frame after the event": (
        lambda mid: [*_call("echo", [1])(mid), b"extra"],
        "ERR",
        "BadRequest",
    ),
    "an empty frame after the event": (
        lambda mid: [*_call("echo", [1])(mid), b""],
        "ERR",
        "BadRequest",
    ),
    "two empty frames before the event": (lambda mid: [b"", *_call("echo", [1])(mid)], "OK", 1),
    # zerorpc's built-ins.
    "_zerorpc_inspect with arguments": (_call("_zerorpc_inspect", [1]), "ERR", "TypeError"),
    "_zerorpc_list with arguments": (_call("_zerorpc_list", ["x"]), "ERR", "TypeError"),
    "_zerorpc_ping with keyword arguments": (
        _call("_zerorpc_ping", [_ext(values.KWARGS, {"x": 1})]),
        "ERR",
        "TypeError",
    ),
    "_zerorpc_help of an array": (_call("_zerorpc_help", [[1]]), "ERR", "TypeError"),
    "_zerorpc_help of nil": (_call("_zerorpc_help", [None]), "ERR", "NameError"),
    "_zerorpc_help of a 5 MB name": (_call("_zerorpc_help", [SWOLLEN]), "ERR", "NameError"),
    "_zerorpc_args with no arguments": (_call("_zerorpc_args", []), "ERR", "TypeError"),
    # A stream's function.
    "a stream of a string's length": (_call("count_up", ["x"]), "ERR", "TypeError"),
    "a stream with no arguments": (_call("count_up", []), "ERR", "TypeError"),
    "a stream with an unexpected keyword": (
        _call("count_up", [1, _ext(values.KWARGS, {"bogus": 1})]),
        "ERR",
        "TypeError",
    ),
}

# The message_id a shape's reply answers, when the shape sends its own.
_OWN_IDS = {
    "message_id an integer": 7,
    "message_id the largest integer": 2**64 - 1,
    "message_id a negative integer": -1,
    "message_id a string": "a string id",
}

# Shapes that carry no usable message_id, or are not requests at all: no
# reply could name them, so they are dropped; those that are not zerorpc
# events are counted in the "Dropped N bad frame(s)" warning.
DROPPED: dict[str, tuple[Callable[[], list[bytes]], bool]] = {
    "no message_id": (lambda: [b"", _packb([{"v": 3}, "echo", [1]])], True),
    "message_id empty": (lambda: [b"", _packb([{"message_id": b""}, "echo", [1]])], True),
    "message_id of 300 bytes": (
        lambda: [b"", _packb([{"message_id": b"x" * 300}, "echo", []])],
        True,
    ),
    "message_id a float": (lambda: [b"", _packb([{"message_id": 1.5}, "echo", [1]])], True),
    "message_id a boolean": (lambda: [b"", _packb([{"message_id": True}, "echo", [1]])], True),
    "message_id nil": (lambda: [b"", _packb([{"message_id": None}, "echo", [1]])], True),
    "message_id an array": (lambda: [b"", _packb([{"message_id": [1]}, "echo", [1]])], True),
    "header an array": (lambda: [b"", _packb([[b"m" * 32, 3], "echo", [1]])], True),
    "the event a map": (lambda: [b"", _packb({"message_id": b"m" * 32})], True),
    "an empty event": (lambda: [b"", b""], True),
    "not msgpack": (lambda: [b"", b"\xc1 not msgpack"], True),
    "no empty frame before the event": (
        lambda: [_packb([{"message_id": b"n" * 32}, "echo", [1]])],
        True,
    ),
    "an empty frame alone": (lambda: [b""], True),
    # A reply's response_to makes it an event of a call, not a request: of one
    # that ended, or that this server never had.
    "response_to of no call": (
        lambda: [b"", _packb([{"message_id": b"r" * 32, "response_to": b"q" * 32}, "echo", [1]])],
        False,
    ),
}


def _answer(sock: zmq.Socket, message_id: Any, timeout: float) -> list[Any] | None:
    """Return the event that answers ``message_id`` within ``timeout`` seconds, or None.

    Replies to other calls (none are expected) are skipped, at most a hundred.
    """
    deadline = time.monotonic() + timeout
    for _ in range(100):
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(left * 1000):
            return None
        blob = sock.recv_multipart()[-1]
        event = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        if event[0].get("response_to") == message_id:
            return event
    return None


def _short(value: Any) -> str:
    # reprlib: a reply may hold a list nested deeper than repr() recurses.
    return reprlib.repr(value)[:300]


def _problem(case: str, event: list[Any] | None, name: str, expected: Any) -> str | None:
    if event is None:
        return f"{case}: no reply within {ANSWER_WITHIN} s"
    _, got, args = event
    if got != name:
        return f"{case}: {got} {_short(args)}, not {name}"
    first = args[0] if isinstance(args, list) and args else args
    if name == "ERR":
        if first != expected or not isinstance(args[1], str) or not args[1]:
            return f"{case}: {_short(args)}, not a {expected} with a message"
    elif expected is not None and first != expected:
        return f"{case}: {_short(first)}, not {_short(expected)}"
    return None


def test_every_hostile_request_with_a_message_id_is_answered(server):
    sock = raw_dealer(server.endpoint)
    problems = []
    try:
        for number, (case, (frames, name, expected)) in enumerate(ANSWERED.items()):
            message_id = _OWN_IDS.get(case, _id(number))
            sock.send_multipart(frames(_id(number)))
            problem = _problem(case, _answer(sock, message_id, ANSWER_WITHIN), name, expected)
            if problem is not None:
                problems.append(problem)
        assert not problems, "\n".join(problems)
        # Whatever came before, the server is up and serves a good call.
        sock.send_multipart(_call("echo", ["still here"])(b"g" * 32))
        assert _answer(sock, b"g" * 32, ANSWER_WITHIN)[1:] == ["OK", ["still here"]]
    finally:
        sock.close()
    assert server.proc.poll() is None


def test_error_messages_are_cut_to_a_size_a_reply_may_carry(server):
    sock = raw_dealer(server.endpoint)
    try:
        sock.send_multipart(_call("raise_django_error", [SWOLLEN])(b"s" * 32))
        event = _answer(sock, b"s" * 32, ANSWER_WITHIN)
        assert event is not None
        message = event[2][1]
        assert len(message) <= 10_000
        assert re.search(r"characters? cut", message), message[-200:]
    finally:
        sock.close()


def test_requests_that_say_nothing_of_their_sender_are_dropped_and_counted(start_server):
    # A server of its own: the warning counts what the other tests sent too.
    server = start_server("--heartbeat", "1")
    mark = server.mark()
    sock = raw_dealer(server.endpoint)
    try:
        for frames, _ in DROPPED.values():
            sock.send_multipart(frames())
        # Replies leave in the order the requests came: none may come before
        # the reply to the good call sent last.
        sock.send_multipart(_call("echo", ["after"])(b"a" * 32))
        assert sock.poll(ANSWER_WITHIN * 1000)
        header, name, args = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
        assert (header["response_to"], name, args) == (b"a" * 32, "OK", ["after"])
        counted_wanted = sum(counted for _, counted in DROPPED.values())
        deadline = time.monotonic() + 10
        counted = 0
        while time.monotonic() < deadline and counted < counted_wanted:
            logged = re.findall(r"Dropped (\d+) bad frame", server.output_since(mark))
            counted = sum(int(found) for found in logged)
            time.sleep(0.05)
        assert counted == counted_wanted
    finally:
        sock.close()


@pytest.mark.parametrize("name", [protocol.HEARTBEAT, protocol.MORE, protocol.CANCEL, "_zpc_x"])
def test_rpcclient_refuses_the_names_of_zerorpcs_events(server, name):
    client = RPCClient(server.endpoint, timeout=5)
    try:
        with pytest.raises(ValueError, match="is an event of zerorpc's protocol, not a function"):
            client.call(name)
        assert client.echo(1) == 1
    finally:
        client.close()


@pytest.mark.asyncio
async def test_async_rpcclient_refuses_the_names_of_zerorpcs_events(server):
    async with AsyncRPCClient(server.endpoint, timeout=5, heartbeat=1) as client:
        with pytest.raises(ValueError, match="is an event of zerorpc's protocol, not a function"):
            await client.call(protocol.HEARTBEAT)
        assert await client.echo(1) == 1
