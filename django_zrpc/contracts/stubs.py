"""Typed client stubs: an OpenRPC document written as a Python module.

``render_stubs(document)`` returns the source of a module that a caller's
project keeps beside its code (``manage.py rpcschema --stubs client.py``):
the schema's types as dataclasses and ``Literal`` aliases, and ``Client``
and ``AsyncClient``, subclasses of ``RPCClient`` and ``AsyncRPCClient`` with
one typed method per function. It reads the document only, never the
server's code, so that ``rpcschema --from`` works in a project that has
none of the server's classes; the module imports the standard library,
msgspec and django_zrpc only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from django_zrpc.contracts.from_schema import (
    Runtime,
    Shape,
    fields_of,
    identifier,
    shape,
    source,
)

#: Names the clients already have: a function of one of these names gets a
#: method with a ``_`` after it, so that it cannot hide the client's own.
RESERVED = frozenset(
    "call close aclose as_user connections endpoints timeout heartbeat pool_size "
    "calls_per_connection pool_timeout down_for connect_timeout idempotent refresh curve "
    "retry_budget retry_ratio "
    "Client AsyncClient DOCUMENT".split()
)
#: What the generated module defines or imports at its top level.
_MODULE_NAMES = frozenset(
    "dataclasses datetime decimal json uuid AsyncIterator Iterator Sequence TYPE_CHECKING Any "
    "Literal OMITTED decode decode_items decode_async_items encode given".split()
)
_PLAIN = {"str", "int", "float", "bool", "None", "Any"}

_HEADER = """\
from __future__ import annotations

{imports}
if TYPE_CHECKING:
    # What mypy sees: the clients without their call-by-attribute fallback,
    # so that a misspelt function is an error instead of an Any.
    from django_zrpc.contracts.client_side import TypedAsyncRPCClient as _AsyncBase
    from django_zrpc.contracts.client_side import TypedRPCClient as _Base
else:
    from django_zrpc import AsyncRPCClient as _AsyncBase
    from django_zrpc import RPCClient as _Base

#: The OpenRPC document this module was made from; ``validate=True`` checks calls against it.
DOCUMENT: dict[str, Any] = json.loads(
{document}
)
"""
#: What the module may import, by where from; each name only if the module uses it.
_IMPORTS = {
    "": ("dataclasses", "datetime", "decimal", "json", "uuid"),
    "collections.abc": ("AsyncIterator", "Iterator", "Sequence"),
    "typing": ("TYPE_CHECKING", "Any", "Literal"),
    "django_zrpc.contracts.client_side": (
        "OMITTED",
        "decode",
        "decode_async_items",
        "decode_items",
        "encode",
        "given",
    ),
}

_INIT = '''
    def __init__(
        self, endpoints: str | Sequence[str], *, validate: bool = False, **options: Any
    ) -> None:
        """Call the functions at ``endpoints``; ``validate=True``: check calls before sending."""
        super().__init__(endpoints, schema=DOCUMENT if validate else None, **options)
'''


def render_stubs(document: Mapping[str, Any]) -> str:
    """Return the source of a typed client module for the OpenRPC ``document``."""
    return _Module(document).render()


def _imports(body: str) -> str:
    """The import lines of what ``body`` and the header use, grouped as isort does."""
    used = set(re.findall(r"\w+", body)) | {"json", "Sequence", "TYPE_CHECKING", "Any"}
    lines = [f"import {name}\n" for name in _IMPORTS[""] if name in used]
    for module, names in list(_IMPORTS.items())[1:]:
        wanted = [name for name in names if name in used]
        if module.startswith("django_zrpc") and wanted:
            lines.append("\n")
        line = f"from {module} import {', '.join(wanted)}\n"
        if len(line) > 100:
            line = (
                f"from {module} import (\n{''.join(f'    {name},{chr(10)}' for name in wanted)})\n"
            )
        if wanted:
            lines.append(line)
    return "".join(lines)


def _docstring(text: str, indent: str) -> str:
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = text.splitlines() or [""]
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    body = "\n".join(f"{indent}{line}".rstrip() for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}\n{indent}"""\n'


