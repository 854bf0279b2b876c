"""What a process makes on first use, first used by 32 threads at once, in fresh processes.

gunicorn's gthread workers and thread pools start many callers together on
a brand-new client: its metrics, its tracer and its trace-context writer,
the shared ZeroMQ context, and the server's own clients in its blocking
threads are each made once, and every call that succeeded is counted once as "ok". Each
scenario runs in a process of its own, so that first use is really first.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port, subprocess_env
from tests.ops_http import scrape_counted, value

THREADS = 32
CALLS = 50

# The threads wait at a barrier and start their first calls together.
SCRIPT = """
import asyncio, collections, json, sys, threading
import django
django.setup()
from prometheus_client import REGISTRY
from django_zrpc import AsyncRPCClient, RPCClient, context

mode, endpoint, threads, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "traced":
    from tests import otel
    otel.install()
client = (AsyncRPCClient if mode == "async" else RPCClient)(endpoint, timeout=60)
barrier = threading.Barrier(threads)
failures = collections.Counter()

async def calls_in_a_loop():
    for i in range(calls):
        try:
            assert await client.echo(i) == i
        except Exception as err:
            failures[f"{type(err).__name__}: {err}"[:200]] += 1

def work():
    barrier.wait(60)
    if mode == "async":
        asyncio.run(calls_in_a_loop())
        return
    for i in range(calls):
        try:
            assert client.echo(i) == i
        except Exception as err:
            failures[f"{type(err).__name__}: {err}"[:200]] += 1

workers = [threading.Thread(target=work) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join(300)
# Per attempt, by outcome: on a busy machine a first connection can miss
# its connect timeout and the call is retried, so each call that succeeded
# is one "ok" whatever failed before it.
counted = sum(
    sample.value
    for family in REGISTRY.collect() if family.name == "zrpc_client_calls"
    for sample in family.samples
    if sample.name == "zrpc_client_calls_total" and sample.labels["outcome"] == "ok"
)
seen = {"failures": failures, "counted": counted, "writers": len(context._header_writers)}
if mode == "traced":
    from tests import otel
    seen["spans"] = sum(1 for span in otel.exporter.get_finished_spans() if span.name == "echo")
print(json.dumps(seen))
"""


def run_threads(mode: str, endpoint: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, endpoint, str(THREADS), str(CALLS)],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def quiet_server(start_module_server):
    """A server that logs no line per call (51,200 of them would cost more than the calls)."""
    return start_module_server("--heartbeat", "1", ZRPC_LOG_CALLS="0")


def test_rpcclient_shared_by_32_threads_from_its_first_call(quiet_server):
    seen = run_threads("sync", quiet_server.endpoint)
    assert seen["failures"] == {}
    assert seen["counted"] == THREADS * CALLS


def test_rpcclient_in_prometheus_multiprocess_mode_from_its_first_call(quiet_server, tmp_path):
    # prometheus_client's own Counter and Histogram, as in gunicorn's workers.
    seen = run_threads("sync", quiet_server.endpoint, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert seen["failures"] == {}
    assert seen["counted"] == THREADS * CALLS


def test_asyncrpcclient_shared_by_32_threads_each_with_its_event_loop(quiet_server):
    seen = run_threads("async", quiet_server.endpoint)
    assert seen["failures"] == {}
    assert seen["counted"] == THREADS * CALLS


def test_tracer_and_its_header_writer_are_made_once_for_32_threads(quiet_server):
    seen = run_threads("traced", quiet_server.endpoint)
    assert seen["failures"] == {}
    assert seen["counted"] == THREADS * CALLS
    assert seen["spans"] == THREADS * CALLS
    assert seen["writers"] == 1  # the trace context, written once a call


def test_server_blocking_threads_first_calling_out_together(start_server):
    # Each call runs in a thread of the server's pool and makes a client
    # there: the server's process makes its client metrics on the first of
    # those nested calls, from as many threads as run at once.
    ops = f"http://127.0.0.1:{free_port()}"
    server = start_server("--heartbeat", "1", "--ops", ops.removeprefix("http://"))
    server.wait_for(f"Ops endpoint at {ops}/")
    script = SCRIPT.replace("client.echo(i)", "client.nested_echo_blocking(endpoint, i)")
    done = subprocess.run(
        [sys.executable, "-c", script, "sync", server.endpoint, str(THREADS), str(CALLS)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["failures"] == {}
    calls = THREADS * CALLS
    samples = scrape_counted(ops, 2 * calls)  # each nested call and the echo it made
    ok = {"outcome": "ok", "error": ""}
    assert value(samples, "zrpc_server_calls_total", function="nested_echo_blocking", **ok) == calls
    assert value(samples, "zrpc_server_calls_total", function="echo", **ok) == calls
    nested = value(
        samples, "zrpc_client_calls_total", endpoint=server.endpoint, function="echo", **ok
    )
    assert nested == calls


TAKEN = """
import json, sys, logging
import django
django.setup()
from prometheus_client import Counter
from django_zrpc import RPCClient

logging.basicConfig(stream=sys.stderr)
# The project's own metric under a name the client's metrics use.
Counter("zrpc_client_retries", "Something else.")
client = RPCClient(sys.argv[1], timeout=30)
print(json.dumps([client.echo(i) for i in range(3)]))
"""


def test_client_metrics_whose_name_is_taken_turn_off_and_calls_go_on(quiet_server):
    done = subprocess.run(
        [sys.executable, "-c", TAKEN, quiet_server.endpoint],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, 1, 2]
    assert done.stderr.count("The client's metrics are off in this process") == 1
    assert "zrpc_client_retries" in done.stderr
