"""Exceptions raised by RPC functions reach Sentry, end to end over HTTP.

A small HTTP server on 127.0.0.1 stands in for the DSN's host; the runrpc
process sends to it with the real SDK (sentry-sdk) or the legacy client (raven).
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
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

    def wait_for(self, predicate, server=None, timeout: float = 15.0):
        """Return the first event ``predicate`` finds; fail early if ``server`` logged a failure.

        A middleware that raised never sends: its traceback in the server's
        log ends the wait at once, and says why, rather than a timeout.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, body in list(self.received):
                found = predicate(path, body)
                if found:
                    return found
            if server is not None and "contrib/sentry.py" in server.output:
                pytest.fail(f"The Sentry middleware failed in the server:\n{server.output}")
            time.sleep(0.05)
        log = f"; the server printed:\n{server.output}" if server is not None else ""
        pytest.fail(f"No matching event reached the Sentry stub; got {self.received!r}{log}")


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


@pytest.fixture(scope="session")
def sentry_sdk_2(request):
    """A folder holding the newest sentry-sdk 2.x, to put first on a runrpc's PYTHONPATH.

    The test extra installs the newest sentry-sdk (3 or later); users still on
    2.x get an event_from_exception() of another signature. Installed once
    into pytest's cache (its dependencies, urllib3 and certifi, are the venv's).
    """
    folder = request.config.cache.mkdir("sentry-sdk-2")
    if not (folder / "sentry_sdk").is_dir():
        install = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"),
                *("--target", str(folder), "--upgrade", "sentry-sdk>=2,<3"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if install.returncode != 0:
            pytest.skip(f"pip could not install sentry-sdk 2.x: {install.stderr[-500:]}")
    return folder


@pytest.fixture(params=["installed", "2.x"])
def sentry_sdk_env(request) -> dict[str, str]:
    """runrpc's environment for the installed sentry-sdk, then for sentry-sdk 2.x."""
    if request.param == "installed":
        return {}
    return {"PYTHONPATH": str(request.getfixturevalue("sentry_sdk_2"))}


def test_sentry_sdk_captures_rpc_exceptions_with_the_rpc_name(
    start_server, sentry_stub, sentry_sdk_env
):
    server = start_server(
        SENTRY_DSN=f"http://publickey@127.0.0.1:{sentry_stub.port}/1", **sentry_sdk_env
    )
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError):
            client.fail("sentry-boom")
        assert client.echo(1) == 1

    event = sentry_stub.wait_for(_envelope_event, server)
    if "PYTHONPATH" in sentry_sdk_env:
        assert event["sdk"]["version"].startswith("2."), event["sdk"]
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "sentry-boom"
    # sentry-sdk 3 adds the exception's place in its chain (exception_id).
    mechanism = exception["mechanism"]
    assert {key: mechanism[key] for key in ("type", "handled")} == {
        "type": "django_zrpc",
        "handled": False,
    }
    assert event["tags"]["rpc"] == "fail"
    assert event["transaction"] == "rpc fail"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["function"] == "fail"


def test_a_call_refused_by_its_contract_is_not_reported(start_server, sentry_stub):
    server = start_server(SENTRY_DSN=f"http://publickey@127.0.0.1:{sentry_stub.port}/1")
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError, match=r"expected str"):
            client.typed_echo(5)
        with pytest.raises(zerorpc.RemoteError):
            client.fail("after-the-refusal")
    event = sentry_stub.wait_for(_envelope_event, server)
    # The first event is the function's error: the refusal sent none.
    assert event["exception"]["values"][-1]["value"] == "after-the-refusal"
    events = [e for e in (_envelope_event(*r) for r in sentry_stub.received) if e]
    assert [e["tags"]["rpc"] for e in events] == ["fail"]


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
