"""Every offending place of a refused call, in words: the slow pass after a failure.

msgspec stops at the first error and says it in its own terms (``Expected
`int`, got `str` - at `$[0][0].qty```). A caller fixing a call wants them all,
by parameter name: ``lines[0].qty: expected int, got str 'two'``. So when the
fast conversion fails, and only then, ``collect`` walks the annotations
beside the values and asks msgspec about each leaf. It costs tens of
microseconds, paid by bad calls alone.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import enum
import itertools
import reprlib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from django_zrpc.contracts.signature import FunctionSpec

#: At most this many places are named; a caller with more has one mistake repeated.
MAX_ERRORS = 50

_OMITTED = object()

# A value quoted in a message is cut short, also when it is huge: a full
# repr of a 16 MB argument would cost more than the call.
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_SEQUENCES = (
    list,
    set,
    frozenset,
    abc.Sequence,
    abc.MutableSequence,
    abc.Set,
    abc.MutableSet,
    abc.Collection,
)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def collect_call(
    spec: FunctionSpec, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """List each offending place of a call to ``spec``, as ``(path, problem)``."""
    errors: list[tuple[str, str]] = []
    named = [p for p in spec.params if p.kind in ("positional", "keyword")]
    positional = [p for p in named if p.kind == "positional"]
    takes_rest = any(p.kind == "var_positional" for p in spec.params)
    takes_any_keyword = any(p.kind == "var_keyword" for p in spec.params)
    given: dict[str, Any] = {}
    for index, value in enumerate(args):
        if index < len(positional):
            given[positional[index].name] = value
        elif not takes_rest:
            errors.append(
                (f"args[{index}]", f"unexpected argument: the function takes {len(positional)}")
            )
    names = {p.name for p in named}
    for name, value in kwargs.items():
        if name in given:
            errors.append((name, "given by position and by keyword"))
        elif name in names:
            given[name] = value
        elif not takes_any_keyword:
            errors.append((name, "unexpected keyword argument"))
    for param in named:
        value = given.get(param.name, _OMITTED)
        if value is _OMITTED:
            if param.required:
                errors.append((param.name, "missing required argument"))
        else:
            errors.extend(collect(value, param.annotation, param.name, MAX_ERRORS - len(errors)))
    return errors[:MAX_ERRORS]


def collect(
    value: Any, annotation: Any, path: str, most: int = MAX_ERRORS
) -> list[tuple[str, str]]:
    """List the first ``most`` places in ``value`` that do not fit ``annotation``, under ``path``.

    The walk stops there: a hostile call of a million bad items costs no
    more than one of fifty.
    """
    return list(itertools.islice(_walk(value, annotation, path), max(most, 0)))


def _walk(value: Any, annotation: Any, path: str) -> Iterator[tuple[str, str]]:
    if annotation is Any or annotation is object:
        return
    if _fits(value, annotation):
        return
    origin = typing.get_origin(annotation)
    members = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _walk(value, members[0], path)
    elif origin is typing.Union or origin is types.UnionType:
        yield from _walk_union(value, members, path)
    elif origin is typing.Literal:
        yield path, f"expected one of {_choices(members)}, got {value!r}"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = [member.value for member in annotation]
        yield path, f"expected one of {_choices(choices)}, got {value!r}"
    elif origin in _SEQUENCES:
        yield from _walk_items(value, annotation, members, path)
    elif origin is tuple:
        yield from _walk_tuple(value, annotation, members, path)
    elif origin in _MAPPINGS:
        yield from _walk_dict(value, annotation, members, path)
    elif _fields_of(annotation) is not None:
        yield from _walk_object(value, annotation, path)
    else:
        yield path, _expected(annotation, value)


def _walk_union(value: Any, members: tuple[Any, ...], path: str) -> Iterator[tuple[str, str]]:
    others = [member for member in members if member is not type(None)]
    if len(others) == 1 and value is not None:
        # Optional[X]: the caller meant an X, so say what is wrong inside it.
        yield from _walk(value, others[0], path)
    else:
        yield path, f"expected {' | '.join(map(type_name, members))}, got {_shown(value)}"


def _walk_items(
    value: Any, annotation: Any, members: tuple[Any, ...], path: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        yield path, _expected(annotation, value)
        return
    item = members[0] if members else Any
    for index, element in enumerate(value):
        yield from _walk(element, item, f"{path}[{index}]")


def _walk_tuple(
    value: Any, annotation: Any, members: tuple[Any, ...], path: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(value, (list, tuple)):
        yield path, _expected(annotation, value)
    elif len(members) == 2 and members[1] is Ellipsis:
        for index, element in enumerate(value):
            yield from _walk(element, members[0], f"{path}[{index}]")
    elif members and len(value) != len(members):
        yield path, f"expected {len(members)} items, got {len(value)}"
    else:
        for index, (element, item) in enumerate(zip(value, members, strict=False)):
            yield from _walk(element, item, f"{path}[{index}]")


def _walk_dict(
    value: Any, annotation: Any, members: tuple[Any, ...], path: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(value, dict):
        yield path, _expected(annotation, value)
        return
    key_type, value_type = members if len(members) == 2 else (Any, Any)
    for key, element in value.items():
        where = f"{path}[{key!r}]"
        if not _fits(key, key_type):
            yield where, f"key {_expected(key_type, key)}"
        yield from _walk(element, value_type, where)


def _walk_object(value: Any, annotation: Any, path: str) -> Iterator[tuple[str, str]]:
    # A TypedDict is no class to test instances against (isinstance raises).
    instance_of = () if typing.is_typeddict(annotation) else annotation
    if isinstance(value, instance_of if isinstance(instance_of, type) else ()):
        return  # an instance already (a rich caller's own object)
    if not isinstance(value, dict):
        yield path, _expected(annotation, value)
        return
    fields = _fields_of(annotation) or {}
    for name, (field_type, required) in fields.items():
        if name in value:
            yield from _walk(value[name], field_type, f"{path}.{name}")
        elif required:
            yield f"{path}.{name}", "missing required field"


def _fields_of(annotation: Any) -> dict[str, tuple[Any, bool]] | None:
    """Name -> (annotation, required) of a dataclass, Struct or TypedDict; None otherwise."""
    if not isinstance(annotation, type):
        return None
    if dataclasses.is_dataclass(annotation) or issubclass(annotation, msgspec.Struct):
        info = msgspec.inspect.type_info(annotation)
        return {
            field.encode_name: (_python_type(annotation, field.name), field.required)
            for field in getattr(info, "fields", ())
        }
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        required = getattr(annotation, "__required_keys__", frozenset(hints))
        return {name: (hint, name in required) for name, hint in hints.items()}
    return None


def _python_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls).get(name, Any)


def _fits(value: Any, annotation: Any) -> bool:
    try:
        msgspec.convert(value, annotation, strict=True)
    except (msgspec.ValidationError, TypeError):
        return False
    return True


def _expected(annotation: Any, value: Any) -> str:
    return f"expected {type_name(annotation)}, got {_shown(value)}"


def _shown(value: Any) -> str:
    """A value as an error message quotes it: its type, and its repr cut short."""
    if value is None:
        return "None"
    return f"{type(value).__name__} {_repr.repr(value)}"


def _choices(values: Any) -> str:
    return ", ".join(repr(value) for value in values)


def type_name(annotation: Any) -> str:
    """Name an annotation as a message says it: ``int``, ``list[Line]``, ``str | None``."""
    if annotation is type(None) or annotation is None:
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(member) for member in typing.get_args(annotation))
    if origin is typing.Literal:
        return f"one of {_choices(typing.get_args(annotation))}"
    if origin is not None:
        inner = ", ".join(
            "..." if arg is Ellipsis else type_name(arg) for arg in typing.get_args(annotation)
        )
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))