class _Module:
    """One document being written: its component names, then its text."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.components: Mapping[str, Any] = document.get("components", {}).get("schemas", {})
        taken = set(RESERVED | _MODULE_NAMES)
        self.names: dict[str, str] = {}
        for name in self.components:
            self.names[name] = identifier(name, frozenset(taken))
            taken.add(self.names[name])
        self.runtime = Runtime(self.components)
        self.classes = {n for n in self.components if fields_of(self.components[n]) is not None}

    def render(self) -> str:
        info = self.document.get("info", {})
        title = f"{info.get('title', 'an RPC service')} {info.get('version', '')}".strip()
        parts = [
            _docstring(
                f"Typed client for {title}, made by manage.py rpcschema --stubs: do not edit.\n\n"
                "Regenerate it when the server's functions change.",
                "",
            ),
            "\n",
        ]
        body = [self._component(name) for name in self._in_order()]
        methods = self._methods()
        for asynchronous, base in ((False, "_Base"), (True, "_AsyncBase")):
            body.append(f"\n\nclass {'AsyncClient' if asynchronous else 'Client'}({base}):\n")
            body.append(_docstring(f"Call the functions of {title}, typed.", "    "))
            body.append(_INIT)
            body.extend(method.render(asynchronous) for method in methods)
        # One line of JSON a line of source, so that a change to the schema reads as a diff.
        lines = json.dumps(self.document, indent=1, sort_keys=True).splitlines(keepends=True)
        document = "\n".join(f"    {line!r}" for line in lines)
        parts.append(_HEADER.format(imports=_imports("".join(body)), document=document))
        return "".join(parts + body)

    def _methods(self) -> list[_Method]:
        methods = []
        taken = set(RESERVED)
        for method in self.document.get("methods", []):
            if not isinstance(method, Mapping) or not isinstance(method.get("name"), str):
                continue
            # A leading underscore would make the method private, or hide the client's own.
            name = method["name"]
            python = identifier(f"rpc{name}" if name.startswith("_") else name, frozenset(taken))
            taken.add(python)
            methods.append(_Method(self, method, python))
        return methods

    def annotation(self, node: Shape) -> str:
        return source(node, self.names)

    def mentions_class(self, node: Shape, seen: frozenset[str] = frozenset()) -> bool:
        """Whether ``node`` holds a dataclass component, which the wire takes as a dict."""
        for name in _refs(node):
            if name in self.classes:
                return True
            if name in self.components and name not in seen:
                if self.mentions_class(shape(self.components[name]), seen | {name}):
                    return True
        return False

    def _in_order(self) -> list[str]:
        # Aliases and defaults are evaluated when the module loads: each
        # component comes after those it names (a cycle through dataclasses is
        # fine, their annotations are strings).
        done: list[str] = []

        def visit(name: str, path: frozenset[str]) -> None:
            if name in done or name in path or name not in self.components:
                return
            for dependency in _refs(shape(self.components[name])) | self._field_refs(name):
                visit(dependency, path | {name})
            done.append(name)

        for name in self.components:
            visit(name, frozenset())
        return done

    def _field_refs(self, name: str) -> set[str]:
        fields = fields_of(self.components[name]) or []
        return {ref for _, schema, _ in fields for ref in _refs(shape(schema))}

    def _component(self, name: str) -> str:
        component = self.components[name]
        python = self.names[name]
        fields = fields_of(component)
        if fields is None:
            return f"\n{python} = {self.annotation(shape(component))}\n"
        lines = ["\n\n@dataclasses.dataclass\n", f"class {python}:\n"]
        if component.get("description"):
            lines.append(_docstring(component["description"], "    "))
        for field, schema, required in fields:
            node = shape(schema)
            text = self.annotation(node)
            if required:
                lines.append(f"    {field}: {text}\n")
                continue
            default = None
            if "default" in schema:
                default = self.default(node, schema["default"], factory=True)
            if default is None:
                lines.append(f"    {field}: {text} | None = None\n")
            else:
                lines.append(f"    {field}: {text} = {default}\n")
        if not fields:
            lines.append("    pass\n")
        return "".join(lines)

    def default(self, node: Shape, value: Any, factory: bool = False) -> str | None:
        """A default's source: JSON's value when it is already Python's, else decoded.

        None when the value does not fit its own annotation (the server's
        default, written however it was): the caller then leaves it out.
        """
        try:
            python = msgspec.convert(value, self.runtime.type_of(node), strict=True)
        except (msgspec.ValidationError, TypeError):
            return None
        if type(python) is type(value) and python == value and not isinstance(value, list | dict):
            return repr(value)
        decoded = f"decode({value!r}, {self.annotation(node)})"
        if factory and isinstance(value, list | dict):
            return f"dataclasses.field(default_factory=lambda: {decoded})"
        return decoded


class _Method:
    """One function of the document as a method of both clients."""

    def __init__(self, module: _Module, method: Mapping[str, Any], python: str) -> None:
        self.module = module
        self.name = str(method["name"])
        self.python = python
        self.method = method
        self.params = [p for p in method.get("params", []) if isinstance(p, Mapping)]
        names = {str(p.get("name")) for p in self.params}
        self.timeout = identifier("timeout", frozenset(names | {"self"}))
        result = method.get("result") or {}
        self.result = shape(result.get("schema", {}))
        self.stream = bool(method.get("x-stream"))
        self.positional, self.keyword = self._parameters()

    def render(self, asynchronous: bool) -> str:
        timeout = f"{self.timeout}: float | None = None"
        params = ["self", *self.positional, "*", *self.keyword, timeout]
        returns = self._returns(asynchronous)
        start = f"\n    {'async ' if asynchronous else ''}def {self.python}("
        signature = f"{start}{', '.join(params)}) -> {returns}:\n"
        if len(signature) > 100:  # one parameter a line, as ruff format writes them
            one_a_line = "".join(f"        {param},\n" for param in params)
            signature = f"{start}\n{one_a_line}    ) -> {returns}:\n"
        lines = [signature, self._doc()]
        values = [
            f"encode({name})" if self.module.mentions_class(node) else name
            for name, node in self._nodes()
        ]
        arguments = [repr(self.name), *values]
        if self.keyword or any(text.endswith("= OMITTED") for text in self.positional):
            # Leave out what the caller left out: the server's default applies.
            names = ", ".join(repr(name) for name, _ in self._nodes())
            lines.append(
                f"        _args, _kwargs = given(({names},), ({', '.join(values)},), "
                f"{len(self.positional)})\n"
            )
            arguments = [repr(self.name), "*_args", "kwargs=_kwargs"]
        arguments.append(f"timeout={self.timeout}")
        call = f"{'await ' if asynchronous else ''}self.call({', '.join(arguments)})"
        lines.append(f"        result: {returns} = {self._decoded(call, asynchronous)}\n")
        lines.append("        return result\n")
        return "".join(lines)

    def _nodes(self) -> list[tuple[str, Shape]]:
        return [(str(p["name"]), shape(p.get("schema", {}))) for p in self.params]

    def _parameters(self) -> tuple[list[str], list[str]]:
        """The positional parameters' text, then the keyword-only ones'.

        A parameter marked ``x-keyword-only``, or required after an optional
        one (Python allows that order for keyword-only ones alone), is
        keyword-only here too, and so is every one after it.
        """
        positional: list[str] = []
        keyword: list[str] = []
        optional_seen = False
        for param, (name, node) in zip(self.params, self._nodes(), strict=True):
            text = f"{name}: {self.module.annotation(node)}"
            schema = param.get("schema", {})
            by_name = bool(keyword) or bool(param.get("x-keyword-only"))
            if param.get("required"):
                (keyword if optional_seen or by_name else positional).append(text)
                continue
            optional_seen = True
            default = None
            if isinstance(schema, Mapping) and "default" in schema:
                default = self.module.default(node, schema["default"])
            text = f"{text} = {default or 'OMITTED'}"
            (keyword if by_name else positional).append(text)
        return positional, keyword

    def _returns(self, asynchronous: bool) -> str:
        item = self.module.annotation(self.result)
        if self.stream:
            return f"{'AsyncIterator' if asynchronous else 'Iterator'}[{item}]"
        return item

    def _decoded(self, call: str, asynchronous: bool) -> str:
        node = self.result
        if node[0] == "scalar" and node[1] in _PLAIN:
            return call
        item = self.module.annotation(node)
        if self.stream:
            helper = "decode_async_items" if asynchronous else "decode_items"
            return f"{helper}({call}, {item})"
        return f"decode({call}, {item})"

    def _doc(self) -> str:
        text = self.method.get("summary") or f"Call {self.name!r}."
        if self.method.get("description"):
            text = f"{text}\n\n{self.method['description']}"
        if self.method.get("deprecated"):
            why = self.method.get("x-deprecated-message") or "do not use it in new code"
            text = f"{text}\n\nDeprecated: {why}."
        return _docstring(text, "        ")


def _refs(node: Shape) -> set[str]:
    """The component names ``node`` refers to."""
    kind, arg = node
    if kind == "ref":
        return {arg}
    if kind in ("tuple", "union"):
        return {name for item in arg for name in _refs(item)}
    if kind in ("list", "set", "dict"):
        return _refs(arg)
    return set()
