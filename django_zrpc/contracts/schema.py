"""The OpenRPC 1.3 document of a set of functions, from their contracts.

``openrpc_document(specs)`` describes every function: its parameters (name,
JSON Schema, required), its result, its docstring, whether it streams and
whether it is deprecated. Types used by several functions (dataclasses,
Structs, TypedDicts, Enums) are written once, in ``components.schemas``, and
referenced by ``$ref``. msgspec writes the JSON Schema, so the schema says
what the server's validation accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi

from django_zrpc.contracts.signature import REQUIRED, FunctionSpec, Kind, ParamSpec, spec_of

OPENRPC_VERSION = "1.3.2"
REF_PREFIX = "#/components/schemas/"
_REF_TEMPLATE = REF_PREFIX + "{name}"
# zerorpc's built-ins and django_zrpc's: every server has them, no caller's contract.
_BUILTIN = ("_zerorpc_", "_zrpc_")

# msgspec writes no format for datetimes and times that may be naive; a
# caller reading the schema still needs to know to send ISO 8601 text.
_FORMATS = {mi.DateTimeType: "date-time", mi.TimeType: "time"}


def function_spec(
    func: Callable[..., Any],
    name: str,
    *,
    stream: bool = False,
    blocking: bool = False,
    deprecated: str | None = None,
    requires: str = "",
) -> FunctionSpec:
    """Return ``func``'s contract; for a function with no annotations, one that takes anything.

    An unannotated function has no contract to validate (``spec_of`` gives
    None), but the schema still lists it with its parameters' names.
    """
    spec = spec_of(
        func, name, stream=stream, blocking=blocking, deprecated=deprecated, requires=requires
    )
    if spec is not None:
        return spec
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    kinds: dict[Any, Kind] = {
        inspect.Parameter.KEYWORD_ONLY: "keyword",
        inspect.Parameter.VAR_POSITIONAL: "var_positional",
        inspect.Parameter.VAR_KEYWORD: "var_keyword",
    }
    params = tuple(
        ParamSpec(
            p.name,
            Any,
            p.default is REQUIRED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
            p.default,
            kinds.get(p.kind, "positional"),
            annotated=False,
        )
        for p in parameters
    )
    qualname = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', name)}"
    return FunctionSpec(
        name,
        qualname,
        inspect.getdoc(func) or "",
        params,
        Any,
        stream,
        blocking,
        deprecated,
        result_annotated=False,
        requires=requires,
    )


def openrpc_document(
    specs: Iterable[FunctionSpec],
    *,
    title: str = "django_zrpc",
    version: str = "0",
    servers: Iterable[str] = (),
) -> dict[str, Any]:
    """Return the OpenRPC document of the functions ``specs`` describe, sorted by name.

    ``servers`` are endpoints (``tcp://host:4242``) written into the
    document's ``servers``; zerorpc's own built-ins are never listed.
    """
    specs = sorted((s for s in specs if not s.name.startswith(_BUILTIN)), key=lambda s: s.name)
    annotations = [_annotations(spec) for spec in specs]
    schemas, components = _schemas([a for each in annotations for a in each])
    methods = []
    at = 0
    for spec, each in zip(specs, annotations, strict=True):
        methods.append(_method(spec, schemas[at : at + len(each)]))
        at += len(each)
    document: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
    }
    if servers:
        document["servers"] = [{"name": url, "url": url} for url in servers]
    document["methods"] = methods
    document["components"] = {"schemas": dict(sorted(components.items()))}
    return document


def _params(spec: FunctionSpec) -> list[ParamSpec]:
    # *args and **kwargs have no name a caller can give; OpenRPC has no
    # place for them, and their values are not validated.
    return [p for p in spec.params if p.kind in ("positional", "keyword")]


def _annotations(spec: FunctionSpec) -> list[Any]:
    """The annotations of ``spec``'s parameters, then of its result (of an item, for a stream)."""
    return [p.annotation for p in _params(spec)] + [spec.result]


def _method(spec: FunctionSpec, schemas: list[dict[str, Any]]) -> dict[str, Any]:
    summary, _, description = spec.doc.strip().partition("\n")
    method: dict[str, Any] = {"name": spec.name}
    if summary:
        method["summary"] = summary.strip()
    if description.strip():
        method["description"] = description.strip()
    method["paramStructure"] = "either"
    method["params"] = [_param(p, s) for p, s in zip(_params(spec), schemas, strict=False)]
    method["result"] = {"name": "result", "schema": schemas[-1]}
    if spec.deprecated:
        method["deprecated"] = True
        method["x-deprecated-message"] = spec.deprecated
    method["x-stream"] = spec.stream
    if spec.requires:
        method["x-requires"] = spec.requires
    method["x-blocking"] = spec.blocking
    method["x-python"] = spec.qualname
    return method


def _param(param: ParamSpec, schema: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"name": param.name, "required": param.required}
    if not param.required:
        try:
            schema = {**schema, "default": msgspec.to_builtins(param.default, str_keys=True)}
        except (TypeError, ValueError):
            pass  # a default JSON cannot say (an object()) is left unsaid
    if param.kind == "keyword":
        described["x-keyword-only"] = True
    described["schema"] = schema
    return described


def _schemas(types: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the inline schema of each of ``types``, and the shared components they refer to.

    One msgspec call over every type of every function, so that a class
    used by several is one component, and two classes of one name from two
    modules get their qualified names (``shop.rpcs.Line``).
    """
    found = _schema_components(types)
    schemas, components = list(found[0]), dict(found[1])
    infos = mi.multi_type_info(types)
    done: set[str] = set()
    for info, schema in zip(infos, schemas, strict=True):
        _add_formats(info, schema, components, done)
    return schemas, components


def _schema_components(types: list[Any]) -> tuple[Any, Any]:
    try:
        return msgspec.json.schema_components(types, ref_template=_REF_TEMPLATE)
    except (TypeError, ValueError):
        pass
    # One type msgspec cannot describe (a plain class) must not take the
    # whole document down: it is described as anything, {}.
    usable = []
    for annotation in types:
        try:
            msgspec.json.schema_components([annotation], ref_template=_REF_TEMPLATE)
        except (TypeError, ValueError):
            annotation = Any
        usable.append(annotation)
    return msgspec.json.schema_components(usable, ref_template=_REF_TEMPLATE)


def _add_formats(
    info: mi.Type, schema: dict[str, Any], components: dict[str, Any], done: set[str]
) -> None:
    """Add the ``format`` msgspec leaves out of ``info``'s schema and of those it refers to.

    ``schema`` was written from ``info`` by msgspec: the walk follows its shape.
    """
    while isinstance(info, mi.Metadata):
        info = info.type
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF_PREFIX)
        if name not in done and name in components:
            done.add(name)
            _add_formats_to_component(info, components[name], components, done)
        return
    if type(info) in _FORMATS:
        schema.setdefault("format", _FORMATS[type(info)])
    elif isinstance(info, mi.CollectionType) and "items" in schema:
        _add_formats(info.item_type, schema["items"], components, done)
    elif isinstance(info, mi.TupleType):
        for item, item_schema in zip(info.item_types, schema.get("prefixItems", ()), strict=False):
            _add_formats(item, item_schema, components, done)
    elif isinstance(info, mi.DictType) and "additionalProperties" in schema:
        _add_formats(info.value_type, schema["additionalProperties"], components, done)
    elif isinstance(info, mi.UnionType):
        _add_formats_to_union(info, schema, components, done)


def _add_formats_to_union(
    info: mi.UnionType, schema: dict[str, Any], components: dict[str, Any], done: set[str]
) -> None:
    # msgspec lists a union's other members first, in order, then its
    # Structs (as $refs, some under a discriminator), then None.
    def real(member: mi.Type) -> mi.Type:
        while isinstance(member, mi.Metadata):
            member = member.type
        return member

    structs = [m for m in info.types if _is_struct_object(real(m))]
    others = [m for m in info.types if m not in structs and not isinstance(real(m), mi.NoneType)]
    branches = schema.get("anyOf", [])
    for member, branch in zip(others, branches, strict=False):
        _add_formats(member, branch, components, done)
    refs = list(_refs(branches[len(others) :] if others else schema))
    for member, ref in zip(structs, refs, strict=False):
        _add_formats(member, ref, components, done)


def _is_struct_object(member: mi.Type) -> bool:
    return isinstance(member, mi.StructType) and not member.array_like


def _refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{"$ref": ...}`` in ``node``, in order."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield node
            return
        for key in ("anyOf", "oneOf"):
            yield from _refs(node.get(key, []))
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _add_formats_to_component(
    info: mi.Type, schema: dict[str, Any], components: dict[str, Any], done: set[str]
) -> None:
    fields = getattr(info, "fields", ())
    if "properties" in schema:
        for field in fields:
            if field.encode_name in schema["properties"]:
                _add_formats(field.type, schema["properties"][field.encode_name], components, done)
    elif "prefixItems" in schema:  # a NamedTuple, or an array_like Struct
        items = schema["prefixItems"][-len(fields) :] if fields else []
        for field, item in zip(fields, items, strict=False):
            _add_formats(field.type, item, components, done)
