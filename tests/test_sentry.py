"""Exceptions raised by RPC functions reach Sentry, end to end over HTTP.

A small HTTP server on 127.0.0.1 stands in for the DSN's host; the runrpc
process sends to it with the real SDK (sentry-sdk) or the legacy client (raven).
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import zerorpc

pytest.importorskip("sentry_sdk")


class SentryStub(ThreadingHTTPServer):
    """Record every request body sent to it, decoded."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def wait_for(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, body in list(self.received):
                found = predicate(path, body)
                if found:
                    return found
            time.sleep(0.05)
        pytest.fail(f"No matching event reached the Sentry stub; got {self.received!r}")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "0"}')

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def sentry_stub():
    stub = SentryStub()
    thread = threading.Thread(target=stub.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.shutdown()
    stub.server_close()


def _envelope_event(path: str, body: bytes):
    if not path.endswith("/envelope/"):
        return None
    lines = body.split(b"\n")
    for header, payload in zip(lines[1::2], lines[2::2], strict=False):
        if json.loads(header).get("type") == "event":
            return json.loads(payload)
    return None


def test_sentry_sdk_captures_rpc_exceptions_with_the_rpc_name(start_server, sentry_stub):
    server = start_server(SENTRY_DSN=f"http://publickey@127.0.0.1:{sentry_stub.port}/1")
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError):
            client.fail("sentry-boom")
        assert client.echo(1) == 1

    event = sentry_stub.wait_for(_envelope_event)
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "sentry-boom"
    assert exception["mechanism"] == {"type": "django_zrpc", "handled": False}
    assert event["tags"]["rpc"] == "fail"
    assert event["transaction"] == "rpc fail"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["function"] == "fail"


def test_without_sentry_init_the_middleware_switches_itself_off():
    import sentry_sdk
    from django.core.exceptions import MiddlewareNotUsed

    from django_zrpc.contrib.sentry import SentryMiddleware

    assert not sentry_sdk.get_client().is_active()  # the test process never calls init()
    with pytest.raises(MiddlewareNotUsed, match=r"sentry_sdk.init\(\) was not called"):
        SentryMiddleware()


def _raven_event(path: str, body: bytes):
    if not path.endswith("/store/"):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return json.loads(zlib.decompress(base64.b64decode(body)))


def test_raven_legacy_middleware_captures_rpc_exceptions(start_server, sentry_stub):
    pytest.importorskip("raven")
    server = start_server(RAVEN_DSN=f"http://public:secret@127.0.0.1:{sentry_stub.port}/1")
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError):
            client.fail("raven-boom")

    event = sentry_stub.wait_for(_raven_event)
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "raven-boom"
    assert event["tags"]["rpc"] == "fail"
    # raven hides the server's frames and keeps the function's own.
    assert [frame["function"] for frame in exception["stacktrace"]["frames"]] == ["fail"]
