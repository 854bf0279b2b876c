"""A call to a server that is not running: the error says the whole wait, where, and what to do.

Each caller runs in a process of its own, as a script or ``manage.py
rpccall`` would, against a port where nothing listens: the message must give
the real wait (rounded, and matching the timeout), the endpoint, how many
attempts were made, and the ``runrpc`` command that would have answered.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from django_zrpc import AsyncRPCClient, RPCClient, ServerUnavailable
from django_zrpc.wire import unreachable
from tests.conftest import ROOT, free_port, subprocess_env

#: The call's timeout: three of the clients' one-second connect timeouts.
TIMEOUT = 3.0

# Each script calls ``add`` at argv[1] and prints one JSON object: what it
# caught and how long the call took.
SYNC = """
import json, sys, time
from django_zrpc import RPCClient

client = RPCClient(sys.argv[1], timeout=float(sys.argv[2]))
started = time.monotonic()
try:
    client.add(1, 2)
except Exception as err:
    caught = err
took = time.monotonic() - started
print(json.dumps({
    "type": type(caught).__name__,
    "message": str(caught),
    "took": took,
    "endpoints": getattr(caught, "endpoints", None),
    "attempts": getattr(caught, "attempts", None),
}))
"""

ASYNC = """
import asyncio, json, sys, time
from django_zrpc import AsyncRPCClient

async def main():
    client = AsyncRPCClient(sys.argv[1], timeout=float(sys.argv[2]))
    started = time.monotonic()
    try:
        await client.add(1, 2)
    except Exception as err:
        caught = err
    took = time.monotonic() - started
    client.close()
    return {
        "type": type(caught).__name__,
        "message": str(caught),
        "took": took,
        "endpoints": getattr(caught, "endpoints", None),
        "attempts": getattr(caught, "attempts", None),
    }

print(json.dumps(asyncio.run(main())))
"""

# The same as SYNC, in a process with the test project's settings.
DJANGO = "import django\ndjango.setup()\n" + SYNC

FIGURES = re.compile(r"could be made in (\d+\.\d) s \((\d+) attempts?\)\.")


def run(source: str, endpoint: str, with_settings: bool, tmp_path) -> dict:
    """Run ``source`` in a fresh Python against ``endpoint``; return what it printed."""
    env = subprocess_env()
    if not with_settings:
        env.pop("DJANGO_SETTINGS_MODULE")
        env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", source, endpoint, str(TIMEOUT)],
        cwd=ROOT if with_settings else tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_says_the_wait(message: str, took: float, slack: float = 3.0) -> int:
    """Check the wait the message gives against the timeout and ``took``; return the attempts."""
    figures = FIGURES.search(message)
    assert figures, message
    waited, attempts = float(figures[1]), int(figures[2])
    # The figure is the wait, rounded to a tenth: it matches the timeout and
    # what the caller measured (a busy machine may make both a little late).
    assert TIMEOUT - 0.1 <= waited <= took + 0.1, message
    assert TIMEOUT - 0.1 <= took < TIMEOUT + slack, took
    return attempts


def hint(port: int) -> str:
    """The message's last sentences, for a server expected at 127.0.0.1:``port``."""
    endpoint = f"tcp://127.0.0.1:{port}"
    return f"Is runrpc running at {endpoint}? Start it with `manage.py runrpc 127.0.0.1:{port}`."


@pytest.mark.parametrize(
    ("source", "with_settings"),
    [(SYNC, False), (ASYNC, False), (DJANGO, True)],
    ids=["RPCClient script", "AsyncRPCClient script", "RPCClient with Django settings"],
)
def test_a_client_says_the_whole_wait_the_endpoint_the_attempts_and_how_to_start_it(
    source, with_settings, tmp_path
):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    caught = run(source, endpoint, with_settings, tmp_path)
    message = caught["message"]
    assert caught["type"] == "ServerUnavailable", message
    assert message.startswith(f"Calling remote method add: no connection to {endpoint} could be")
    assert message.endswith(hint(port))
    attempts = assert_says_the_wait(message, caught["took"])
    # One connect timeout (1 s) an attempt, retried until the call's own.
    assert 2 <= attempts <= 4, message
    assert (caught["endpoints"], caught["attempts"]) == ([endpoint], attempts)


def test_rpccall_says_the_same():
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "rpccall", "--endpoint", endpoint, "--timeout", "3", "add"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started  # the process's start and end too: a loose bound
    assert done.returncode == 1
    message = done.stderr.strip()
    assert message.startswith(
        f"CommandError: Calling remote method add: no connection to {endpoint} could be made"
    )
    assert message.endswith(hint(port))
    # A new process's start (Django's setup) on a busy machine took 3.5 s:
    # the message's own figure checks the wait, this only that it ends.
    assert assert_says_the_wait(message, took, slack=15.0) == 1, message


@pytest.mark.asyncio
async def test_both_clients_name_every_endpoint_they_tried():
    dead = [f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"]
    both = f"no connection to {dead[0]} or {dead[1]} could be made in "
    either = f"no connection to {dead[1]} or {dead[0]} could be made in "
    says = "Is runrpc running at any of them? Start it with `manage.py runrpc 127.0.0.1:"
    with RPCClient(dead, timeout=2.5, connect_timeout=0.5) as client:
        with pytest.raises(ServerUnavailable) as sync_info:
            client.add(1, 2)
    async with AsyncRPCClient(dead, timeout=2.5, connect_timeout=0.5) as aclient:
        with pytest.raises(ServerUnavailable) as async_info:
            await aclient.add(1, 2)
    for info in (sync_info, async_info):
        message = str(info.value)
        assert both in message or either in message, message
        assert says in message, message
        assert sorted(info.value.endpoints) == sorted(dead)
        assert info.value.attempts >= 3
        assert 2.4 <= info.value.waited < 6


@pytest.mark.parametrize(
    ("endpoints", "attempts", "waited", "says"),
    [
        (
            ["tcp://[::1]:4242"],
            1,
            0.005,
            "no connection to tcp://[::1]:4242 could be made in 5 ms (1 attempt). Is runrpc "
            "running at tcp://[::1]:4242? Start it with `manage.py runrpc [::1]:4242`.",
        ),
        (
            ["tcp://10.0.0.5:4242", "tcp://10.0.0.6:4242"],
            7,
            29.96,
            "no connection to tcp://10.0.0.5:4242 or tcp://10.0.0.6:4242 could be made in "
            "30.0 s (7 attempts). Is runrpc running at any of them? Start it with "
            "`manage.py runrpc 10.0.0.5:4242` on its host, and likewise for the others.",
        ),
        (
            ["ipc:///run/tickets.sock"],
            2,
            1.04,
            "no connection to ipc:///run/tickets.sock could be made in 1.0 s (2 attempts). "
            "Is a server running at ipc:///run/tickets.sock?",
        ),
    ],
)
def test_the_message_rounds_the_wait_and_gives_the_command_for_the_endpoint(
    endpoints, attempts, waited, says
):
    error = unreachable.error("get_ticket", endpoints, attempts, waited)
    assert str(error) == f"Calling remote method get_ticket: {says}"
    assert (error.endpoints, error.attempts, error.waited) == (endpoints, attempts, waited)
