"""manage.py rpcschema: the OpenRPC document of the tests' functions, and --check's verdicts."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from jsonschema import Draft202012Validator

from django_zrpc.contracts.compat import compare
from django_zrpc.contracts.schema import function_spec, openrpc_document
from tests.conftest import ROOT, subprocess_env

Document = dict[str, Any]


def rpcschema(*args: str) -> str:
    out = io.StringIO()
    call_command("rpcschema", *args, stdout=out, no_color=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def document() -> Document:
    return json.loads(rpcschema())


def method(document: Document, name: str) -> dict[str, Any]:
    return next(m for m in document["methods"] if m["name"] == name)


def params(document: Document, name: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in method(document, name)["params"]}


METHOD_FIELDS = {
    "name",
    "summary",
    "description",
    "paramStructure",
    "params",
    "result",
    "deprecated",
}


def _own(found: dict[str, Any]) -> set[str]:
    return {key for key in found if not key.startswith("x-")}


def test_the_document_is_openrpc_with_every_function_and_no_builtin(document):
    assert document["openrpc"] == "1.3.2"
    assert set(document["info"]) == {"title", "version"}
    names = [m["name"] for m in document["methods"]]
    assert names == sorted(names)
    assert {"typed_echo", "place_order", "describe", "count_lines", "get_ticket"} <= set(names)
    assert not [n for n in names if n.startswith("_")]
    # OpenRPC's method and content descriptor objects: these fields, and x- extensions.
    for each in document["methods"]:
        assert {"name", "params", "result"} <= set(each)
        assert _own(each) <= METHOD_FIELDS
        for described in [*each["params"], each["result"]]:
            assert {"name", "schema"} <= _own(described) <= {"name", "schema", "required"}
        for schema in [p["schema"] for p in each["params"]] + [each["result"]["schema"]]:
            Draft202012Validator.check_schema(schema)


def test_params_are_named_required_and_typed_with_shared_components(document):
    place = method(document, "place_order")
    assert place["summary"] == "Place an order; return how many items it holds."
    assert [(p["name"], p["required"]) for p in place["params"]] == [
        ("lines", True),
        ("ship_to", True),
        ("size", False),
        ("note", False),
    ]
    lines = params(document, "place_order")["lines"]["schema"]
    assert lines == {"type": "array", "items": {"$ref": "#/components/schemas/Line"}}
    assert params(document, "place_order")["size"]["schema"] == {"enum": ["M", "S"], "default": "M"}
    assert place["result"] == {"name": "result", "schema": {"type": "integer"}}
    components = document["components"]["schemas"]
    assert {"Line", "LineS", "Order", "Size", "Address"} <= set(components)
    assert components["Line"]["required"] == ["sku", "qty"]
    # One component for every function that uses the class.
    assert params(document, "old_place_order")["lines"]["schema"] == lines


def test_every_type_family_has_its_json_schema(document):
    described = {name: p["schema"] for name, p in params(document, "describe").items()}
    assert described["when"] == {"type": "string", "format": "date-time"}
    assert described["at"] == {"type": "string", "format": "time"}
    assert described["day"] == {"type": "string", "format": "date"}
    assert described["span"] == {"type": "string", "format": "duration"}
    assert described["amount"] == {"type": "string", "format": "decimal"}
    assert described["ident"] == {"type": "string", "format": "uuid"}
    assert described["size"] == {"$ref": "#/components/schemas/Size"}
    assert described["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert described["names"]["uniqueItems"] is True
    assert described["table"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert described["maybe"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}


def test_streams_deprecated_and_unannotated_functions_are_marked(document):
    stream = method(document, "count_lines")
    assert stream["x-stream"] is True
    assert stream["result"]["schema"] == {"$ref": "#/components/schemas/Line"}
    old = method(document, "old_place_order")
    assert old["deprecated"] is True
    assert old["x-deprecated-message"] == "use place_order"
    assert "deprecated" not in method(document, "place_order")
    untyped = method(document, "get_ticket")
    assert untyped["params"] == [{"name": "id", "required": True, "schema": {}}]
    assert untyped["result"]["schema"] == {}
    assert untyped["x-python"] == "testproject.tickets.rpcs.get_ticket"


def test_what_a_caller_needs_is_in_the_document(document):
    assert method(document, "identity_login")["x-requires"] == "login"
    assert method(document, "identity_perm")["x-requires"] == "perm identity_probes.run_probe"
    assert "x-requires" not in method(document, "identity_open")
    assert "x-requires" not in method(document, "place_order")


@dataclasses.dataclass
class Line:
    sku: str


def _other_line() -> type:
    @dataclasses.dataclass
    class Line:
        qty: int

    return Line


OtherLine = _other_line()


def test_two_classes_of_one_name_get_qualified_component_names():
    def first(line: Line) -> None: ...

    def second(line: OtherLine) -> None:  # type: ignore[valid-type]
        ...

    specs = [function_spec(f, f.__name__) for f in (first, second)]
    found = openrpc_document(specs)
    refs = [method(found, name)["params"][0]["schema"]["$ref"] for name in ("first", "second")]
    names = [ref.rpartition("/")[2] for ref in refs]
    assert names[0] != names[1]
    assert sorted(found["components"]["schemas"]) == sorted(names)
    assert names[0].endswith("test_rpcschema.Line")


def _changed(document: Document, change: Callable[[Document], None]) -> Document:
    old = copy.deepcopy(document)
    change(old)
    return old


def _param(doc: Document, name: str, param: str) -> dict[str, Any]:
    return params(doc, name)[param]


def _remove_method(doc: Document, name: str) -> None:
    doc["methods"] = [m for m in doc["methods"] if m["name"] != name]


def _add_old_method(doc: Document) -> None:
    doc["methods"].append({**method(doc, "typed_echo"), "name": "echo_v0"})


def _add_old_param(doc: Document) -> None:
    method(doc, "place_order")["params"].append({"name": "coupon", "required": False, "schema": {}})


def _swap_params(doc: Document) -> None:
    found = method(doc, "place_order")["params"]
    found[0], found[1] = found[1], found[0]


def _drop_ship_to(doc: Document) -> None:
    place = method(doc, "place_order")
    place["params"] = [p for p in place["params"] if p["name"] != "ship_to"]


def _set(path: Callable[[Document], dict[str, Any]], **values: Any) -> Callable[[Document], None]:
    return lambda doc: path(doc).update(values)


def _order_required_size(doc: Document) -> None:
    doc["components"]["schemas"]["Order"]["required"].append("size")


# (how the old document differed, the line --check must print)
BREAKING = [
    (_add_old_method, "BREAKING echo_v0: the function was removed or renamed"),
    (_add_old_param, "BREAKING place_order(coupon): the parameter was removed"),
    (_swap_params, "BREAKING place_order(lines): the parameter moved from position 1 to 0"),
    (_drop_ship_to, "BREAKING place_order(ship_to): a new required parameter"),
    (
        _set(lambda d: _param(d, "place_order", "ship_to"), required=False),
        "BREAKING place_order(ship_to): an optional parameter turned required",
    ),
    (
        _set(lambda d: _param(d, "typed_echo", "x"), schema={"type": ["string", "integer"]}),
        "BREAKING typed_echo(x): the parameter's type was narrowed",
    ),
    (
        _set(lambda d: _param(d, "place_order", "size"), schema={"enum": ["L", "M", "S"]}),
        "BREAKING place_order(size): the parameter's type was narrowed",
    ),
    (
        _set(lambda d: method(d, "typed_echo")["result"], schema={"enum": ["a", "b"]}),
        "BREAKING typed_echo: the result was widened",
    ),
    (_order_required_size, "BREAKING make_order: the result was widened"),
    (
        _set(lambda d: method(d, "typed_echo"), **{"x-stream": True}),
        "BREAKING typed_echo: a stream turned into a plain call",
    ),
    (
        _set(lambda d: method(d, "count_lines"), **{"x-stream": False}),
        "BREAKING count_lines: a plain call turned into a stream",
    ),
]


@pytest.mark.parametrize(("change", "line"), BREAKING, ids=[line for _, line in BREAKING])
def test_check_exits_1_naming_each_breaking_change(document, tmp_path, change, line):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_changed(document, change)))
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"breaking change\(s\) since .*old.json") as raised:
        call_command("rpcschema", "--check", str(old), stdout=out, no_color=True)
    assert raised.value.returncode == 1
    assert [each for each in out.getvalue().splitlines() if each.startswith(line)], out.getvalue()


def _additive(doc: Document) -> None:
    _remove_method(doc, "ran")
    place = method(doc, "place_order")
    place["params"] = [p for p in place["params"] if p["name"] != "note"]
    _param(doc, "typed_echo", "x")["schema"] = {"type": "string", "maxLength": 5}
    deprecated = method(doc, "old_place_order")
    del deprecated["deprecated"], deprecated["x-deprecated-message"]


def test_check_lists_additive_changes_and_exits_0(document, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_changed(document, _additive)))
    lines = rpcschema("--check", str(old)).splitlines()
    assert lines == [
        "additive old_place_order: deprecated: use place_order",
        "additive place_order(note): a new optional parameter",
        "additive ran: new function",
        "additive typed_echo(x): the parameter's type was widened",
        f"No breaking change since {old} (4 additive change(s)).",
    ]


def test_the_command_runs_as_a_real_manage_py_process(document, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "rpcschema", *args],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    printed = run()
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == document
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_changed(document, _drop_ship_to)))
    checked = run("--check", str(old))
    assert checked.returncode == 1
    assert "BREAKING place_order(ship_to): a new required parameter" in checked.stdout
    assert "1 breaking change(s) since" not in checked.stdout  # the count is the error's
    assert "breaking change(s) since" in checked.stderr


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, r"--check '.*missing.json' cannot be read: No such file or directory\."),
        ("{not json", r"--check '.*missing.json' is not JSON: "),
        ('{"openrpc": "1.3.2"}', r"is not an OpenRPC document \(no 'methods' list\)"),
    ],
)
def test_check_refuses_a_missing_or_invalid_old_document(tmp_path, content, error):
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=error):
        rpcschema("--check", str(path))


def test_stubs_hands_the_document_to_the_stubs_module(tmp_path, monkeypatch, document):
    given = []
    fake = types.ModuleType("django_zrpc.contracts.stubs")
    fake.render_stubs = lambda doc: given.append(doc) or "CLIENT = 1\n"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "django_zrpc.contracts.stubs", fake)
    out = tmp_path / "client.py"
    assert rpcschema("--stubs", str(out)) == ""
    assert out.read_text() == "CLIENT = 1\n"
    assert given == [document]


def test_stubs_without_the_stubs_module_is_a_command_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "django_zrpc.contracts.stubs", None)
    with pytest.raises(CommandError, match=r"--stubs needs django_zrpc\.contracts\.stubs"):
        rpcschema("--stubs", str(tmp_path / "client.py"))


def test_rpclist_marks_deprecated_functions():
    out = io.StringIO()
    call_command("rpclist", stdout=out, no_color=True)
    assert "old_place_order(lines: 'list[Line]') -> 'int'  [deprecated: use place_order]" in (
        out.getvalue()
    )
    assert "place_order(lines: 'list[Line]', ship_to: 'str'" in out.getvalue()
    assert out.getvalue().count("[deprecated") == 1


def _doc(params: list[Any] | None = None, result: Any = None, **components: Any) -> Document:
    found = {"name": "f", "params": params or [], "result": {"name": "result", "schema": result}}
    return {"methods": [found], "components": {"schemas": components}}


def _p(schema: Any, required: bool = True) -> dict[str, Any]:
    return {"name": "x", "required": required, "schema": schema}


@pytest.mark.parametrize(
    ("old", "new", "verdict"),
    [
        ({"type": "integer"}, {"type": "number"}, ["additive"]),
        ({"type": "number"}, {"type": "integer"}, ["BREAKING"]),
        ({"type": "integer"}, {"anyOf": [{"type": "integer"}, {"type": "null"}]}, ["additive"]),
        ({"enum": ["a"]}, {"type": "string"}, ["additive"]),
        ({"type": "string"}, {"type": "string", "format": "uuid"}, ["BREAKING"]),
        ({"type": "array"}, {"type": "array", "items": {"type": "string"}}, ["BREAKING"]),
        ({"$ref": "#/components/schemas/T"}, {"type": "object"}, ["additive"]),
        ({"type": "object"}, {"$ref": "#/components/schemas/T"}, ["BREAKING"]),
        # A recursive type compared with itself ends, and is no change.
        ({"$ref": "#/components/schemas/T"}, {"$ref": "#/components/schemas/T"}, []),
        # What the test cannot prove compatible is breaking.
        ({"type": "string"}, {"not": {"type": "null"}}, ["BREAKING"]),
    ],
)
def test_subschema_verdicts_on_parameters(old, new, verdict):
    tree = {"title": "T", "type": "object", "properties": {"kids": {"type": "array"}}}
    tree["properties"]["kids"]["items"] = {"$ref": "#/components/schemas/T"}
    changes = compare(_doc([_p(old)], {}, T=tree), _doc([_p(new)], {}, T=tree))
    assert [str(c).split(" ")[0] for c in changes] == verdict


def test_keyword_only_parameters_may_change_places():
    def kw(name: str) -> dict[str, Any]:
        return {"name": name, "required": False, "schema": {}, "x-keyword-only": True}

    assert compare(_doc([kw("a"), kw("b")], {}), _doc([kw("b"), kw("a")], {})) == []
    moved = compare(_doc([_p({}), kw("b")], {}), _doc([kw("b"), _p({})], {}))
    assert [str(c) for c in moved] == ["BREAKING f(x): the parameter moved from position 0 to 1"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"type": "integer"}, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ({"enum": ["M", "S"]}, {"enum": ["L", "M", "S"]}),
        (
            {"type": "object", "properties": {"a": {}}, "required": ["a"]},
            {"type": "object", "properties": {"a": {}}, "required": []},
        ),
    ],
)
def test_a_widened_result_is_breaking_and_a_narrowed_one_is_not(old, new):
    assert [str(c) for c in compare(_doc(result=old), _doc(result=new))] == [
        "BREAKING f: the result was widened: old callers may get what they never did"
    ]
    assert compare(_doc(result=new), _doc(result=old)) == []


class Opaque:
    """A class msgspec has no JSON Schema for."""


def test_an_annotation_without_a_json_schema_is_described_as_anything():
    def takes(thing: Opaque, n: int) -> Opaque: ...

    found = method(openrpc_document([function_spec(takes, "takes")]), "takes")
    assert [p["schema"] for p in found["params"]] == [{}, {"type": "integer"}]
    assert found["result"]["schema"] == {}


def test_servers_are_written_when_given():
    found = openrpc_document([], title="shop", version="2.1", servers=["tcp://shop:4242"])
    assert found["info"] == {"title": "shop", "version": "2.1"}
    assert found["servers"] == [{"name": "tcp://shop:4242", "url": "tcp://shop:4242"}]
    assert "servers" not in openrpc_document([])
