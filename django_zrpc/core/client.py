"""The gevent connection's import path before it moved to ``django_zrpc.client.gevent``.

Kept so that code written for earlier releases keeps importing; new code
imports ``Client`` from ``django_zrpc.client.gevent.connection``. Like the
module it stood for, importing it loads gevent and pyzmq.
"""

from django_zrpc.client.gevent.connection import Client
from django_zrpc.client.gevent.stream import Stream
from django_zrpc.wire.calls_out import (
    HANDSHAKE_GRACE,
    MAX_ERROR_TEXT,
    STREAM_WINDOW,
    TICK,
    CallByName,
)

__all__ = [
    "HANDSHAKE_GRACE",
    "MAX_ERROR_TEXT",
    "STREAM_WINDOW",
    "TICK",
    "CallByName",
    "Client",
    "Stream",
]
