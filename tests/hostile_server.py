"""A zerorpc server that misbehaves on purpose, for the client's tests; or one that only records.

    python tests/hostile_server.py PORT MODE

Every mode answers ``echo`` properly, so a test can see the connection is up.
Modes, for any other call:

- ``flood``: STREAM items, 20,000 of them, past any credit the caller grants;
- ``huge``: one 50 MB reply, past the caller's message size limit;
- ``long_error``: an ERR whose message is 10 MB;
- ``plain_stream``: a well-behaved stock zerorpc stream (no django_zrpc header):
  one item, then STREAM_DONE once the caller grants more;
- ``drop_on_name``: the first ``_zerorpc_name`` closes the socket (as a server
  that restarts), and a new one on the same port answers it from then on.

Every event received is printed as ``got NAME``, for the test to read.
"""

from __future__ import annotations

import sys
import time

import msgpack
import zmq

FLOOD_ITEMS = 20_000


def _blob(name: str, args: object, response_to: bytes, number: int) -> bytes:
    header = {"message_id": b"h%031d" % number, "v": 3, "response_to": response_to}
    return msgpack.packb([header, name, args], use_bin_type=True)


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)  # queue everything: the flood must reach the caller
    sock.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    numbers = iter(range(10**9))
    dropped = False
    while True:
        *identity, _, blob = sock.recv_multipart()
        header, name, args = msgpack.unpackb(blob, raw=False)
        print(f"got {name}", flush=True)
        if "response_to" in header:
            if name == "_zpc_more" and mode == "plain_stream":
                reply = _blob("STREAM_DONE", None, header["response_to"], next(numbers))
                sock.send_multipart([*identity, b"", reply])
            continue
        reply_to = (identity, header["message_id"])
        if name == "_zerorpc_name" and mode == "drop_on_name":
            if not dropped:
                dropped = True
                sock.close(linger=0)
                time.sleep(0.3)
                sock = zmq.Context.instance().socket(zmq.ROUTER)
                sock.bind(f"tcp://127.0.0.1:{port}")
                continue
            _send(sock, reply_to, "OK", ["hostile"], next(numbers))
        elif name == "echo":
            _send(sock, reply_to, "OK", [args[0] if args else None], next(numbers))
        elif mode == "flood":
            for index in range(FLOOD_ITEMS):
                _send(sock, reply_to, "STREAM", index, next(numbers))
        elif mode == "huge":
            _send(sock, reply_to, "OK", [b"x" * (50 * 1024 * 1024)], next(numbers))
        elif mode == "long_error":
            _send(sock, reply_to, "ERR", ["ValueError", "e" * (10 * 1024 * 1024), None], 0)
        elif mode == "plain_stream":
            _send(sock, reply_to, "STREAM", 0, next(numbers))


def _send(
    sock: zmq.Socket, reply_to: tuple[list[bytes], bytes], name: str, args: object, number: int
) -> None:
    identity, message_id = reply_to
    sock.send_multipart([*identity, b"", _blob(name, args, message_id, number)])


if __name__ == "__main__":
    main()
