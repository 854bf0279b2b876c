"""Views calling runrpc through RPCClient, served by real web servers.

gunicorn with gevent workers (monkey-patched; greenlets share one pool),
gunicorn's gthread workers and Django's threaded runserver (not patched; a pool
per thread), each a real process, with HTTP requests from the test and a real runrpc behind them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.client.test_rpcclient import established_to
from tests.conftest import ROOT, free_port, subprocess_env

WEB_SERVERS = {
    "gunicorn-gevent": lambda port: [
        str(Path(sys.executable).parent / "gunicorn"),
        "-k",
        "gevent",
        "-w",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "testproject.wsgi",
    ],
    "gunicorn-gthread": lambda port: [
        str(Path(sys.executable).parent / "gunicorn"),
        "-k",
        "gthread",
        "--threads",
        "4",
        "-w",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "testproject.wsgi",
    ],
    "runserver-threaded": lambda port: [
        sys.executable,
        "manage.py",
        "runserver",
        "--noreload",
        f"127.0.0.1:{port}",
    ],
}


def get(url: str, timeout: float = 20) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@contextmanager
def running_webs(kinds: list[str], rpc_endpoint: str, **env: str) -> Iterator[dict[str, str]]:
    """Run web servers of ``kinds`` whose views call ``rpc_endpoint``; yield their base URLs.

    They start together, and are stopped together.
    """
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for kind in kinds:
            port = free_port()
            proc = subprocess.Popen(
                WEB_SERVERS[kind](port),
                cwd=ROOT,
                env=subprocess_env(ZRPC_ENDPOINT=rpc_endpoint, **env),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs[kind] = proc, f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        for kind, (proc, base) in procs.items():
            while True:
                try:
                    get(f"{base}/tickets/0/", timeout=2)
                    break
                except OSError:
                    assert proc.poll() is None, f"{kind} exited with {proc.returncode}"
                    assert time.monotonic() < deadline, f"{kind} did not answer within 30 s"
                    time.sleep(0.1)
        yield {kind: base for kind, (_, base) in procs.items()}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module", params=list(WEB_SERVERS))
def web(request, server) -> Iterator[tuple[str, str]]:
    """``(kind, base URL)`` of a web server in front of the module's runrpc server.

    One of each kind for the module, one at a time (test_concurrent_requests
    counts the connections to the RPC server): the tests only request pages.
    """
    with running_webs([request.param], server.endpoint) as bases:
        yield request.param, bases[request.param]


@pytest.fixture(scope="module")
def webs_without_rpc() -> Iterator[dict[str, str]]:
    """A web server of each kind whose RPC server is down, by kind."""
    dead = f"tcp://127.0.0.1:{free_port()}"
    with running_webs(list(WEB_SERVERS), dead, ZRPC_TIMEOUT="0.5") as bases:
        yield bases


def test_ticket_views_end_to_end(web):
    _, base = web
    status, body = get(f"{base}/tickets/7/")
    assert status == 200
    assert json.loads(body)["title"] == "Ticket 7"
    assert get(f"{base}/tickets/999999/")[0] == 404
    status, body = get(f"{base}/tickets/?n=250")
    assert status == 200
    assert [json.loads(line)["id"] for line in body.splitlines()] == list(range(1, 251))


def test_concurrent_requests(web, server):
    kind, base = web
    ids = [1 + i % 200 for i in range(120)]
    peak = 0
    with ThreadPoolExecutor(24) as executor:
        futures = [executor.submit(get, f"{base}/tickets/{i}/") for i in ids]
        while not all(f.done() for f in futures):
            peak = max(peak, established_to(server.port))
            time.sleep(0.01)
        answers = [f.result() for f in futures]
    assert [status for status, _ in answers] == [200] * len(ids)
    assert [json.loads(body)["id"] for _, body in answers] == ids
    if kind == "gunicorn-gevent":
        # One worker, one hub: every greenlet borrows from the same pool of 5.
        assert 1 <= peak <= 5
    elif kind == "gunicorn-gthread":
        # Four long-lived threads, each serving one request at a time from a
        # pool of its own: four connections at most, reused request after request.
        assert 1 <= peak <= 4


@pytest.mark.parametrize("kind", list(WEB_SERVERS))
def test_a_dead_rpc_server_is_a_quick_503(kind, webs_without_rpc):
    started = time.monotonic()
    status, body = get(f"{webs_without_rpc[kind]}/tickets/1/")
    assert status == 503
    assert "did not answer" in json.loads(body)["error"]
    assert time.monotonic() - started < 3
