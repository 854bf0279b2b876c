"""rpclist and rpccall: inspect the registry, call a running server from the shell."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time

from django.core.management import call_command

from django_zrpc.context import CallContext, CallContextFilter, _current
from tests.conftest import ROOT, free_port, subprocess_env


def rpccall(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "rpccall", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rpclist_shows_name_signature_flags_module_and_doc():
    out = io.StringIO()
    call_command("rpclist", stdout=out, no_color=True)
    text = out.getvalue()
    assert (
        "get_ticket(id)\n    testproject.tickets.rpcs.get_ticket\n    Return one ticket by id."
        in (text)
    )
    assert "ticket_list(n=100)  [stream]" in text
    assert "burn_cpu(seconds)  [blocking]" in text
    assert "describe_args(a, b=2, *rest, c=3, **more)" in text


def test_rpclist_json():
    out = io.StringIO()
    call_command("rpclist", "--json", stdout=out)
    entries = {entry["name"]: entry for entry in json.loads(out.getvalue())}
    assert entries["ticket_list"]["stream"] is True
    assert entries["burn_cpu"]["blocking"] is True
    assert entries["get_ticket"]["signature"] == "(id)"
    assert entries["get_ticket"]["function"] == "testproject.tickets.rpcs.get_ticket"


def test_rpccall_prints_the_result_as_json(server):
    result = rpccall("--endpoint", server.endpoint, "get_ticket", "1")
    assert result.returncode == 0, result.stderr
    ticket = json.loads(result.stdout)
    assert ticket["id"] == 1
    assert ticket["price"] == "1.99"
    assert ticket["created_at"].startswith("20")


def test_rpccall_streams_item_by_item_and_takes_keyword_arguments(server):
    streamed = rpccall("--endpoint", server.endpoint, "count_up", "3")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.splitlines() == ["0", "1", "2"]
    described = rpccall("--endpoint", server.endpoint, "describe_args", "x", "c=[1]", "d=text")
    assert json.loads(described.stdout) == {
        "a": "x",
        "b": 2,
        "rest": [],
        "c": [1],
        "more": {"d": "text"},
    }


def test_rpccall_uses_the_default_client_and_reports_remote_errors(server):
    result = rpccall("get_ticket", "-5", ZRPC_ENDPOINT=server.endpoint)
    assert result.returncode == 1
    assert "get_ticket raised DoesNotExist: Ticket matching query does not exist." in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_rpccall_to_a_server_that_is_down_fails_within_its_timeout():
    started = time.monotonic()
    result = rpccall("--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1", "echo", "1")
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "no connection to tcp://127.0.0.1:" in result.stderr
    bad = rpccall("--endpoint", "nonsense", "echo", "1")
    assert "'nonsense' is not an endpoint" in bad.stderr


def test_the_log_filter_adds_the_calls_context_to_records():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    CallContextFilter().filter(record)
    assert (record.request_id, record.user_id, record.rpc) == ("-", "-", "-")
    token = _current.set(CallContext("get_ticket", request_id="r-1", user_id=7))
    try:
        CallContextFilter().filter(record)
    finally:
        _current.reset(token)
    assert (record.request_id, record.user_id, record.rpc) == ("r-1", 7, "get_ticket")
