"""The ZAP handler (ZeroMQ RFC 27) that admits a CURVE server's clients by their keys, on gevent.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` in the server's
own ZeroMQ context whether to admit each connection; without one it admits
every key, so a CURVE server never runs without it (see ``ServerKeys.apply``,
which also makes libzmq refuse everyone should the handler go missing).
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils import z85

from django_zrpc.curve import AllowList
from django_zrpc.server.ratelimit import RateLimitedLog
from django_zrpc.transport.socket_loop import SocketLoop

logger = logging.getLogger("django_zrpc.server")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class Authenticator:
    """Answer libzmq's ZAP requests for the sockets of ``context``, on gevent.

    Bound to ``inproc://zeromq.zap.01`` in the server's own context, before
    the server binds; its greenlet runs beside the server's.
    """

    def __init__(self, context: zmq.Context, allow: AllowList) -> None:
        self.allow = allow
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self._io = SocketLoop(self.socket, self._on_request, logger)
        self._refusals = RateLimitedLog(logger, "Refused %d CURVE client(s); latest: %s")

    def run(self) -> None:
        self._io.run()

    def close(self) -> None:
        self._io.stop_watching()
        self.socket.close(linger=0)

    def _on_request(self, frames: list[bytes]) -> None:
        # [routing id, b"", version, request id, domain, address, identity,
        #  mechanism, credentials...]
        if len(frames) < 8 or frames[1] != b"":
            return  # libzmq never sends this
        routing, _, version, request_id, _domain, address, _identity, mechanism = frames[:8]
        credentials = frames[8:]
        name = None
        if version != b"1.0":
            status, text = b"500", b"Unsupported ZAP version"
        elif mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            status, text = b"400", b"CURVE is required"
            self._refusals.record(f"a {mechanism.decode(errors='replace')} client from {address!r}")
        else:
            name = self.allow.name_of(credentials[0])
            if name is None:
                status, text = b"400", b"Unknown key"
                self._refusals.record(
                    f"key {z85.encode(credentials[0]).decode()} from "
                    f"{address.decode(errors='replace')}: not in {self.allow.directory}"
                )
            else:
                status, text = b"200", b"OK"
        user_id = name.encode() if name is not None else b""
        self._io.send([routing, b"", b"1.0", request_id, status, text, user_id, b""])
