"""Typed client stubs (``contracts/stubs.py``): checked by mypy, calling a real runrpc.

The stubs are made by ``manage.py rpcschema --stubs`` for the test project,
whose ``tests/typed`` app holds a function of each type family; mypy
``--strict`` must accept a good caller and reject each kind of bad call with
its own error code; the generated ``Client`` and ``AsyncClient`` call a real
``runrpc`` and give typed values back; ``validate=True`` (and ``schema=`` on
the plain clients) refuses a bad call before it is sent.
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core.management import call_command

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.contracts.client_side import OMITTED, ClientContracts, given
from django_zrpc.contracts.schema import openrpc_document
from django_zrpc.contracts.stubs import RESERVED, render_stubs
from django_zrpc.exceptions import InvalidArguments, RemoteError
from django_zrpc.registry import rpc
from tests.conftest import ROOT, free_port

mypy_api = pytest.importorskip("mypy.api")


def typed_document() -> dict[str, Any]:
    """The OpenRPC document of the functions of ``tests/typed``."""
    specs = [f.spec for f in rpc if f.module.startswith("tests.typed") and f.spec is not None]
    return openrpc_document(specs, title="typed", version="1")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the generated ``typed_client.py`` and a mypy config for it."""
    folder = tmp_path_factory.mktemp("stubs")
    # As a caller's project makes it: every function the test project serves.
    call_command("rpcschema", "--stubs", str(folder / "typed_client.py"))
    # As in a caller's project: django_zrpc is installed, its own code not checked.
    (folder / "mypy.ini").write_text(
        f"[mypy]\nmypy_path = {ROOT}\n[mypy-django_zrpc.*]\nfollow_imports = silent\n"
    )
    return folder


