"""A function's contract, compiled: check and convert its arguments, encode its result.

``Contract(spec)`` turns the parameters into two msgspec types, once: an
array-like struct for a call by position (what stock zerorpc and Node send:
one C call checks them all) and a struct by name for a call with keyword
arguments. msgspec converts as it checks, so a dataclass parameter receives
an instance, an Enum a member, a ``Decimal`` a Decimal, also from the string
forms a plain caller sends; otherwise it is strict (no ``"2"`` for an int).
Only a call that fails pays for ``errors.collect_call``, which names every
offending place.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import logging
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from django_zrpc.contracts import errors
from django_zrpc.contracts.signature import FunctionSpec
from django_zrpc.exceptions import InvalidArguments, InvalidResult, UnsupportedAnnotation

logger = logging.getLogger("django_zrpc.server")

#: Types that the wire packs itself (``wire/values.py``), so results keep them as they are.
WIRE_TYPES = (
    bytes,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
)


class _Omitted:
    """The default of an optional parameter the caller left out: the function's own applies."""

    def __repr__(self) -> str:
        return "<omitted>"


_OMITTED = _Omitted()
_EXACT = (str, int, float, bool, bytes, type(None))
_convert = msgspec.convert
_astuple = msgspec.structs.astuple


class Contract:
    """Check and convert the arguments of calls to one function; encode its results."""

    __slots__ = (
        "_by_name",
        "_by_position",
        "_check",
        "_count",
        "_encodes",
        "_exact",
        "_keyword_names",
        "_named",
        "_positional_names",
        "_rest",
        "_takes_any_keyword",
        "_warned",
        "_wire",
        "check_results",
        "spec",
    )

    def __init__(self, spec: FunctionSpec, *, check_results: bool = False) -> None:
        """Compile ``spec``; raise ``UnsupportedAnnotation`` if msgspec cannot check a hint.

        With ``check_results``, a result that does not fit its annotation
        raises ``InvalidResult``; without, it is logged once and sent.
        """
        self.spec = spec
        self.check_results = check_results
        positional = [p for p in spec.params if p.kind == "positional"]
        keyword = [p for p in spec.params if p.kind == "keyword"]
        _refuse_unsupported(spec)
        fields = [_field(p) for p in positional]
        self._by_position = msgspec.defstruct(f"{spec.name}_args", fields, array_like=True)
        self._by_name = msgspec.defstruct(
            f"{spec.name}_kwargs",
            fields + [_field(p) for p in keyword],
            forbid_unknown_fields=not any(p.kind == "var_keyword" for p in spec.params),
        )
        self._positional_names = tuple(p.name for p in positional)
        self._keyword_names = tuple(p.name for p in keyword)
        self._named = frozenset(self._positional_names + self._keyword_names)
        self._count = len(positional)
        self._rest = any(p.kind == "var_positional" for p in spec.params)
        self._takes_any_keyword = any(p.kind == "var_keyword" for p in spec.params)
        # A call without keywords takes the one-C-call path unless a
        # keyword-only parameter is required (then it is refused by name).
        if any(p.required for p in keyword):
            self._count = -1
        # A result annotation msgspec cannot check (a QuerySet, a model) is
        # no reason to refuse calls: such results are sent as they are.
        results = spec.result_annotated and _problem_of(spec.result) is None
        self._encodes = results and needs_encoding(spec.result)
        self._check = results and spec.result is not Any
        self._wire = _wire_type(spec.result) if self._encodes else None
        self._warned = False
        # A result of exactly its annotation's builtin type needs neither a
        # check nor encoding: one type test for most results.
        self._exact = spec.result if spec.result in _EXACT else _Omitted

    def bind(
        self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Return the call's arguments converted to their annotations.

        Raise ``InvalidArguments`` naming every offending place when they do
        not fit. Parameters the caller left out stay out, so the function's
        own defaults apply. ``*args`` and ``**kwargs`` pass unchecked.
        """
        count = self._count
        if kwargs or count < 0:
            return self._bind_by_name(args, kwargs)
        given = len(args)
        rest: tuple[Any, ...] = ()
        if given > count:
            if not self._rest:
                self.refuse(args, kwargs)
            args, rest = args[:count], tuple(args[count:])
        try:
            bound = _astuple(_convert(args, self._by_position, strict=True))
        except msgspec.ValidationError as err:
            self.refuse(args, kwargs, err)
        if given < count:
            bound = bound[:given]
        return (bound + rest if rest else bound), {}

    def _bind_by_name(
        self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        names = self._positional_names
        if len(args) > len(names) and not self._rest:
            self.refuse(args, kwargs)
        given = dict(zip(names, args, strict=False))
        rest = tuple(args[len(names) :])
        extra: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in given:
                self.refuse(args, kwargs)
            if name in self._named or not self._takes_any_keyword:
                given[name] = value
            else:
                extra[name] = value
        try:
            bound = _convert(given, self._by_name, strict=True)
        except msgspec.ValidationError as err:
            self.refuse(args, kwargs, err)
        positional: list[Any] = []
        for name in names:
            value = getattr(bound, name)
            if value is _OMITTED:
                break  # later ones given by keyword go by keyword
            positional.append(value)
        for name in names[len(positional) :] + self._keyword_names:
            value = getattr(bound, name)
            if value is not _OMITTED:
                extra[name] = value
        return tuple(positional) + rest, extra

    def refuse(
        self,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        err: msgspec.ValidationError | None = None,
    ) -> typing.NoReturn:
        """Raise ``InvalidArguments`` for this call, naming every offending place."""
        found = errors.collect_call(self.spec, args, kwargs)
        if not found:
            # The slow pass missed what msgspec saw: its one message is still true.
            found = [("arguments", str(err) if err is not None else "do not fit")]
        places = "; ".join(f"{path}: {problem}" for path, problem in found)
        raise InvalidArguments(
            f"Invalid arguments for rpc {self.spec.name!r}: {places}.", found
        ) from None

    def encode_result(self, value: Any) -> Any:
        """Return ``value`` as the wire sends it, checked against the return annotation."""
        if type(value) is self._exact:
            return value  # a str where a str is promised: nothing to check or encode
        if self._wire is not None:
            # Read by attribute into the dataclasses' mirrors, then encoded:
            # one pass that checks too.
            try:
                wired = _convert(value, self._wire, from_attributes=True, strict=True)
            except (msgspec.ValidationError, TypeError):
                encoded = _encoded(value)
                if self._check and not self._warned:
                    self._misfit(encoded)
                return encoded
            return msgspec.to_builtins(wired, builtin_types=WIRE_TYPES)
        if self._check and not self._warned:
            # Encoded once, for the check and for the wire.
            encoded = _encoded(value)
            if not _fits(encoded, self.spec.result):
                self._misfit(encoded)
            return encoded if self._encodes else value
        if self._encodes:
            return msgspec.to_builtins(value, builtin_types=WIRE_TYPES)
        return value

    #: A stream's items are encoded as a plain result is (``spec.result`` is the item type).
    encode_item = encode_result

    def check_result(self, value: Any) -> None:
        """Raise ``InvalidResult`` (or log once, without ``check_results``) on a misfit result."""
        encoded = _encoded(value)
        if not _fits(encoded, self.spec.result):
            self._misfit(encoded)

    def _misfit(self, encoded: Any) -> None:
        found = errors.collect(encoded, self.spec.result, "result")
        places = "; ".join(f"{path}: {problem}" for path, problem in found) or "result: misfit"
        message = (
            f"rpc {self.spec.name!r} returned a value that does not fit its annotation "
            f"{errors.type_name(self.spec.result)}: {places}."
        )
        if self.check_results:
            raise InvalidResult(message)
        self._warned = True
        logger.warning("%s It is sent as it is; this is logged once.", message)


def _fits(encoded: Any, annotation: Any) -> bool:
    try:
        _convert(encoded, annotation, strict=True)
    except (msgspec.ValidationError, TypeError):
        return False
    return True


def _encoded(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value, builtin_types=WIRE_TYPES)
    except TypeError:
        return value  # not encodable: the check reports it as what it is


def _wire_type(annotation: Any) -> Any:
    """``annotation`` with each dataclass replaced by a Struct of the same fields; or None.

    A dataclass instance that msgspec built (an argument, returned as it
    came) keeps its defaults on the class, not the instance, and msgspec's
    encoder skips them. Read by attribute into a mirror Struct, every field
    is sent. None when there is no dataclass, or one refers to itself.
    """
    try:
        wired = _mirrored(annotation, frozenset())
    except RecursionError:
        return None
    return None if wired is annotation else wired


def _mirrored(annotation: Any, within: frozenset[type]) -> Any:
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if annotation in within:
            raise RecursionError(annotation)
        hints = typing.get_type_hints(annotation)
        inner = within | {annotation}
        fields = [
            (field.name, _mirrored(hints.get(field.name, Any), inner))
            for field in dataclasses.fields(annotation)
        ]
        return msgspec.defstruct(annotation.__name__, fields)
    origin = typing.get_origin(annotation)
    members = typing.get_args(annotation)
    if origin is None or not members or origin is typing.Literal:
        return annotation
    if origin is typing.Annotated:
        return _mirrored(members[0], within)
    wired = tuple(m if m is Ellipsis else _mirrored(m, within) for m in members)
    if wired == members:
        return annotation
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[wired]  # noqa: UP007 - built from a tuple
    return origin[wired]


def _field(param: Any) -> tuple[Any, ...]:
    if param.required:
        return (param.name, param.annotation)
    return (param.name, param.annotation, _OMITTED)


def needs_encoding(annotation: Any) -> bool:
    """Whether values of ``annotation`` must be encoded (a dataclass, Struct, Enum inside)."""
    return _needs_encoding(annotation, set())


def _needs_encoding(annotation: Any, seen: set[int]) -> bool:
    if id(annotation) in seen:
        return False
    seen.add(id(annotation))
    if isinstance(annotation, type):
        if dataclasses.is_dataclass(annotation):
            return True
        if issubclass(annotation, (msgspec.Struct, enum.Enum)):
            return True
        if issubclass(annotation, tuple) and hasattr(annotation, "_fields"):
            return True  # a NamedTuple
        if typing.is_typeddict(annotation):
            hints = typing.get_type_hints(annotation).values()
            return any(_needs_encoding(hint, seen) for hint in hints)
    return any(_needs_encoding(arg, seen) for arg in typing.get_args(annotation))


def _refuse_unsupported(spec: FunctionSpec) -> None:
    """Raise ``UnsupportedAnnotation`` naming the first hint msgspec cannot check."""
    places = [(p.name, p.annotation) for p in spec.params if p.kind in ("positional", "keyword")]
    for place, annotation in places:
        problem = _problem_of(annotation)
        if problem is not None:
            raise UnsupportedAnnotation(
                f"rpc {spec.name!r} ({spec.qualname}) cannot be checked: the annotation "
                f"{errors.type_name(annotation)} of parameter {place!r} {problem}. Annotate "
                "it with types a caller can send (builtins, dataclasses, TypedDict, "
                "msgspec.Struct, Enum, Literal, Decimal, datetime, UUID) or register it "
                "with validate=False."
            )


def _problem_of(annotation: Any) -> str | None:
    try:
        info = msgspec.inspect.type_info(annotation)
    except TypeError as err:
        return f"is not supported by msgspec ({err})"
    custom = _custom_type(info, set())
    if custom is not None:
        return f"holds {custom.__name__}, a class no caller can send"
    return None


def _custom_type(info: Any, seen: set[int]) -> Any:
    """The first class in ``info`` msgspec only checks with ``isinstance``; None if none."""
    if id(info) in seen:
        return None
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return info.cls
    inner: list[Any] = []
    for attr in ("item_type", "key_type", "value_type"):
        if hasattr(info, attr):
            inner.append(getattr(info, attr))
    inner.extend(getattr(info, "item_types", ()))
    inner.extend(getattr(info, "types", ()))
    inner.extend(field.type for field in getattr(info, "fields", ()))
    for item in inner:
        found = _custom_type(item, seen)
        if found is not None:
            return found
    return None
