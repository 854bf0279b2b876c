"""A registered function's contract as data: its parameters, result and flags.

``spec_of(func, name)`` reads the function's signature and resolved type
hints once; the validator, the schema and the stubs all start from the
``FunctionSpec`` it returns. A function with no annotation at all has no
contract (``None``): it is served exactly as before.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from django_zrpc.exceptions import UnsupportedAnnotation

#: How a parameter may be given, in the words of ``inspect.Parameter.kind``.
Kind = Literal["positional", "keyword", "var_positional", "var_keyword"]

_KINDS: dict[Any, Kind] = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}

#: ``ParamSpec.default`` of a required parameter.
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, its annotation (``Any`` when it has none), its default."""

    name: str
    annotation: Any
    required: bool
    default: Any
    kind: Kind
    #: Whether the parameter was annotated at all (``annotation`` is ``Any`` when not).
    annotated: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    """One registered function as its callers see it."""

    name: str
    qualname: str
    doc: str
    params: tuple[ParamSpec, ...]
    #: The result's annotation; for a stream, the type of each item; ``Any`` when unannotated.
    result: Any
    stream: bool = False
    blocking: bool = False
    #: Why and what instead, for a function kept for old callers; None when current.
    deprecated: str | None = None
    #: Whether the result was annotated.
    result_annotated: bool = True
    #: What a caller needs (login, permissions, an allow hook), in words; "" for nothing.
    requires: str = ""


def spec_of(
    func: Callable[..., Any],
    name: str,
    *,
    stream: bool = False,
    blocking: bool = False,
    deprecated: str | None = None,
    requires: str = "",
) -> FunctionSpec | None:
    """Return ``func``'s contract, or None when it has no annotation at all.

    Raises ``UnsupportedAnnotation`` when its hints cannot be resolved (a
    name that does not exist, or exists only under ``TYPE_CHECKING``).
    """
    raw = getattr(func, "__annotations__", None) or {}
    if not raw:
        return None
    qualname = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', name)}"
    try:
        hints = typing.get_type_hints(func)
    except Exception as err:
        raise UnsupportedAnnotation(
            f"The type hints of rpc {name!r} ({qualname}) cannot be resolved: {err}. "
            "Import the names they use at module level (not only under TYPE_CHECKING)."
        ) from err
    signature = inspect.signature(func)
    params = tuple(
        ParamSpec(
            parameter.name,
            hints.get(parameter.name, Any),
            parameter.default is REQUIRED
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD),
            parameter.default,
            _KINDS[parameter.kind],
            parameter.name in hints,
        )
        for parameter in signature.parameters.values()
    )
    result = hints.get("return", Any)
    if stream and result is not Any:
        result = _item_type(result)
    return FunctionSpec(
        name,
        qualname,
        inspect.getdoc(func) or "",
        params,
        result,
        stream,
        blocking,
        deprecated,
        "return" in hints,
        requires,
    )


def _item_type(annotation: Any) -> Any:
    """The item type of a stream's ``Iterator[T]``/``Iterable[T]``/``Generator[T, ...]``."""
    args = typing.get_args(annotation)
    return args[0] if args else Any
