"""manage.py rpchealth: the exit code an exec probe reads, against a real runrpc process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port, subprocess_env


def rpchealth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "rpchealth", *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_exit_0_when_the_server_answers(server):
    done = rpchealth(server.endpoint)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{server.endpoint}: pong from tests.settings in ")


def test_an_addrport_names_the_server_too(server):
    assert rpchealth(f"127.0.0.1:{server.port}").returncode == 0


def test_exit_1_with_one_line_when_nothing_listens():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    done = rpchealth(endpoint, "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"CommandError: {endpoint} did not answer a ping: Calling remote method _zerorpc_ping: "
        f"no connection to {endpoint} could be made in 0.5 s (1 attempt). Is runrpc running "
        f"at {endpoint}? Start it with `manage.py runrpc {endpoint.removeprefix('tcp://')}`."
    ]


def test_exit_1_when_the_endpoint_is_not_an_rpc_server(tmp_path):
    # An HTTP server: it takes the connection, never the ZeroMQ handshake.
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = rpchealth(f"tcp://127.0.0.1:{port}", "--timeout", "1")
    finally:
        http.terminate()
        http.wait(5)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"tcp://127.0.0.1:{port} did not answer a ping" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere:port"], "'nowhere:port' is neither an endpoint nor an addrport"),
        (["--timeout", "0"], "--timeout must be greater than 0, not 0.0."),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message):
    done = rpchealth(*args)
    assert done.returncode == 1
    assert message in done.stderr
