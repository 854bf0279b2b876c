"""JSON Schema back to Python: which annotation an OpenRPC document's schema stands for.

``shape(schema)`` decides, once for both uses, what a schema is: a scalar
(``int``, ``Decimal`` from ``format: decimal``...), a ``Literal`` of its
``enum``, a list, a set (``uniqueItems``), a tuple (``prefixItems``), a dict
(``additionalProperties``), a union (``anyOf``) or a component (``$ref``).
``source()`` writes a shape as annotation text, for the generated stubs;
``Runtime`` builds it as a real type, for checking and decoding on the
caller's side without the stubs.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import keyword
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

import msgspec

#: A schema's shape: ``("scalar", key)``, ``("literal", values)``, ``("ref", name)``,
#: ``("list" | "set" | "dict", item)``, ``("tuple" | "union", items)``.
Shape = tuple[Any, ...]

#: Scalar keys -> (annotation text, type). ``Any`` means a schema of no type (``{}``).
SCALARS: dict[str, tuple[str, Any]] = {
    "str": ("str", str),
    "int": ("int", int),
    "float": ("float", float),
    "bool": ("bool", bool),
    "None": ("None", None),
    "bytes": ("bytes", bytes),
    "Any": ("Any", Any),
    "decimal": ("decimal.Decimal", decimal.Decimal),
    "uuid": ("uuid.UUID", uuid.UUID),
    "date-time": ("datetime.datetime", datetime.datetime),
    "date": ("datetime.date", datetime.date),
    "time": ("datetime.time", datetime.time),
    "duration": ("datetime.timedelta", datetime.timedelta),
}
_JSON_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
_JSON_TYPES["null"] = "None"
_REF = "#/components/schemas/"


def shape(schema: Any) -> Shape:
    """Return the shape of one JSON Schema (a dict; ``True`` and ``{}`` mean anything)."""
    if not isinstance(schema, Mapping):
        return ("scalar", "Any")
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        return ("ref", ref[len(_REF) :])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _union([shape(branch) for branch in schema[key]])
    if "const" in schema:
        return _literal([schema["const"]])
    if isinstance(schema.get("enum"), list):
        return _literal(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([shape({**schema, "type": one}) for one in kind])
    if kind == "string":
        if schema.get("format") in SCALARS:
            return ("scalar", schema["format"])
        return ("scalar", "bytes" if schema.get("contentEncoding") == "base64" else "str")
    if kind == "array":
        return _array(schema)
    if kind == "object":
        extra = schema.get("additionalProperties")
        return ("dict", shape(extra) if isinstance(extra, Mapping) else ("scalar", "Any"))
    return ("scalar", _JSON_TYPES.get(kind, "Any"))  # type: ignore[arg-type]


def _array(schema: Mapping[str, Any]) -> Shape:
    if isinstance(schema.get("prefixItems"), list):
        return ("tuple", tuple(shape(item) for item in schema["prefixItems"]))
    item = shape(schema.get("items", {}))
    return ("set" if schema.get("uniqueItems") else "list", item)


def _literal(values: list[Any]) -> Shape:
    # Literal holds str, int, bool and None only; anything else is any value.
    if values and all(v is None or isinstance(v, str | int) for v in values):
        return ("literal", tuple(values))
    return ("scalar", "Any")


def _union(shapes: list[Shape]) -> Shape:
    unique: list[Shape] = []
    for one in shapes:
        for member in one[1] if one[0] == "union" else (one,):
            if member not in unique:
                unique.append(member)
    if ("scalar", "Any") in unique:
        return ("scalar", "Any")
    return unique[0] if len(unique) == 1 else ("union", tuple(unique))


def source(node: Shape, names: Mapping[str, str]) -> str:
    """Write ``node`` as annotation text; ``names`` maps component names to identifiers."""
    kind, arg = node
    if kind == "scalar":
        return SCALARS[arg][0]
    if kind == "ref":
        return names.get(arg, "Any")
    if kind == "literal":
        return f"Literal[{', '.join(repr(value) for value in arg)}]"
    if kind == "tuple":
        return f"tuple[{', '.join(source(item, names) for item in arg)}]"
    if kind == "union":
        return " | ".join(source(item, names) for item in arg)
    if kind == "dict":
        return f"dict[str, {source(arg, names)}]"
    return f"{kind}[{source(arg, names)}]"


def identifier(name: str, taken: frozenset[str] = frozenset()) -> str:
    """Return ``name`` as a Python identifier that is no keyword and not in ``taken``."""
    name = re.sub(r"\W", "_", name) or "_"
    if name[0].isdigit():
        name = f"_{name}"
    while keyword.iskeyword(name) or name in taken:
        name = f"{name}_"
    return name


def fields_of(component: Mapping[str, Any]) -> list[tuple[str, Any, bool]] | None:
    """Return an object component's ``(name, schema, required)``, required ones first.

    None when it is no object with properties, or when a property's name is
    no identifier (a dataclass could not hold it): such a component is a dict.
    """
    properties = component.get("properties")
    if component.get("type") != "object" or not isinstance(properties, Mapping):
        return None
    if not all(name.isidentifier() and not keyword.iskeyword(name) for name in properties):
        return None
    required = set(component.get("required", ()))
    fields = [(name, schema, name in required) for name, schema in properties.items()]
    return sorted(fields, key=lambda field: not field[2])


class Runtime:
    """Real Python types for the shapes of one document's schemas.

    Components become dataclasses, made on first use; a component that
    refers back to itself, directly or not, is ``Any`` at the back reference.
    """

    def __init__(self, components: Mapping[str, Any]) -> None:
        self._components = components
        self._made: dict[str, Any] = {}
        self._making: set[str] = set()

    def type_of(self, node: Shape) -> Any:
        kind, arg = node
        if kind == "scalar":
            return SCALARS[arg][1]
        if kind == "ref":
            return self._component(arg)
        if kind == "literal":
            return Literal[arg]
        if kind == "tuple":
            return tuple[tuple(self.type_of(item) for item in arg)]  # type: ignore[misc]
        if kind == "union":
            return Union[tuple(self.type_of(item) for item in arg)]  # noqa: UP007
        if kind == "dict":
            return dict[str, self.type_of(arg)]  # type: ignore[misc]
        return (set if kind == "set" else list)[self.type_of(arg)]

    def default_of(self, schema: Mapping[str, Any], annotation: Any) -> Any:
        """The Python value of a schema's ``default``, converted to its annotation."""
        return msgspec.convert(schema["default"], annotation)

    def _component(self, name: str) -> Any:
        if name in self._made:
            return self._made[name]
        if name in self._making or name not in self._components:
            return Any
        self._making.add(name)
        try:
            self._made[name] = made = self._make(name, self._components[name])
        finally:
            self._making.discard(name)
        return made

    def _make(self, name: str, component: Mapping[str, Any]) -> Any:
        fields = fields_of(component)
        if fields is None:
            return self.type_of(shape(component))
        made: list[tuple[Any, ...]] = []
        for field, schema, required in fields:
            annotation = self.type_of(shape(schema))
            if required:
                made.append((field, annotation))
                continue
            if "default" in schema:
                default = self.default_of(schema, annotation)
            else:
                annotation, default = annotation | None, None
            # A factory, as a mutable default needs; its one value is only read by checks.
            made.append((field, annotation, dataclasses.field(default_factory=_always(default))))
        return dataclasses.make_dataclass(identifier(name), made)


def _always(value: Any) -> Callable[[], Any]:
    return lambda: value
