"""Typed functions called by clients that are not django_zrpc's, against a real runrpc.

The Node.js ``zerorpc`` package (an independent implementation of the
protocol, ``tests/node``), like a stock ``zerorpc.Client``, sends plain
msgpack: dates, decimals and UUIDs as strings, tuples and sets as lists, only
positional arguments. The server converts those string forms to the
annotated types, and refuses a bad call with the remote error
``InvalidArguments``, whose name and message both clients read alike.
(``tests/server/test_contracts.py`` calls with stock zerorpc alone.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from typing import Any

import pytest
import zerorpc

from tests.conftest import ROOT
from tests.server.test_contracts import TYPED as DESCRIBED

NODE_DIR = ROOT / "tests" / "node"
IDENT = str(uuid.uuid4())

# describe() in the string forms a plain client sends, and the types they arrive as.
DESCRIBE_ARGS = [
    "2026-12-07T12:00:00",
    "2026-12-07",
    "12:30:00",
    "P1DT2H",
    "12.50",
    IDENT,
    "S",
    [1, "a"],
    ["x", "y"],
    {"a": 1},
    {"street": "Main Street", "city": "Ghent"},
]
BAD_ORDER = [[{"sku": "a", "qty": "two"}], "home", "XL"]
BAD_ORDER_PROBLEMS = ("lines[0].qty: expected int, got str 'two'", "size: expected one of")


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` command, checked before any server is started for nothing."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "zerorpc").is_dir():
        pytest.skip(
            "needs Node.js and the zerorpc npm package: "
            f"cd {NODE_DIR.relative_to(ROOT)} && npm install --no-audit --no-fund"
        )
    return node


def node_call(node: str, endpoint: str, name: str, *args: Any) -> dict[str, Any]:
    """Call ``name`` with the Node.js zerorpc client: ``{"result": ...}`` or ``{"error": ...}``."""
    done = subprocess.run(
        [node, str(NODE_DIR / "call.js"), endpoint, name, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_node_zerorpc_calls_typed_functions_with_string_forms(node, server) -> None:
    assert node_call(node, server.endpoint, "describe", *DESCRIBE_ARGS) == {"result": DESCRIBED}
    order = [{"sku": "a", "qty": 3, "price": "0.10"}]
    assert node_call(node, server.endpoint, "place_order", order, "home", "M") == {"result": 3}


def test_node_and_stock_zerorpc_read_the_same_refusal(node, server) -> None:
    outcome = node_call(node, server.endpoint, "place_order", *BAD_ORDER)
    with server.client(timeout=20) as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.place_order(*BAD_ORDER)
    assert outcome["error"] == {"name": caught.value.name, "message": caught.value.msg}
    assert outcome["error"]["name"] == "InvalidArguments"
    for problem in BAD_ORDER_PROBLEMS:
        assert problem in outcome["error"]["message"]