@pytest.fixture(scope="module")
def typed_client(stubs: Path) -> ModuleType:
    """The generated module, imported as a caller's project would."""
    spec = importlib.util.spec_from_file_location("typed_client", stubs / "typed_client.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["typed_client"] = module  # dataclasses resolve their annotations here
    spec.loader.exec_module(module)
    return module


def run_mypy(stubs: Path, *files: str) -> tuple[str, int]:
    out, err, status = mypy_api.run(
        ["--strict", "--config-file", str(stubs / "mypy.ini"), "--cache-dir", str(stubs / "cache")]
        + [str(stubs / name) for name in files]
    )
    return out + err, status


GOOD = """
import datetime
import decimal
import uuid
from collections.abc import Iterator

from typed_client import Address, AsyncClient, Client, Line, Order


def sync(client: Client) -> int:
    order: Order = client.make_order(Order([Line("a", 1, decimal.Decimal("1.5"))], "home", "S"))
    lines: Iterator[Line] = client.count_lines(3)
    kinds: dict[str, str] = client.describe(
        datetime.datetime.now(), datetime.date.today(), datetime.time(1),
        datetime.timedelta(1), decimal.Decimal("2.50"), uuid.uuid4(), "M", (1, "a"), {"x"},
        {"a": 1}, Address("Main Street", "Ghent"),
    )
    with Client("tcp://127.0.0.1:4242", validate=True, timeout=5) as other:
        other.typed_echo("x", timeout=1)
    return client.place_order([Line("a", 1)], "home", size="S", timeout=5) + order.lines[0].qty


async def asynchronous(client: AsyncClient) -> int:
    async for line in await client.count_lines(2):
        print(line.sku)
    return await client.place_order([Line("a", 1)], "home", note=None)
"""

# Each bad call, the error code mypy must give it and a piece of its message.
BAD = {
    "wrong_type": (
        'client.place_order([Line("a", "two")], "home")',
        "arg-type",
        'Argument 2 to "Line" has incompatible type "str"; expected "int"',
    ),
    "wrong_literal": (
        'client.place_order([Line("a", 1)], "home", size="XL")',
        "arg-type",
        "expected \"Literal['M', 'S']\"",
    ),
    "missing_argument": (
        'client.place_order([Line("a", 1)])',
        "call-arg",
        'Missing positional argument "ship_to" in call to "place_order"',
    ),
    "misspelt_function": (
        'client.place_ordr([Line("a", 1)], "home")',
        "attr-defined",
        '"Client" has no attribute "place_ordr"; maybe "place_order"',
    ),
    "misspelt_in_with": (
        'with Client("tcp://127.0.0.1:4242") as other: other.place_ordr([], "home")',
        "attr-defined",
        '"Client" has no attribute "place_ordr"',
    ),
    "wrong_result": (
        'total: str = client.place_order([Line("a", 1)], "home")',
        "assignment",
        '(expression has type "int", variable has type "str")',
    ),
}


@pytest.fixture(scope="module")
def mypy_bad(stubs: Path) -> str:
    """mypy's output on one file per bad call, checked in one run."""
    for name, (line, _, _) in BAD.items():
        (stubs / f"bad_{name}.py").write_text(
            f"from typed_client import Client, Line\n\n\ndef f(client: Client) -> None:\n"
            f"    {line}\n"
        )
    output, status = run_mypy(stubs, *(f"bad_{name}.py" for name in BAD))
    assert status == 1, output
    return output


def test_mypy_strict_accepts_good_calls_and_the_generated_module(stubs: Path) -> None:
    (stubs / "good.py").write_text(GOOD)
    output, status = run_mypy(stubs, "good.py", "typed_client.py")
    assert status == 0, output
    assert "Success: no issues found in 2 source files" in output


@pytest.mark.parametrize("name", BAD)
def test_mypy_strict_rejects_a_bad_call(mypy_bad: str, name: str) -> None:
    _, code, message = BAD[name]
    mine = [line for line in mypy_bad.splitlines() if f"bad_{name}.py:5: error:" in line]
    assert len(mine) == 1, mypy_bad
    assert message in mine[0], mine[0]
    assert mine[0].endswith(f"[{code}]"), mine[0]


def test_the_stubs_import_only_the_standard_library_msgspec_and_django_zrpc(stubs: Path) -> None:
    tree = ast.parse((stubs / "typed_client.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"django_zrpc"}


def test_the_typed_types_become_dataclasses_literals_and_stdlib_types(typed_client) -> None:
    import dataclasses
    import typing

    assert dataclasses.is_dataclass(typed_client.Line)
    assert typing.get_args(typed_client.Size) == ("M", "S")
    hints = typing.get_type_hints(typed_client.Client.describe)
    assert hints["when"] is datetime.datetime
    assert hints["amount"] is Decimal
    assert hints["ident"] is uuid.UUID
    assert hints["span"] is datetime.timedelta
    assert hints["pair"] == tuple[int, str]
    assert hints["names"] == set[str]
    assert hints["maybe"] == int | None
    assert hints["table"] == dict[str, int]
    stream = typing.get_type_hints(typed_client.AsyncClient.count_lines)["return"]
    assert typing.get_origin(stream).__name__ == "AsyncIterator"


def test_client_calls_a_real_runrpc_and_gets_typed_values(server, typed_client) -> None:
    m = typed_client
    with m.Client(server.endpoint, timeout=20) as client:
        order = m.Order([m.Line("a", 2, Decimal("1.5"))], "home", "S", {"gift"})
        back = client.make_order(order)
        assert back == order
        assert isinstance(back.lines[0], m.Line)
        assert back.lines[0].price == Decimal("1.5")
        assert back.tags == {"gift"}
        assert client.place_order([m.Line("a", 2), m.Line("b", 3)], "home", "S") == 5
        kinds = client.describe(
            datetime.datetime(2026, 12, 7, 12, 0),
            datetime.date(2026, 12, 7),
            datetime.time(12, 30),
            datetime.timedelta(hours=26),
            Decimal("12.50"),
            uuid.uuid4(),
            "S",
            (1, "a"),
            {"x"},
            {"a": 1},
            m.Address("Ghent", "Main Street"),
        )
        assert kinds["when"] == "datetime"
        assert kinds["amount"] == "Decimal"
        assert kinds["size"] == "Size"
        assert kinds["address"] == "dict"
        assert kinds["span"] == "timedelta"
        assert kinds["pair"] == "tuple"
        lines = list(client.count_lines(3))
        assert lines == [m.Line(f"sku-{i}", i) for i in range(3)]


@pytest.mark.asyncio
async def test_async_client_calls_a_real_runrpc_and_gets_typed_values(server, typed_client):
    m = typed_client
    async with m.AsyncClient(server.endpoint, timeout=20) as client:
        back = await client.make_order(m.Order([m.Line("a", 1)], "home"))
        assert back == m.Order([m.Line("a", 1)], "home")
        assert back.size == "M"
        assert await client.place_order([m.Line("a", 4)], "home") == 4
        lines = [line async for line in await client.count_lines(2)]
        assert lines == [m.Line("sku-0", 0), m.Line("sku-1", 1)]


def test_a_bad_call_refused_by_the_server_raises_invalid_arguments(server, typed_client) -> None:
    with typed_client.Client(server.endpoint, timeout=20) as client:
        with pytest.raises(InvalidArguments, match=r"lines\[0\]\.qty") as caught:
            client.place_order([typed_client.Line("a", "two")], "home")
    assert isinstance(caught.value, RemoteError)


def _unreachable() -> str:
    # Nothing listens there: a call that left the process would wait 30 s.
    return f"tcp://127.0.0.1:{free_port()}"


def test_validate_refuses_a_bad_call_before_it_is_sent(typed_client) -> None:
    with typed_client.Client(_unreachable(), validate=True, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(InvalidArguments, match=r"lines\[0\]\.qty") as caught:
            client.place_order([typed_client.Line("a", "two")], "home")
        with pytest.raises(InvalidArguments, match="size"):
            client.place_order([typed_client.Line("a", 1)], "home", size="XL")
    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, RemoteError)  # raised here, not by the server
    assert ("lines[0].qty", "expected int, got str 'two'") in caught.value.errors


def test_validate_lets_a_good_call_through(server, typed_client) -> None:
    with typed_client.Client(server.endpoint, validate=True, timeout=20) as client:
        assert client.place_order([typed_client.Line("a", 3)], "home", "S") == 3
        assert client.typed_echo("hi") == "hi"


def test_rpcclient_given_a_schema_refuses_a_bad_call_before_it_is_sent() -> None:
    client = RPCClient(_unreachable(), schema=typed_document(), timeout=30)
    try:
        with pytest.raises(InvalidArguments, match="ship_to"):
            client.place_order([{"sku": "a", "qty": 1}])
        with pytest.raises(InvalidArguments, match="ship_to"):
            client.call("make_order", {"lines": [], "ship_to": 3})
    finally:
        client.close()


@pytest.mark.asyncio
async def test_async_rpcclient_given_a_schema_refuses_a_bad_call_before_it_is_sent():
    contracts = ClientContracts(typed_document())
    async with AsyncRPCClient(_unreachable(), schema=contracts, timeout=30) as client:
        with pytest.raises(InvalidArguments, match="x"):
            await client.typed_echo(3)


def test_rpcclient_schema_must_be_an_openrpc_document() -> None:
    with pytest.raises(TypeError, match="schema= takes an OpenRPC document"):
        RPCClient("tcp://127.0.0.1:4242", schema=["not", "a", "document"])


def test_method_names_never_hide_the_clients_own() -> None:
    public = {n for n in dir(RPCClient) + dir(AsyncRPCClient) if not n.startswith("_")}
    assert public <= RESERVED
    document = {
        "methods": [
            {"name": "close", "params": [], "result": {"schema": {"type": "integer"}}},
            {"name": "_zrpc_schema", "params": [], "result": {"schema": {}}},
            {"name": "tickets.get", "params": [{"name": "timeout", "required": True}]},
        ]
    }
    source = render_stubs(document)
    assert "def close_(self, *, timeout: float | None = None) -> int:" in source
    assert "self.call('close', timeout=timeout)" in source
    assert "def rpc_zrpc_schema(self" in source
    assert "def tickets_get(self, timeout: Any, *, timeout_: float | None = None)" in source
    assert "self.call('tickets.get', timeout, timeout=timeout_)" in source


def test_parameters_without_a_known_default_are_left_out_of_the_call() -> None:
    document = {
        "methods": [
            {
                "name": "f",
                "params": [
                    {"name": "a", "required": True, "schema": {"type": "integer"}},
                    {"name": "b", "schema": {"type": "integer"}},
                    {"name": "c", "required": True, "schema": {"type": "string"}},
                    # A server default that does not fit its own annotation.
                    {"name": "d", "schema": {"type": "integer", "default": "many"}},
                ],
            }
        ],
        "components": {
            "schemas": {
                "Box": {
                    "type": "object",
                    "properties": {"size": {"type": "integer", "default": "big"}},
                }
            }
        },
    }
    source = render_stubs(document)
    params = ["self", "a: int", "b: int = OMITTED", "*", "c: str", "d: int = OMITTED"]
    assert "    def f(\n" + "".join(f"        {p},\n" for p in params) in source
    assert "_args, _kwargs = given(('a', 'b', 'c', 'd',), (a, b, c, d,), 2)" in source
    assert "    size: int | None = None\n" in source
    assert given(("a", "b", "c"), (1, OMITTED, "x"), 2) == ((1,), {"c": "x"})
    assert given(("a", "b", "c"), (1, 2, "x"), 2) == ((1, 2), {"c": "x"})


@pytest.mark.parametrize(
    ("schema", "annotation"),
    [
        ({"type": ["string", "null"]}, "str | None"),
        ({"oneOf": [{"type": "integer"}, {"$ref": "#/components/schemas/Line"}]}, "int | Line"),
        ({"const": "v1"}, "Literal['v1']"),
        ({"enum": [1.5, 2]}, "Any"),
        ({"type": "string", "contentEncoding": "base64"}, "bytes"),
        ({"type": "string", "format": "email"}, "str"),
        ({"type": "array", "items": {"type": "number"}}, "list[float]"),
        ({"type": "object"}, "dict[str, Any]"),
        ({"anyOf": [{"type": "integer"}, {}]}, "Any"),
        (True, "Any"),
    ],
)
def test_json_schema_back_to_python(schema: Any, annotation: str) -> None:
    from django_zrpc.contracts.from_schema import shape, source

    assert source(shape(schema), {"Line": "Line"}) == annotation


def test_a_function_whose_types_cannot_be_rebuilt_is_left_to_the_server() -> None:
    objects = [{"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/B"}]
    document = {
        "methods": [
            {
                "name": "either",
                "params": [{"name": "x", "required": True, "schema": {"anyOf": objects}}],
            },
            {
                "name": "count",
                "params": [{"name": "n", "required": True, "schema": {"type": "integer"}}],
            },
        ],
        "components": {
            "schemas": {
                name: {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}},
                    "required": ["a"],
                }
                for name in ("A", "B")
            }
        },
    }
    contracts = ClientContracts(document)
    assert "either" not in contracts
    contracts.check("either", ["anything"], None)
    with pytest.raises(InvalidArguments, match="n: expected int"):
        contracts.check("count", ["two"], None)
