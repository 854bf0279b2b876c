"""Whether a new OpenRPC document still serves the callers of an old one.

``compare(old, new)`` lists the changes between two documents that
``schema.openrpc_document`` wrote, each breaking or additive. A caller
written against ``old`` sends what ``old``'s parameter schemas accept and
expects what its result schemas promise; a release is safe for it when
every old parameter schema fits inside the new one (no type narrowed) and
every new result schema inside the old one (no result widened).

The subschema test is conservative: what it cannot prove compatible it
calls breaking, since it is a gate before a deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django_zrpc.contracts.schema import REF_PREFIX

# Keywords that describe a schema without narrowing what it accepts.
_NOTES = {"title", "description", "default", "examples", "$comment", "deprecated"}
_TYPES = ("null", "boolean", "object", "array", "number", "string", "integer")
_KNOWN = {
    "$ref", "type", "enum", "const", "anyOf", "oneOf", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "properties", "required",
    "additionalProperties", "propertyNames", "minProperties", "maxProperties",
    "format", "contentEncoding", "minLength", "maxLength", "pattern", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
}  # fmt: skip

Resolve = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Change:
    """One difference between two documents, for one function (and parameter)."""

    breaking: bool
    method: str
    param: str | None
    text: str

    def __str__(self) -> str:
        kind = "BREAKING" if self.breaking else "additive"
        where = f"{self.method}({self.param})" if self.param else self.method
        return f"{kind} {where}: {self.text}"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Return the changes from ``old`` to ``new``, breaking and additive, by function name."""
    old_methods = {m["name"]: m for m in old.get("methods", [])}
    new_methods = {m["name"]: m for m in new.get("methods", [])}
    fits = _Fits(_resolver(old), _resolver(new))
    changes = []
    for name in sorted(old_methods.keys() | new_methods.keys()):
        if name not in new_methods:
            changes.append(
                Change(True, name, None, "the function was removed or renamed; old callers call it")
            )
        elif name not in old_methods:
            changes.append(Change(False, name, None, "new function"))
        else:
            changes += _compare_method(old_methods[name], new_methods[name], fits)
    return changes


def _compare_method(old: dict[str, Any], new: dict[str, Any], fits: _Fits) -> list[Change]:
    name = old["name"]
    changes = _compare_params(name, old.get("params", []), new.get("params", []), fits)
    old_result = old.get("result", {}).get("schema", {})
    new_result = new.get("result", {}).get("schema", {})
    if not fits.new_in_old(new_result, old_result):
        changes.append(
            Change(
                True, name, None, "the result was widened: old callers may get what they never did"
            )
        )
    was, now = bool(old.get("x-stream")), bool(new.get("x-stream"))
    if was != now:
        text = "a stream turned into a plain call" if was else "a plain call turned into a stream"
        changes.append(Change(True, name, None, text))
    if new.get("deprecated") and not old.get("deprecated"):
        message = new.get("x-deprecated-message") or "deprecated"
        changes.append(Change(False, name, None, f"deprecated: {message}"))
    elif old.get("deprecated") and not new.get("deprecated"):
        changes.append(Change(False, name, None, "no longer deprecated"))
    return changes


def _compare_params(
    name: str, old: list[dict[str, Any]], new: list[dict[str, Any]], fits: _Fits
) -> list[Change]:
    changes = []
    new_at = {p["name"]: (at, p) for at, p in enumerate(new)}
    old_names = {p["name"] for p in old}
    for at, param in enumerate(old):
        pname = param["name"]
        if pname not in new_at:
            changes.append(Change(True, name, pname, "the parameter was removed"))
            continue
        new_position, now = new_at[pname]
        by_name = param.get("x-keyword-only") and now.get("x-keyword-only")
        if new_position != at and not by_name:
            # Stock zerorpc and Node.js clients send arguments by position only.
            text = f"the parameter moved from position {at} to {new_position}"
            changes.append(Change(True, name, pname, text))
        if now.get("required") and not param.get("required"):
            changes.append(Change(True, name, pname, "an optional parameter turned required"))
        elif param.get("required") and not now.get("required"):
            changes.append(Change(False, name, pname, "the parameter may now be omitted"))
        old_schema, new_schema = param.get("schema", {}), now.get("schema", {})
        if not fits.old_in_new(old_schema, new_schema):
            text = "the parameter's type was narrowed: values old callers send may be refused"
            changes.append(Change(True, name, pname, text))
        elif not fits.new_in_old(new_schema, old_schema):
            changes.append(Change(False, name, pname, "the parameter's type was widened"))
    for param in new:
        if param["name"] in old_names:
            continue
        if param.get("required"):
            text = "a new required parameter: old callers do not send it"
            changes.append(Change(True, name, param["name"], text))
        else:
            changes.append(Change(False, name, param["name"], "a new optional parameter"))
    return changes


