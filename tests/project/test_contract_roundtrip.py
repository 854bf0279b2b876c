"""The schema and the server's contract agree: each accepts what the other does, refuses too.

Values are drawn by hypothesis from each typed function's annotations and
sent as a JSON caller would (``msgspec.to_builtins``, then through ``json``):
each argument must fit its parameter's JSON Schema in the OpenRPC document
(``jsonschema``, draft 2020-12) and the call must pass the server's contract.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError

from django_zrpc.contracts.schema import openrpc_document
from django_zrpc.contracts.signature import FunctionSpec
from django_zrpc.contracts.validate import Contract
from django_zrpc.exceptions import InvalidArguments
from django_zrpc.registry import rpc

TYPED = [
    "typed_echo",
    "place_order",
    "make_order",
    "struct_total",
    "describe",
    "count_lines",
    "old_place_order",
]
SPECS: dict[str, FunctionSpec] = {name: rpc[name].spec for name in TYPED}  # type: ignore[misc]
DOCUMENT = openrpc_document(SPECS.values())
INT64 = st.integers(-(2**63), 2**63 - 1)


def bind(spec: FunctionSpec, args: list[Any]) -> tuple[Any, ...]:
    """What the server makes of ``args`` for ``spec``'s function, or ``InvalidArguments``."""
    bound, _ = Contract(spec).bind(args, {})
    return bound


def validator(function: str, param: str) -> Draft202012Validator:
    """The JSON Schema of one parameter, with the document's components its $refs point to."""
    method = next(m for m in DOCUMENT["methods"] if m["name"] == function)
    schema = next(p["schema"] for p in method["params"] if p["name"] == param)
    return Draft202012Validator({**schema, "components": DOCUMENT["components"]})


@pytest.fixture(scope="module", autouse=True)
def _ints_of_64_bits():
    # msgspec (so the server) reads integers of 64 bits; the JSON Schema says
    # "integer" and no range: draw those both can carry.
    st.register_type_strategy(int, INT64)
    yield
    st.register_type_strategy(int, st.integers())


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(msgspec.to_builtins(value)))


@pytest.mark.parametrize("function", TYPED)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_drawn_calls_fit_the_schema_and_pass_the_contract(function, data):
    spec = SPECS[function]
    args = []
    for param in spec.params:
        # Arguments go by position: an optional one left out ends the call.
        if not param.required and not data.draw(st.booleans(), label=f"send {param.name}"):
            break
        args.append(data.draw(st.from_type(param.annotation), label=param.name))
    sent = [_as_json(value) for value in args]
    for param, value in zip(spec.params, sent, strict=False):
        validator(function, param.name).validate(value)
    bind(spec, sent)


BAD = [
    ("typed_echo", "x", 2),
    ("typed_echo", "x", None),
    ("place_order", "lines", [{"sku": "a", "qty": "two"}]),
    ("place_order", "lines", [{"sku": "a"}]),
    ("place_order", "lines", [{"sku": "a", "qty": True}]),
    ("place_order", "size", "XL"),
    ("make_order", "order", {"lines": [], "ship_to": "x", "size": "L"}),
    ("struct_total", "lines", [{"sku": 3, "qty": 1}]),
    ("describe", "pair", [1]),
    ("describe", "pair", ["1", "a"]),
    ("describe", "table", {"a": "1"}),
    ("describe", "address", {"street": "Main"}),
    ("describe", "size", "SMALL"),
    ("describe", "maybe", 1.5),
    ("count_lines", "n", "2"),
]


# A good call of each function, as JSON sends it: BAD's values replace one argument.
GOOD: dict[str, list[Any]] = {
    "typed_echo": ["a"],
    "place_order": [[{"sku": "a", "qty": 1}], "home", "M", None],
    "make_order": [{"lines": [], "ship_to": "home"}],
    "struct_total": [[{"sku": "a", "qty": 1}]],
    "describe": [
        "2026-12-07T12:00:00",
        "2026-12-07",
        "12:00:00",
        "P1DT2H",
        "1.5",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "S",
        [1, "a"],
        ["a"],
        {"a": 1},
        {"street": "Main", "city": "Lyon"},
        None,
    ],
    "count_lines": [2],
    "old_place_order": [[]],
}


@pytest.mark.parametrize("function", TYPED)
def test_good_calls_fit_the_schema_and_pass_the_contract(function):
    spec = SPECS[function]
    for param, value in zip(spec.params, GOOD[function], strict=True):
        validator(function, param.name).validate(value)
    bind(spec, GOOD[function])


@pytest.mark.parametrize(("function", "param", "value"), BAD)
def test_the_schema_refuses_what_the_contract_refuses(function, param, value):
    spec = SPECS[function]
    args = list(GOOD[function])
    args[[p.name for p in spec.params].index(param)] = value
    with pytest.raises(InvalidArguments, match=f"{param}"):
        bind(spec, args)
    with pytest.raises(ValidationError):
        validator(function, param).validate(value)
