"""A running server's OpenRPC document: the _zrpc_schema built-in and rpcschema --from."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import zerorpc
from django.core.management import CommandError, call_command

from django_zrpc import RPCClient
from django_zrpc.management.commands.rpcschema import project_document
from tests.conftest import ROOT, free_port, subprocess_env


def rpcschema(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "rpcschema", *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zrpc_schema_is_the_projects_document(server):
    with RPCClient(server.endpoint, timeout=30) as client:
        served = client.call("_zrpc_schema")
        assert client.call("_zrpc_schema") == served
        name = client.call("_zerorpc_name")
    local = project_document()
    assert served["info"]["title"] == name
    assert served["methods"] == local["methods"]
    assert served["components"] == local["components"]
    assert "_zrpc_schema" not in [m["name"] for m in served["methods"]]


def test_zerorpc_inspect_and_list_keep_working_beside_it(server):
    client = zerorpc.Client(server.endpoint, timeout=30, heartbeat=None)
    try:
        inspected = client._zerorpc_inspect()
        listed = client._zerorpc_list()
        schema = client._zrpc_schema()
    finally:
        client.close()
    assert "typed_echo" in inspected["methods"]
    assert inspected["methods"]["typed_echo"]["args"] == [{"name": "x"}]
    assert "_zrpc_schema" not in listed
    assert schema["openrpc"] == "1.3.2"


def test_rpcschema_from_prints_the_servers_document(server, tmp_path):
    with RPCClient(server.endpoint, timeout=30) as client:
        served = client.call("_zrpc_schema")
    printed = rpcschema("--from", server.endpoint, "--timeout", "30")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == served
    # What CI does: the running release against the one saved before it.
    old = tmp_path / "old.json"
    served["methods"].append({**served["methods"][0], "name": "retired"})
    old.write_text(json.dumps(served))
    checked = rpcschema("--from", server.endpoint, "--timeout", "30", "--check", str(old))
    assert checked.returncode == 1, checked.stderr
    assert "BREAKING retired: the function was removed or renamed" in checked.stdout


def test_rpcschema_from_a_server_that_is_not_there_says_so():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match=f"{endpoint} sent no schema: "):
        call_command("rpcschema", "--from", endpoint, "--timeout", "1", stdout=io.StringIO())


def test_rpcschema_from_refuses_a_bad_endpoint():
    with pytest.raises(CommandError, match="udp://"):
        call_command("rpcschema", "--from", "udp://127.0.0.1:1", stdout=io.StringIO())