def _resolver(document: dict[str, Any]) -> Resolve:
    components = document.get("components", {}).get("schemas", {})

    def resolve(schema: dict[str, Any]) -> Any:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith(REF_PREFIX):
            return None
        return components.get(ref.removeprefix(REF_PREFIX))

    return resolve


class _Fits:
    """``a ⊆ b``: whether every value schema ``a`` accepts, schema ``b`` accepts too."""

    def __init__(self, old: Resolve, new: Resolve) -> None:
        self._old, self._new = old, new
        self._sides: tuple[Resolve, Resolve] = (old, new)
        # $ref pairs being compared: a recursive type is assumed to fit
        # itself while its own fields are compared (no endless descent).
        self._assumed: set[tuple[str, str, int]] = set()

    def old_in_new(self, a: Any, b: Any) -> bool:
        self._sides = (self._old, self._new)
        return self.fits(a, b)

    def new_in_old(self, a: Any, b: Any) -> bool:
        self._sides = (self._new, self._old)
        return self.fits(a, b)

    def fits(self, a: Any, b: Any) -> bool:
        if isinstance(a, dict) and isinstance(b, dict) and ("$ref" in a or "$ref" in b):
            return self._fits_refs(a, b)
        if b is True or b == {} or (isinstance(b, dict) and not set(b) - _NOTES):
            return True
        if a is False:
            return True
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        if set(b) - _KNOWN - _NOTES:
            return False
        for key in ("anyOf", "oneOf"):
            if key in a:
                rest = {k: v for k, v in a.items() if k != key}
                return all(self.fits({**rest, **branch}, b) for branch in a[key])
        if "enum" in a or "const" in a:
            values = a["enum"] if "enum" in a else [a["const"]]
            return all(_Value(self._sides[1]).fits(v, b) for v in values)
        for key in ("anyOf", "oneOf"):
            if key in b:
                rest = {k: v for k, v in b.items() if k != key}
                return self.fits(a, rest) and any(self.fits(a, branch) for branch in b[key])
        if "enum" in b or "const" in b:
            return False
        return self._fits_types(a, b)

    def _fits_refs(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        key = (a.get("$ref", ""), b.get("$ref", ""), id(self._sides[0]))
        if key in self._assumed:
            return True
        self._assumed.add(key)
        try:
            return self.fits(self._deref(a, 0), self._deref(b, 1))
        finally:
            self._assumed.discard(key)

    def _deref(self, schema: dict[str, Any], side: int) -> Any:
        if "$ref" not in schema:
            return schema
        target = self._sides[side](schema)
        if target is None:
            return {"$ref": "unresolved"}  # unknown to _KNOWN's checks: cannot fit
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**target, **rest} if rest else target

    def _fits_types(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        a_types, b_types = _types(a), _types(b)
        if any(t not in b_types and not (t == "integer" and "number" in b_types) for t in a_types):
            return False
        checks = {
            "string": _fits_string,
            "number": _fits_number,
            "integer": _fits_number,
            "array": self._fits_array,
            "object": self._fits_object,
        }
        return all(checks[t](a, b) for t in a_types if t in checks)

    def _fits_array(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        if b.get("uniqueItems") and not a.get("uniqueItems"):
            return False
        if not _within(a, b, "minItems", "maxItems"):
            return False
        a_prefix, b_prefix = a.get("prefixItems", []), b.get("prefixItems", [])
        longest = a.get("maxItems", max(len(a_prefix), len(b_prefix)) + 1)
        for at in range(min(longest, max(len(a_prefix), len(b_prefix)) + 1)):
            a_item = a_prefix[at] if at < len(a_prefix) else a.get("items", True)
            b_item = b_prefix[at] if at < len(b_prefix) else b.get("items", True)
            if not self.fits(a_item, b_item):
                return False
        return True

    def _fits_object(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        if not set(b.get("required", [])) <= set(a.get("required", [])):
            return False
        if not _within(a, b, "minProperties", "maxProperties"):
            return False
        if "propertyNames" in b and not self.fits(a.get("propertyNames", True), b["propertyNames"]):
            return False
        a_props, b_props = a.get("properties", {}), b.get("properties", {})
        a_more, b_more = a.get("additionalProperties", True), b.get("additionalProperties", True)
        for name, schema in b_props.items():
            if name in a_props:
                if not self.fits(a_props[name], schema):
                    return False
            elif not self.fits(a_more, schema):
                return False
        for name, schema in a_props.items():
            if name not in b_props and not self.fits(schema, b_more):
                return False
        return self.fits(a_more, b_more)


class _Value:
    """Whether one value (of an ``enum``) is accepted by a schema, as far as can be told."""

    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve

    def fits(self, value: Any, schema: Any, depth: int = 0) -> bool:
        if isinstance(schema, dict) and "$ref" in schema:
            target = self._resolve(schema)
            return target is not None and depth < 20 and self.fits(value, target, depth + 1)
        if schema is True or schema == {}:
            return True
        if not isinstance(schema, dict):
            return False
        keys = set(schema) - _NOTES
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return any(self.fits(value, branch, depth + 1) for branch in schema[key])
        if "enum" in schema and value not in schema["enum"]:
            return False
        if "const" in schema and value != schema["const"]:
            return False
        if "type" in schema and _type_of(value) not in _types(schema):
            if not (_type_of(value) == "integer" and "number" in _types(schema)):
                return False
        # Anything more (a format, a length) is not checked here: cannot prove it.
        return not keys - {"type", "enum", "const"}


def _types(schema: dict[str, Any]) -> tuple[str, ...]:
    kind = schema.get("type")
    if kind is None:
        return _TYPES
    return (kind,) if isinstance(kind, str) else tuple(kind)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _within(a: dict[str, Any], b: dict[str, Any], low: str, high: str) -> bool:
    """Whether ``a``'s range of ``low``..``high`` lies inside ``b``'s."""
    inf = float("inf")
    return a.get(low, 0) >= b.get(low, 0) and a.get(high, inf) <= b.get(high, inf)


def _fits_string(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for key in ("format", "pattern", "contentEncoding"):
        if key in b and a.get(key) != b[key]:
            return False
    return _within(a, b, "minLength", "maxLength")


def _fits_number(a: dict[str, Any], b: dict[str, Any]) -> bool:
    inf = float("inf")
    a_low = max(a.get("minimum", -inf), a.get("exclusiveMinimum", -inf))
    a_high = min(a.get("maximum", inf), a.get("exclusiveMaximum", inf))
    if a_low < b.get("minimum", -inf) or a_high > b.get("maximum", inf):
        return False
    if "exclusiveMinimum" in b and not (
        a_low > b["exclusiveMinimum"] or a.get("exclusiveMinimum", -inf) >= b["exclusiveMinimum"]
    ):
        return False
    if "exclusiveMaximum" in b and not (
        a_high < b["exclusiveMaximum"] or a.get("exclusiveMaximum", inf) <= b["exclusiveMaximum"]
    ):
        return False
    if "multipleOf" in b:
        step = a.get("multipleOf")
        return step is not None and (step / b["multipleOf"]).is_integer()
    return True
