"""A typed function's hints are its contract: calls are checked and converted before it runs.

First ``Contract`` alone (binding, the wording of refusals, results), then a
real ``runrpc`` of ``tests.typed`` called by ``RPCClient``, ``AsyncRPCClient``
and a stock ``zerorpc.Client``: typed values arrive typed, a bad call is
refused with every place named and the function never runs (``ran()``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from decimal import Decimal

import msgpack
import pytest
import zerorpc

from django_zrpc import AsyncRPCClient, RPCClient, context
from django_zrpc.checks import check_settings
from django_zrpc.context import CallContext
from django_zrpc.contracts.validate import Contract
from django_zrpc.exceptions import (
    InvalidArguments,
    InvalidResult,
    RemoteError,
    UnsupportedAnnotation,
)
from django_zrpc.registry import Registry, rpc
from django_zrpc.server.build import served
from django_zrpc.testing import LiveRPCServer
from django_zrpc.wire import values
from tests.typed import rpcs as typed

WHEN = datetime.datetime(2026, 12, 7, 12, 30, tzinfo=datetime.UTC)
IDENT = uuid.UUID("12345678-1234-5678-1234-567812345678")

#: describe()'s arguments as a plain caller (stock zerorpc, Node, JSON) sends them: text and lists.
PLAIN_ARGS = [
    "2026-12-07T12:30:00+00:00",
    "2026-12-07",
    "12:30:00",
    "P1DT7200S",
    "12.50",
    str(IDENT),
    "S",
    [1, "a"],
    ["a", "b"],
    {"a": 1},
    {"street": "Main", "city": "Town"},
]
#: The same as a django_zrpc caller sends them: its own types.
RICH_ARGS = [
    WHEN,
    WHEN.date(),
    WHEN.time(),
    datetime.timedelta(days=1, hours=2),
    Decimal("12.50"),
    IDENT,
    "S",
    (1, "a"),
    {"a", "b"},
    {"a": 1},
    {"street": "Main", "city": "Town"},
]
TYPED = {
    "when": "datetime",
    "day": "date",
    "at": "time",
    "span": "timedelta",
    "amount": "Decimal",
    "ident": "UUID",
    "size": "Size",
    "pair": "tuple",
    "names": "set",
    "table": "dict",
    "address": "dict",
    "maybe": "NoneType",
}
BAD_ORDER = (
    [{"sku": "a", "qty": "two"}, {"sku": 3, "qty": 1}],
    {"size": "XL"},
)
BAD_ORDER_MESSAGE = (
    "Invalid arguments for rpc 'place_order': lines[0].qty: expected int, got str 'two'; "
    "lines[1].sku: expected str, got int 3; ship_to: missing required argument; "
    "size: expected one of 'S', 'M', got 'XL'."
)
BAD_ORDER_ERRORS = [
    ("lines[0].qty", "expected int, got str 'two'"),
    ("lines[1].sku", "expected str, got int 3"),
    ("ship_to", "missing required argument"),
    ("size", "expected one of 'S', 'M', got 'XL'"),
]


def contract(name: str, check_results: bool = True) -> Contract:
    spec = rpc[name].spec
    assert spec is not None
    return Contract(spec, check_results=check_results)


# -- Contract alone ------------------------------------------------------------------


@pytest.mark.parametrize("args", [PLAIN_ARGS, RICH_ARGS], ids=["plain", "rich"])
def test_bind_converts_every_family_to_its_annotation(args):
    bound, kwargs = contract("describe").bind(tuple(args), {})
    assert typed.describe(*bound, **kwargs) == TYPED
    assert bound[0] == WHEN
    assert bound[3] == datetime.timedelta(days=1, hours=2)
    assert bound[4] == Decimal("12.50")
    assert bound[6] is typed.Size.SMALL


def test_bind_builds_dataclasses_and_structs_from_maps():
    (order,), _ = contract("make_order").bind(
        ({"lines": [{"sku": "a", "qty": 2, "price": "1.5"}], "ship_to": "x", "tags": ["t"]},),
        {},
    )
    assert order == typed.Order([typed.Line("a", 2, Decimal("1.5"))], "x", tags={"t"})
    (lines,), _ = contract("struct_total").bind(([{"sku": "a", "qty": 2}],), {})
    assert lines == [typed.LineS("a", 2)]


def test_bind_names_every_offending_place_in_the_issues_words():
    lines, keywords = BAD_ORDER
    with pytest.raises(InvalidArguments) as caught:
        contract("place_order").bind((lines,), keywords)
    assert str(caught.value) == BAD_ORDER_MESSAGE
    assert caught.value.errors == BAD_ORDER_ERRORS


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        (("2",), {}, "x: expected str, got int 2"),
        ((["a"],), {}, "x: expected str, got list ['a']"),
        (("a", "b"), {}, "args[1]: unexpected argument: the function takes 1"),
        ((), {}, "x: missing required argument"),
        (("a",), {"x": "b"}, "x: given by position and by keyword"),
        ((), {"y": "b"}, "y: unexpected keyword argument"),
    ],
)
def test_bind_refuses_what_does_not_fit(args, kwargs, problem):
    # "2" (a str) is an int to no one: the conversion is strict.
    args = tuple(2 if arg == "2" else arg for arg in args)
    with pytest.raises(InvalidArguments, match=problem.replace("[", r"\[").replace("]", r"\]")):
        contract("typed_echo").bind(args, kwargs)


@pytest.mark.parametrize("value", ["2", 2.0, True])
def test_bind_is_strict_for_ints(value):
    with pytest.raises(InvalidArguments, match="n: expected int"):
        contract("count_lines").bind((value,), {})


def test_bind_leaves_omitted_parameters_to_the_functions_defaults():
    order = contract("place_order")
    assert order.bind(([], "x"), {}) == (([], "x"), {})
    assert order.bind(([],), {"ship_to": "x", "note": None}) == (([], "x"), {"note": None})
    assert order.bind(([], "x"), {"note": "n"}) == (([], "x"), {"note": "n"})


class Shelf:
    """A class no caller can send: msgspec could only check it with isinstance."""


def test_an_unsupported_annotation_is_refused_when_the_server_is_built():
    registry = Registry()

    @registry.register()
    def put(item: Shelf) -> None:
        pass

    with pytest.raises(UnsupportedAnnotation, match=r"parameter 'item'.*Shelf.*validate=False"):
        served(registry["put"])

    @registry.register()
    def either(item: typed.Line | typed.Address) -> None:
        pass

    with pytest.raises(UnsupportedAnnotation, match=r"rpc 'either'.*parameter 'item'"):
        served(registry["either"])


def test_a_result_annotation_msgspec_cannot_check_is_sent_unchecked():
    registry = Registry()

    @registry.register()
    def shelve(n: int) -> Shelf:
        return Shelf()

    shelf = Shelf()
    bound = served(registry["shelve"], check_results=True)
    assert bound.admit is not None
    assert bound.contract is not None
    assert bound.contract.encode_result(shelf) is shelf


def test_check_e023_names_the_function_and_parameter():
    def put(item: Shelf) -> None:
        pass

    rpc.register("zrpc_tmp_unsendable")(put)
    try:
        found = [error for error in check_settings() if error.id == "django_zrpc.E023"]
    finally:
        rpc.unregister("zrpc_tmp_unsendable")
    assert len(found) == 1
    assert "rpc 'zrpc_tmp_unsendable'" in found[0].msg
    assert "'item'" in found[0].msg
    assert "validate=False" in found[0].hint
    assert not [error for error in check_settings() if error.id == "django_zrpc.E023"]


def test_results_are_encoded_by_their_annotation():
    order = typed.Order([typed.Line("a", 1, Decimal("2"))], "x", typed.Size.SMALL, {"t"})
    assert contract("make_order").encode_result(order) == {
        "lines": [{"sku": "a", "qty": 1, "price": Decimal("2")}],
        "ship_to": "x",
        "size": "S",
        "tags": ["t"],
    }
    assert contract("count_lines").encode_item(typed.Line("b", 2)) == {
        "sku": "b",
        "qty": 2,
        "price": Decimal("0"),
    }


def test_a_result_that_does_not_fit_is_an_error_or_logged_once(caplog):
    with pytest.raises(InvalidResult, match=r"rpc 'wrong_result'.*expected int, got str '1'"):
        contract("wrong_result").encode_result("1")
    lenient = contract("wrong_result", check_results=False)
    with caplog.at_level(logging.WARNING, "django_zrpc.server"):
        assert [lenient.encode_result("1") for _ in range(3)] == ["1"] * 3
    assert [r.getMessage() for r in caplog.records].count(
        "rpc 'wrong_result' returned a value that does not fit its annotation int: "
        "result: expected int, got str '1'. It is sent as it is; this is logged once."
    ) == 1


def test_untyped_and_unvalidated_functions_have_no_contract():
    assert served(rpc["unchecked"]).admit is None
    assert served(rpc["echo"]).admit is None
    assert served(rpc["typed_echo"]).admit is not None


# -- a real runrpc -------------------------------------------------------------------


def test_every_family_arrives_typed_from_rpcclient(server):
    client = RPCClient(server.endpoint, timeout=20, heartbeat=1)
    try:
        assert client.describe(*RICH_ARGS) == TYPED
        assert client.describe(*PLAIN_ARGS, maybe=3) == {**TYPED, "maybe": "int"}
        assert client.typed_blocking(1, "2026-12-07") == "int date"
        order = {"lines": [{"sku": "a", "qty": 2, "price": "1.5"}], "ship_to": "x", "size": "S"}
        assert client.make_order(order) == {
            **order,
            "lines": [{**order["lines"][0], "price": Decimal("1.5")}],
            "tags": [],
        }
        assert list(client.count_lines(2)) == [
            {"sku": "sku-0", "qty": 0, "price": Decimal("0")},
            {"sku": "sku-1", "qty": 1, "price": Decimal("0")},
        ]
    finally:
        client.close()


def _refused_by_every_typed_function(call):
    """Make bad calls with ``call(name, *args, **kwargs)``; return each InvalidArguments."""
    lines, keywords = BAD_ORDER
    refusals = []
    for name, args, kwargs in [
        ("place_order", (lines,), keywords),
        ("describe", ["x", *PLAIN_ARGS[1:]], {}),
        ("typed_blocking", ("1", "not a date"), {}),
        ("count_lines", ("3",), {}),
        ("struct_total", ([{"sku": "a"}],), {}),
        ("old_place_order", ([{"qty": 1}],), {}),
    ]:
        with pytest.raises(InvalidArguments) as caught:
            call(name, *args, **kwargs)
        refusals.append(caught.value)
    return refusals


REFUSED_PLACES = [
    [path for path, _ in BAD_ORDER_ERRORS],
    ["when"],
    ["n", "when"],
    ["n"],
    ["lines[0].qty"],
    ["lines[0].sku"],
]


def test_rpcclient_gets_invalid_arguments_and_the_function_never_runs(server):
    mark = server.mark()
    client = RPCClient(server.endpoint, timeout=20, heartbeat=1)
    try:
        before = client.ran()
        refusals = _refused_by_every_typed_function(client.call)
        assert client.ran() == before
    finally:
        client.close()
    # The caller's mistake, logged as routine: one line, no traceback.
    assert "INFO rpc place_order raised InvalidArguments in " in server.output_since(mark)
    assert "Traceback" not in server.output_since(mark)
    assert [[path for path, _ in error.errors] for error in refusals] == REFUSED_PLACES
    assert all(isinstance(error, RemoteError) for error in refusals)
    assert refusals[0].msg == BAD_ORDER_MESSAGE
    assert refusals[0].errors == BAD_ORDER_ERRORS
    assert refusals[0].name == "InvalidArguments"


def test_async_rpcclient_gets_invalid_arguments_and_the_function_never_runs(server):
    async def calls():
        async with AsyncRPCClient(server.endpoint, timeout=20, heartbeat=1) as client:
            before = await client.ran()
            described = await client.describe(*RICH_ARGS)
            refusals = []
            lines, keywords = BAD_ORDER
            for name, args, kwargs in [
                ("place_order", (lines,), keywords),
                ("count_lines", ("3",), {}),
            ]:
                with pytest.raises(InvalidArguments) as caught:
                    await client.call(name, *args, **kwargs)
                refusals.append(caught.value)
            after = await client.ran()
            return described, refusals, before, after

    described, refusals, before, after = asyncio.run(calls())
    assert described == TYPED
    assert after == [*before, "describe"]
    assert refusals[0].msg == BAD_ORDER_MESSAGE
    assert refusals[0].errors == BAD_ORDER_ERRORS
    assert refusals[1].errors == [("n", "expected int, got str '3'")]
    assert all(isinstance(error, RemoteError) for error in refusals)


def test_a_stock_zerorpc_client_sends_string_forms_and_reads_the_refusal(server):
    with server.client(timeout=20, heartbeat=1) as client:
        assert client.describe(*PLAIN_ARGS) == TYPED
        before = client.ran()
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.place_order([{"sku": "a", "qty": "two"}], "x", "XL")
        assert client.ran() == before
        assert list(client.count_lines(1)) == [{"sku": "sku-0", "qty": 0, "price": "0"}]
    assert caught.value.name == "InvalidArguments"
    assert caught.value.msg == (
        "Invalid arguments for rpc 'place_order': lines[0].qty: expected int, got str 'two'; "
        "size: expected one of 'S', 'M', got 'XL'."
    )


def test_a_wrong_result_is_an_error_with_check_results_on(server):
    client = RPCClient(server.endpoint, timeout=20, heartbeat=1)
    try:
        with pytest.raises(RemoteError, match="rpc 'wrong_result' returned") as caught:
            client.wrong_result(1)
        with pytest.raises(RemoteError, match="rpc 'wrong_items' returned"):
            list(client.wrong_items(2))
    finally:
        client.close()
    assert caught.value.name == "InvalidResult"


def test_a_wrong_result_is_logged_once_with_check_results_off(start_server):
    lenient = start_server("--heartbeat", "1", ZRPC_CHECK_RESULTS="0")
    client = RPCClient(lenient.endpoint, timeout=20, heartbeat=1)
    try:
        assert [client.wrong_result(n) for n in range(3)] == ["0", "1", "2"]
    finally:
        client.close()
    assert lenient.output.count("rpc 'wrong_result' returned a value that does not fit") == 1


def test_a_deprecated_function_warns_once_per_caller_key(start_server):
    # A server of its own: the log must start before anyone called it.
    fresh = start_server("--heartbeat", "1")
    client = RPCClient(fresh.endpoint, timeout=20, heartbeat=1)
    try:
        assert [client.old_place_order([{"sku": "a", "qty": 1}]) for _ in range(3)] == [1] * 3
        assert client.place_order([], "x") == 0
    finally:
        client.close()
    with fresh.client(timeout=20, heartbeat=1) as stock:
        assert stock.old_place_order([]) == 0
    warning = (
        "rpc old_place_order is deprecated (use place_order) "
        "and was called by a caller without a client key."
    )
    # The server's output reaches the test through a pipe: wait for the
    # line, then for the calls' lines, before counting.
    deadline = time.monotonic() + 20
    while fresh.output.count("rpc old_place_order OK") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh.output.count(warning) == 1
    assert fresh.output.count("is deprecated") == 1


@pytest.mark.parametrize(
    "span",
    [
        datetime.timedelta(0),
        datetime.timedelta(days=1, hours=2),
        datetime.timedelta(seconds=-1, microseconds=5),
        datetime.timedelta.max,
        datetime.timedelta.min,
    ],
)
def test_a_timedelta_crosses_the_wire_as_itself_or_as_iso_8601_text(span):
    packed = values.pack([span], rich=True)
    assert msgpack.unpackb(packed, ext_hook=values.ext_hook(msgpack.unpackb)) == [span]
    (plain,) = msgpack.unpackb(values.pack([span], rich=False))
    assert isinstance(plain, str)
    assert plain.startswith(("P", "-P"))
    # What a plain caller reads back converts to the same duration, as a parameter would.
    assert contract("describe").bind((*PLAIN_ARGS[:3], plain, *PLAIN_ARGS[4:]), {})[0][3] == span


def test_a_refusal_names_at_most_fifty_places_and_quotes_values_short():
    many = [{"sku": 1, "qty": 1}] * 1_000
    with pytest.raises(InvalidArguments) as caught:
        contract("place_order").bind((many, "x" * 1_000_000), {})
    assert len(caught.value.errors) == 50
    assert caught.value.errors[-1] == ("lines[49].sku", "expected str, got int 1")
    with pytest.raises(InvalidArguments) as caught:
        contract("place_order").bind(("x" * 1_000_000,), {})
    assert len(str(caught.value)) < 300


def test_a_deprecated_function_warns_once_for_each_client_key(caplog):
    old = served(rpc["old_place_order"])
    with caplog.at_level(logging.WARNING, "django_zrpc.server"):
        for key in ["billing", "shop", "billing", None, "shop", None]:
            token = context._current.set(CallContext("old_place_order", key))
            try:
                assert old.admit is not None
                assert old.admit(([{"sku": "a", "qty": 1}],), {}) == (([typed.Line("a", 1)],), {})
            finally:
                context._current.reset(token)
    assert [r.getMessage().rpartition(" by ")[2] for r in caplog.records] == [
        "client key billing.",
        "client key shop.",
        "a caller without a client key.",
    ]


@pytest.mark.parametrize(("setting", "refused"), [(None, True), (False, False)])
def test_the_test_server_checks_results_unless_told_not_to(settings, setting, refused):
    settings.DEBUG = False
    settings.ZRPC_CHECK_RESULTS = setting
    registry = Registry()
    registry.register("wrong_result")(typed.wrong_result)
    with LiveRPCServer(registry) as live, live.client() as client:
        if refused:
            with pytest.raises(RemoteError, match="rpc 'wrong_result' returned") as caught:
                client.wrong_result(1)
            assert caught.value.name == "InvalidResult"
        else:
            assert client.wrong_result(1) == "1"


def test_a_dataclass_msgspec_built_is_sent_back_with_its_defaults():
    # msgspec leaves a built dataclass's defaults on the class, where its
    # encoder does not look: returned as it came, the order must still say them.
    make = contract("make_order")
    (order,), _ = make.bind(({"lines": [{"sku": "a", "qty": 1}], "ship_to": "x"},), {})
    assert make.encode_result(order) == {
        "lines": [{"sku": "a", "qty": 1, "price": Decimal("0")}],
        "ship_to": "x",
        "size": "M",
        "tags": [],
    }
    assert contract("count_lines").encode_item(typed.Line("b", 2)) == {
        "sku": "b",
        "qty": 2,
        "price": Decimal("0"),
    }
    with pytest.raises(InvalidResult, match=r"result\.lines\[0\]\.qty: expected int, got str 'x'"):
        make.encode_result(typed.Order([typed.Line("a", "x")], "y"))  # type: ignore[arg-type]
