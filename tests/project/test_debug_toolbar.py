"""``RPCPanel`` records the calls of a request, against a real runrpc, without a browser.

The panel is driven as django-debug-toolbar drives it (enable, the view's
calls, disable, generate_stats), with a toolbar that only keeps the stats.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from django.test import override_settings

pytest.importorskip("debug_toolbar")

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.client import tracing
from django_zrpc.contrib.debug_toolbar import RPCPanel
from django_zrpc.exceptions import RemoteError, TimeoutExpired
from tests.conftest import free_port

TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]


class _Store:
    def save_panel(self, request_id, panel_id, stats):
        pass


class _Toolbar:
    """What a panel reads of its toolbar to keep and show its stats."""

    def __init__(self):
        self.stats = {}
        self.store = _Store()
        self.request_id = "r"


def recorded(calls) -> RPCPanel:
    """Run ``calls()`` as a view would, under a panel; return the panel with its stats."""
    panel = RPCPanel(_Toolbar(), lambda request: None)
    panel.enable_instrumentation()
    try:
        calls()
    finally:
        panel.disable_instrumentation()
    panel.generate_stats(None, None)
    return panel


@pytest.fixture(scope="module")
def client(server):
    with RPCClient(server.endpoint, timeout=10) as made:
        yield made


def test_the_panel_lists_each_call_in_order_with_its_outcome(client):
    def view():
        for _ in range(2):
            client.echo("same")
        assert list(client.count_up(3)) == [0, 1, 2]
        with pytest.raises(RemoteError):
            client.fail("broken")

    panel = recorded(view)
    stats = panel.get_stats()
    calls = stats["calls"]
    assert [c["function"] for c in calls] == ["echo", "echo", "count_up", "fail"]
    assert [c["outcome"] for c in calls] == ["ok", "ok", "ok", "error"]
    assert calls[0]["arguments"]["full"] == "'same'"
    assert calls[0]["result"]["full"] == "'same'"
    assert calls[0]["endpoint"] == client.endpoints[0]
    assert (calls[2]["stream"], calls[2]["items"]) == (True, 3)
    assert calls[3]["error"] == "ValueError: broken"
    assert [c["duplicate_count"] for c in calls] == [2, 2, 0, 0]
    assert [c["loop_count"] for c in calls] == [2, 2, 0, 0]
    assert all(c["ms"] > 0 for c in calls)
    assert re.fullmatch(r"4 calls in \d+\.\d ms", panel.nav_subtitle)
    assert stats["total_ms"] == pytest.approx(sum(c["ms"] for c in calls), abs=0.01)


def test_the_panel_shows_a_timed_out_and_a_retried_call(server):
    dead = f"tcp://127.0.0.1:{free_port()}"

    def view():
        with RPCClient(server.endpoint, timeout=0.3) as slow, pytest.raises(TimeoutExpired):
            slow.sleep(2)
        # A dead endpoint first: the call that found no server there is sent to the live one.
        with RPCClient([dead, server.endpoint], timeout=10, down_for=30) as two:
            for _ in range(4):
                two.echo(1)

    calls = recorded(view).get_stats()["calls"]
    assert (calls[0]["outcome"], calls[0]["timed_out"]) == ("timed out", True)
    assert any(c["retried"] and c["attempts"] >= 2 for c in calls[1:])
    assert all(c["outcome"] == "ok" for c in calls[1:])


def test_the_panel_records_the_asyncio_clients_calls_with_the_request_id(server):
    async def view():
        from django_zrpc import context

        request = type("Request", (), {"request_id": "req-42", "user": None})()
        token = context._request.set(request)
        try:
            async with AsyncRPCClient(server.endpoint, timeout=10) as aclient:
                await aclient.echo({"a": 1})
                return [item async for item in await aclient.count_up(2)]
        finally:
            context._request.reset(token)

    calls = recorded(lambda: asyncio.run(view())).get_stats()["calls"]
    assert [(c["function"], c["items"]) for c in calls] == [("echo", 0), ("count_up", 2)]
    assert {c["request_id"] for c in calls} == {"req-42"}


def test_calls_of_another_thread_are_not_the_requests(client):
    other = threading.Thread(target=lambda: client.echo("elsewhere"))

    def view():
        other.start()
        other.join(10)
        client.echo("here")

    calls = recorded(view).get_stats()["calls"]
    assert [c["arguments"]["full"] for c in calls] == ["'here'"]


def test_no_observer_is_left_once_the_panel_is_done(client):
    before = tracing.client_tracer()
    recorded(lambda: client.echo(1))
    assert tracing.client_tracer() is before
    assert type(before).__name__ != "Observing"


@override_settings(TEMPLATES=TEMPLATES)
def test_the_panels_html_shows_the_rows_long_values_on_click(client):
    long = "x" * 200
    panel = recorded(lambda: [client.echo(long), client.echo(long)])
    html = panel.content
    assert html.count('class="zrpc-call zrpc-duplicate') == 2
    assert "Duplicated 2 times." in html
    assert "in a loop?" in html  # one line, twice
    assert f"<pre>&#x27;{long}&#x27;</pre>" in html
    assert "<details" in html
