"""zerorpc's built-in functions (``_zerorpc_ping``, ``_zerorpc_inspect``, ...) for a server.

Every zerorpc server answers these; the ``zerorpc`` command and
``_zerorpc_inspect`` clients use them to list and describe functions. zerorpc
0.6.3 builds the argument specs on ``inspect.getargspec``, which Python 3.11
removed; ``argspec`` gives the same 4-item shape from
``inspect.getfullargspec``, with defaults made safe for msgpack.

``_zrpc_schema`` is django_zrpc's own: the OpenRPC document of the functions
served (``contracts/schema.py``), what ``manage.py rpcschema --from`` prints.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django_zrpc import __version__
from django_zrpc.contracts.schema import function_spec, openrpc_document
from django_zrpc.registry import rpc
from django_zrpc.wire import protocol

if TYPE_CHECKING:
    from django_zrpc.contracts.signature import FunctionSpec
    from django_zrpc.server.calls import ServedFunction

_WIRE_SAFE = (type(None), bool, int, float, str, bytes)


def argspec(func: Callable[..., Any]) -> list[Any] | None:
    """Return ``[args, varargs, varkw, defaults]`` as getargspec did, or None."""
    try:
        # getfullargspec does not follow functools.wraps; the caller wants the
        # signature of the registered function, not of a wrapper around it.
        spec = inspect.getfullargspec(inspect.unwrap(func))
    except TypeError:
        return None
    defaults = None
    if spec.defaults is not None:
        defaults = [d if isinstance(d, _WIRE_SAFE) else repr(d) for d in spec.defaults]
    return [list(spec.args), spec.varargs, spec.varkw, defaults]


def builtins(
    server_name: str, functions: Mapping[str, ServedFunction]
) -> dict[str, Callable[..., Any]]:
    """Return the built-ins of a server called ``server_name`` serving ``functions``."""

    def describe(name: str) -> dict[str, Any]:
        spec = argspec(functions[name].func)
        args = None
        if spec is not None:
            args = [{"name": arg} for arg in spec[0]]
            for arg, default in zip(reversed(args), reversed(spec[3] or ()), strict=False):
                arg["default"] = default
        return {"args": args, "doc": inspect.getdoc(functions[name].func)}

    def lookup(name: str) -> ServedFunction:
        if name not in functions:
            raise NameError(unknown_function(name, functions))
        return functions[name]

    document: list[dict[str, Any]] = []

    def schema() -> dict[str, Any]:
        # Built on first use, not at start-up: most servers are never asked,
        # and reading every function's hints costs start-up time.
        if not document:
            specs = [_spec(name, served) for name, served in functions.items()]
            document.append(openrpc_document(specs, title=server_name, version=__version__))
        return document[0]

    return {
        "_zerorpc_ping": lambda: ["pong", server_name],
        "_zerorpc_name": lambda: server_name,
        "_zerorpc_list": lambda: sorted(functions),
        "_zerorpc_help": lambda name: inspect.getdoc(lookup(name).func),
        "_zerorpc_args": lambda name: argspec(lookup(name).func),
        "_zerorpc_inspect": lambda: {
            "name": server_name,
            "methods": {name: describe(name) for name in functions},
        },
        "_zrpc_schema": schema,
    }


def _spec(name: str, served: ServedFunction) -> FunctionSpec:
    """The contract of the function served as ``name``: the one its calls are checked by.

    A function served without a contract (no annotations, or
    ``validate=False``) is read now, so that the schema still lists it.
    """
    if served.contract is not None:
        return served.contract.spec
    return function_spec(
        served.func,
        name,
        stream=served.stream,
        blocking=served.blocking,
        deprecated=served.deprecated,
        requires=_requirement(name),
    )


def _requirement(name: str) -> str:
    """What the project's registry says a caller of ``name`` needs ("" for another registry's)."""
    entry = rpc.get(name)
    return entry.requirement if entry is not None else ""


def unknown_function(name: Any, names: Iterable[str]) -> str:
    """Say that no function is named ``name``, with the closest name and where to look.

    The error keeps zerorpc's name, ``NameError``; its message is for the
    person who misspelled the function.
    """
    if isinstance(name, str) and name.startswith(protocol.EVENT_PREFIXES):
        return (
            f"{name!r:.80} is an event of zerorpc's protocol, not a function: it belongs to "
            "a call in flight, and names that call's message_id as its response_to."
        )
    # _zerorpc_help may be asked of any value: a name as long as a message.
    if isinstance(name, str | bytes):
        name = name[: protocol.MAX_NAME_LEN + 1]
    public = [n for n in names if not n.startswith("_")]
    close = difflib.get_close_matches(name, public, n=1) if isinstance(name, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"No function is named {protocol.cut(repr(name), protocol.MAX_NAME_LEN)} here.{hint} "
        "manage.py rpclist (or zerorpc's _zerorpc_list) lists the functions served."
    )
