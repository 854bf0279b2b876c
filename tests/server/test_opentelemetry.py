"""OpenTelemetry (issue 17): a view, its RPC and the RPC's queries are one trace, across runrpc.

The runrpc process runs with ``tests.settings_otel`` (the SDK, spans kept in
memory) and hands its finished spans out through the ``finished_spans``
probe; this process keeps its own CLIENT spans the same way.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.exceptions import TimeoutExpired
from testproject.tickets.errors import SoldOut
from tests import otel
from tests.conftest import ROOT, subprocess_env

tracer = trace.get_tracer("tests.views")


@pytest.fixture(scope="module")
def traced(start_module_server):
    """A runrpc server whose spans are kept in memory, and the SDK on in this process."""
    otel.install()
    return start_module_server("--heartbeat", "1", "--settings=tests.settings_otel")


@pytest.fixture
def client(traced):
    otel.exporter.clear()
    with RPCClient(traced.endpoint, timeout=10) as client:
        yield client


def server_spans(client: RPCClient, count: int, **wanted: object) -> list[dict]:
    """Wait until the server has finished ``count`` spans with the ``wanted`` values; return them.

    Only the functions the tests call: a connection's first call with keyword
    arguments asks the server ``_zerorpc_name`` first, a span of the trace too.
    """
    deadline = time.monotonic() + 5
    while True:
        spans = [
            s
            for s in client.finished_spans()
            if all(s[key] == value for key, value in wanted.items())
            and not s["name"].startswith("_zerorpc")
        ]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def client_span(name: str) -> dict:
    (span,) = [s for s in otel.finished_spans() if s["kind"] == "CLIENT" and s["name"] == name]
    return span


def test_a_view_its_rpc_and_the_rpcs_query_are_one_trace(traced, client):
    with tracer.start_as_current_span("GET /tickets/") as view:
        assert client.query_in_a_span() is True
    view_trace = f"{view.get_span_context().trace_id:032x}"
    sent = client_span("query_in_a_span")
    assert sent["trace_id"] == view_trace
    assert sent["parent_id"] == f"{view.get_span_context().span_id:016x}"
    assert sent["attributes"] == {
        "rpc.system": "zerorpc",
        "rpc.method": "query_in_a_span",
        "server.address": "127.0.0.1",
        "server.port": traced.port,
        "network.transport": "tcp",
    }
    assert sent["status"] == "UNSET"
    spans = {s["name"]: s for s in server_spans(client, 2, trace_id=view_trace)}
    served, query = spans["query_in_a_span"], spans["query"]
    assert (served["name"], served["kind"]) == ("query_in_a_span", "SERVER")
    assert served["parent_id"] == sent["span_id"]
    assert served["attributes"] == {"rpc.system": "zerorpc", "rpc.method": "query_in_a_span"}
    # Current while the function runs: what it (or a DB driver) traces nests under it.
    assert query["parent_id"] == served["span_id"]


def test_an_async_views_rpc_and_the_rpcs_query_are_one_trace(traced, client):
    async def view() -> Any:
        async with AsyncRPCClient(traced.endpoint, timeout=10) as async_client:
            with tracer.start_as_current_span("GET /async/") as span:
                assert await async_client.query_in_a_span() is True
            return span

    view_span = asyncio.run(view())
    view_trace = f"{view_span.get_span_context().trace_id:032x}"
    sent = client_span("query_in_a_span")
    assert sent["trace_id"] == view_trace
    assert sent["parent_id"] == f"{view_span.get_span_context().span_id:016x}"
    assert sent["attributes"]["server.port"] == traced.port
    spans = {s["name"]: s for s in server_spans(client, 2, trace_id=view_trace)}
    assert spans["query_in_a_span"]["parent_id"] == sent["span_id"]
    assert spans["query"]["parent_id"] == spans["query_in_a_span"]["span_id"]


def test_an_async_stream_is_one_span_with_its_item_count(traced, client):
    async def read() -> list[int]:
        async with AsyncRPCClient(traced.endpoint, timeout=10) as async_client:
            return [item async for item in await async_client.count_up(5)]

    assert asyncio.run(read()) == [0, 1, 2, 3, 4]
    sent = client_span("count_up")
    assert sent["attributes"]["rpc.zerorpc.stream.items"] == 5
    (served,) = server_spans(client, 1, trace_id=sent["trace_id"])
    assert served["parent_id"] == sent["span_id"]
    assert served["attributes"]["rpc.zerorpc.stream.items"] == 5


def test_the_server_span_is_current_in_a_blocking_functions_thread(client):
    with tracer.start_as_current_span("view") as view:
        client.query_in_a_span_blocking()
    view_trace = f"{view.get_span_context().trace_id:032x}"
    spans = {s["name"]: s for s in server_spans(client, 2, trace_id=view_trace)}
    assert spans["query"]["parent_id"] == spans["query_in_a_span_blocking"]["span_id"]


def test_a_failed_call_is_an_error_on_both_sides(client):
    with pytest.raises(SoldOut):
        client.raise_django_error("sold_out")
    sent = client_span("raise_django_error")
    assert (sent["status"], sent["attributes"]["error.type"]) == ("ERROR", "SoldOut")
    (served,) = server_spans(client, 1, trace_id=sent["trace_id"])
    assert (served["status"], served["attributes"]["error.type"]) == ("ERROR", "SoldOut")
    assert served["parent_id"] == sent["span_id"]


def test_a_call_past_its_deadline_is_a_timeout_here_and_deadline_exceeded_there(client):
    with pytest.raises(TimeoutExpired):
        client.call("sleep", 3, timeout=0.5)
    sent = client_span("sleep")
    assert sent["attributes"]["error.type"] == "TimeoutExpired"
    (served,) = server_spans(client, 1, trace_id=sent["trace_id"])
    assert (served["status"], served["attributes"]["error.type"]) == ("ERROR", "DeadlineExceeded")


def test_a_stream_is_one_span_with_its_item_count(client):
    assert list(client.count_up(5)) == [0, 1, 2, 3, 4]
    sent = client_span("count_up")
    assert sent["attributes"]["rpc.zerorpc.stream.items"] == 5
    (served,) = server_spans(client, 1, trace_id=sent["trace_id"])
    assert served["attributes"]["rpc.zerorpc.stream.items"] == 5
    assert served["status"] == "UNSET"


def test_a_stream_closed_early_ends_both_spans(client):
    stream = client.count_up(100, delay=0.05)
    assert [next(stream), next(stream)] == [0, 1]
    assert otel.finished_spans() == []  # the stream is open: so is its span
    stream.close()
    sent = client_span("count_up")
    assert sent["attributes"]["rpc.zerorpc.stream.items"] == 2
    (served,) = server_spans(client, 1, trace_id=sent["trace_id"])
    assert served["attributes"]["rpc.zerorpc.cancelled"] is True
    assert 2 <= served["attributes"]["rpc.zerorpc.stream.items"] < 100
    assert served["status"] == "UNSET"  # the caller had read enough: not a failure


def test_a_nested_call_continues_the_trace(traced, client):
    assert client.nested_echo(traced.endpoint, 7) == 7
    sent = client_span("nested_echo")
    spans = {(s["name"], s["kind"]): s for s in server_spans(client, 3, trace_id=sent["trace_id"])}
    outer = spans[("nested_echo", "SERVER")]
    inner_call = spans[("echo", "CLIENT")]
    inner = spans[("echo", "SERVER")]
    assert outer["parent_id"] == sent["span_id"]
    assert inner_call["parent_id"] == outer["span_id"]
    assert inner["parent_id"] == inner_call["span_id"]


def test_a_call_from_a_stock_zerorpc_client_starts_a_new_trace(traced, client):
    with tracer.start_as_current_span("view") as view:
        with traced.client() as stock:
            assert stock.echo("plain") == "plain"
    ours = f"{view.get_span_context().trace_id:032x}"
    (served,) = server_spans(client, 1, name="echo", parent_id=None)
    assert served["kind"] == "SERVER"
    assert served["trace_id"] != ours
    assert [s for s in client.finished_spans() if s["trace_id"] == ours] == []


WITHOUT_OPENTELEMETRY = """
import json, sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
import django
django.setup()
from django.test.utils import override_settings
from django_zrpc import RPCClient, conf
from django_zrpc.checks import check_settings
with RPCClient(sys.argv[1], timeout=10) as client:
    echoed = client.echo(5)
with override_settings(ZRPC_OPENTELEMETRY=True):
    errors = [e.id for e in check_settings()]
print(json.dumps({
    "echoed": echoed,
    "middleware": conf.default_middleware(),
    "errors": errors,
    "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]),
}))
"""


def test_without_the_api_nothing_is_traced_or_imported(traced):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY, traced.endpoint],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["echoed"] == 5
    assert seen["loaded"] == []
    assert "django_zrpc.contrib.opentelemetry.OpenTelemetryMiddleware" not in seen["middleware"]
    assert seen["errors"] == ["django_zrpc.E016"]


@pytest.mark.parametrize("value", ["yes", 1])
def test_a_bad_setting_is_a_check_error(settings, value):
    from django_zrpc.checks import check_settings

    settings.ZRPC_OPENTELEMETRY = value
    (error,) = [e for e in check_settings() if e.id == "django_zrpc.E015"]
    assert repr(value) in error.msg
