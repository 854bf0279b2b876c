"""Both clients in a plain Python script: no DJANGO_SETTINGS_MODULE, or settings made by hand.

A cron job, a notebook, an ops script or another project's Celery worker
calls a real ``runrpc`` with ``RPCClient`` and ``AsyncRPCClient`` and never
configures Django: every call must work on the defaults. A script that calls
``settings.configure(...)`` itself gets what it configured.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import subprocess_env

# Each script prints one JSON object as its last line.
SYNC = """
import json, sys
from django.core.exceptions import ObjectDoesNotExist
from django_zrpc import RemoteError, RPCClient
from prometheus_client import REGISTRY

endpoint = sys.argv[1]
client = RPCClient(endpoint, timeout=30)
seen = {"plain": client.echo(5), "keywords": client.echo(value=[1, "a"])}
seen["stream"] = list(client.count_up(4))
try:
    client.fail("boom")
except RemoteError as err:
    seen["error"] = [err.name, str(err)]
try:
    client.get_ticket(10**9)
except ObjectDoesNotExist as err:
    seen["does_not_exist"] = type(err).__name__
labels = {"endpoint": endpoint, "function": "echo", "outcome": "ok", "error": ""}
seen["echo_counted"] = REGISTRY.get_sample_value("zrpc_client_calls_total", labels)
print(json.dumps(seen))
"""

ASYNC = """
import asyncio, json, sys
from django.core.exceptions import ObjectDoesNotExist
from django_zrpc import AsyncRPCClient, RemoteError
from prometheus_client import REGISTRY

endpoint = sys.argv[1]

async def main():
    client = AsyncRPCClient(endpoint, timeout=30)
    seen = {"plain": await client.echo(5), "keywords": await client.echo(value=[1, "a"])}
    seen["stream"] = [item async for item in await client.count_up(4)]
    try:
        await client.fail("boom")
    except RemoteError as err:
        seen["error"] = [err.name, str(err)]
    try:
        await client.get_ticket(10**9)
    except ObjectDoesNotExist as err:
        seen["does_not_exist"] = type(err).__name__
    labels = {"endpoint": endpoint, "function": "echo", "outcome": "ok", "error": ""}
    seen["echo_counted"] = REGISTRY.get_sample_value("zrpc_client_calls_total", labels)
    await client.aclose()
    return seen

print(json.dumps(asyncio.run(main())))
"""

BY_HAND = """
import json, sys
from django.conf import settings

endpoint = sys.argv[1]
settings.configure(
    ZRPC_METRICS=False,
    ZRPC_CLIENTS={"tickets": {"ENDPOINTS": [endpoint], "TIMEOUT": 30}},
)
from django_zrpc import clients
from prometheus_client import REGISTRY

seen = {"plain": clients["tickets"].echo(5), "stream": list(clients["tickets"].count_up(2))}
labels = {"endpoint": endpoint, "function": "echo", "outcome": "ok", "error": ""}
seen["echo_counted"] = REGISTRY.get_sample_value("zrpc_client_calls_total", labels)
print(json.dumps(seen))
"""


def run_script(source: str, endpoint: str, tmp_path) -> dict:
    """Run ``source`` in a fresh Python with no Django settings named; return what it printed."""
    env = subprocess_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", source, endpoint],
        cwd=tmp_path,  # not the project's folder: nothing of the test project is importable
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


EXPECTED = {
    "plain": 5,
    "keywords": [1, "a"],
    "stream": [0, 1, 2, 3],
    "error": ["ValueError", "ValueError: boom"],
    "does_not_exist": "RemoteDoesNotExist",
    # The default: metrics on wherever prometheus_client is installed.
    "echo_counted": 2.0,
}


def test_rpcclient_in_a_script_without_settings_calls_on_the_defaults(server, tmp_path):
    assert run_script(SYNC, server.endpoint, tmp_path) == EXPECTED


def test_asyncrpcclient_in_a_script_without_settings_calls_on_the_defaults(server, tmp_path):
    assert run_script(ASYNC, server.endpoint, tmp_path) == EXPECTED


def test_settings_configured_by_hand_in_a_script_are_honoured(server, tmp_path):
    seen = run_script(BY_HAND, server.endpoint, tmp_path)
    # ZRPC_CLIENTS found the client, ZRPC_METRICS = False kept the calls uncounted.
    assert seen == {"plain": 5, "stream": [0, 1], "echo_counted": None}
