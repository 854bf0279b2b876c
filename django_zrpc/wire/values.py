"""Django's values on the wire: datetimes, decimals, UUIDs, tuples, sets, querysets.

Between django_zrpc peers each value comes back as the type it was, carried in
a msgpack extension type whose payload is readable on its own:

==== ============================ =====================================================
Code Python type                  Payload
==== ============================ =====================================================
1    ``datetime.datetime``        ISO 8601 text (UTF-8), with its UTC offset when aware
2    ``datetime.date``            ISO 8601 text
3    ``datetime.time``            ISO 8601 text, with its UTC offset when aware
4    ``decimal.Decimal``          its ``str()``, e.g. ``12.50``
5    ``uuid.UUID``                its canonical text, e.g. ``12345678-1234-...``
6    ``tuple``                    a msgpack array
7    ``set``                      a msgpack array
8    ``frozenset``                a msgpack array
9    keyword arguments            a msgpack map, only as the last item of a call's args
10   ``datetime.timedelta``       ISO 8601 duration text, e.g. ``P1DT7200.5S``
==== ============================ =====================================================

A django_zrpc client marks its calls with the header key ``django_zrpc``; to
callers without it (Python's ``zerorpc``, zerorpc for Node.js) a server sends
plain msgpack instead: text for dates, times, durations, decimals and UUIDs
(what ``DjangoJSONEncoder`` writes), arrays for tuples and sets. Either way, lazy
translation strings go as text and querysets of ``.values()`` or
``.values_list()`` as arrays of their rows; anything else that msgpack cannot
hold is a ``TypeError`` naming its type.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any, cast

import msgpack
from django.utils.functional import Promise

from django_zrpc.wire.large_values import LARGE_VALUE_BYTES, large_hint

#: The header key, and its value, by which a caller says it reads these types.
HEADER = "django_zrpc"
VERSION = 1

DATETIME, DATE, TIME, DECIMAL, UUID, TUPLE, SET, FROZENSET, KWARGS, TIMEDELTA = range(1, 11)

_TEXT_TYPES: dict[type, int] = {
    datetime.datetime: DATETIME,
    datetime.date: DATE,
    datetime.time: TIME,
    decimal.Decimal: DECIMAL,
    uuid.UUID: UUID,
    datetime.timedelta: TIMEDELTA,
}
_ARRAY_TYPES: dict[type, int] = {tuple: TUPLE, set: SET, frozenset: FROZENSET}


class Kwargs(dict[str, Any]):
    """A call's keyword arguments, sent as the last item of its args."""


_MSGPACK_INT_RANGE = "Integer value out of range"  # msgpack's own OverflowError
_INT_RANGE = (
    "an integer out of msgpack's range (-2**63 to 2**64 - 1) cannot be sent over RPC: "
    "send it as a str or a Decimal"
)


def pack(obj: Any, rich: bool) -> bytes:
    """Pack ``obj`` with django_zrpc's types (``rich``), or as plain msgpack for other callers."""
    return _packed(obj, rich)[0]


def pack_detected(obj: Any) -> tuple[bytes, bool]:
    """Pack ``obj`` with django_zrpc's types; return the blob and whether it holds any.

    Only what msgpack cannot pack as it is reaches ``default``: plain values
    cost nothing more to check. For an event, ``[header, name, args]``: a
    large one comes as a view, as from ``pack_event``.
    """
    return _packed_event(obj, True)


def pack_event(event: list[Any], rich: bool) -> bytes:
    """Pack an event, ``[header, name, args]``; a large one as a view of its own buffer.

    Only for what goes to a socket as it is: the view is no ``bytes``, which
    an extension type nested in another message needs (``pack`` gives those).
    """
    return _packed_event(event, rich)[0]


def _packed_event(event: Any, rich: bool) -> tuple[bytes, bool]:
    hint = large_hint(event)
    if hint >= LARGE_VALUE_BYTES:
        return _packed_large(event, rich, hint)
    return _packed(event, rich)


def _packed(obj: Any, rich: bool) -> tuple[bytes, bool]:
    free = _rich_packers if rich else _plain_packers
    try:
        packer = free.pop()
    except IndexError:
        packer = _Packer(rich)
    extended = packer.extended
    extended[0] = False
    try:
        blob = packer.pack(obj)
    except OverflowError as err:
        raise _out_of_range(err) from None
    if len(blob) <= _KEEP_PACKERS_BELOW:
        free.append(packer)
    return blob, extended[0]


def _packed_large(obj: Any, rich: bool, hint: int) -> tuple[bytes, bool]:
    """Pack ``obj`` in a packer sized to fit; return a view of its buffer, sent without a copy."""
    packer = _Packer(rich, buf_size=hint + 64 * 1024)
    try:
        packer.pack(obj)
    except OverflowError as err:
        raise _out_of_range(err) from None
    return cast(bytes, packer.packer.getbuffer()), packer.extended[0]


class _Packer:
    """A msgpack ``Packer``, rich or plain, noting whether it packed django_zrpc's types.

    ``buf_size``: for one large message, kept in its buffer (``packer.getbuffer()``).
    """

    __slots__ = ("extended", "pack", "packer")

    def __init__(self, rich: bool, buf_size: int | None = None) -> None:
        # The flag lives in a list the default closes over, not on self: a
        # default bound to self would make packer and Packer a cycle, and a
        # dropped packer's buffer (32 MiB after a 16 MiB message) would stay
        # until the cyclic garbage collector ran, one buffer per large message.
        #: Whether the last pack held django_zrpc's types, as ``[bool]``.
        extended = self.extended = [False]
        sized: dict[str, Any] = {}
        if buf_size is not None:
            sized = {"autoreset": False, "buf_size": buf_size}
        if rich:

            def default(value: Any) -> Any:
                packed = _rich(value)
                if type(packed) is msgpack.ExtType:
                    extended[0] = True
                return packed

            packer = msgpack.Packer(use_bin_type=True, strict_types=True, default=default, **sized)
        else:
            packer = msgpack.Packer(use_bin_type=True, default=_plain, **sized)
        self.packer = packer
        self.pack = packer.pack


# Packers made once and reused: msgpack.packb makes one a call (0.83 against
# 0.32 us a request). A pack takes one from here and puts it back: list.pop
# and append are atomic, so threads, and a pack inside a pack (a tuple's
# items), each get a packer of their own. One that failed, or packed more
# than _KEEP_PACKERS_BELOW, is dropped: a packer keeps the buffer it grew
# (32 MiB after a 16 MiB message).
_rich_packers: list[_Packer] = []
_plain_packers: list[_Packer] = []
_KEEP_PACKERS_BELOW = 256 * 1024


def _out_of_range(err: OverflowError) -> Exception:
    return TypeError(_INT_RANGE) if str(err) == _MSGPACK_INT_RANGE else err


def _rich(value: Any) -> Any:
    kind = type(value)
    code = _TEXT_TYPES.get(kind)
    if code is not None:
        return msgpack.ExtType(code, _text(value).encode())
    code = _ARRAY_TYPES.get(kind)
    if code is not None:
        return msgpack.ExtType(code, pack(list(value), True))
    if kind is Kwargs:
        return msgpack.ExtType(KWARGS, pack(dict(value), True))
    # strict_types sends subclasses here too: a SafeString, an IntEnum, an
    # OrderedDict, a namedtuple. Send them as their base type.
    for base, code in _ARRAY_TYPES.items():
        if isinstance(value, base):
            return msgpack.ExtType(code, pack(list(value), True))  # type: ignore[call-overload]
    for base, code in _TEXT_TYPES.items():
        if isinstance(value, base):
            return msgpack.ExtType(code, _text(value).encode())
    return _common(value)


def _plain(value: Any) -> Any:
    if isinstance(
        value, datetime.date | datetime.time | datetime.timedelta | decimal.Decimal | uuid.UUID
    ):
        return _text(value)
    if isinstance(value, set | frozenset):
        return list(value)
    return _common(value)


def _common(value: Any) -> Any:
    # Subclasses as their base type; str(SafeString) would be the SafeString
    # itself, and str() of a (str, Enum) member its name, not its value.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    base: Any
    for base in (float, bytes, dict, list):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, Promise):
        return str(value)  # a lazy translation, in the active language
    from django.db.models.query import QuerySet

    if isinstance(value, QuerySet):
        return _rows(value)
    raise TypeError(
        f"{_type_name(value)} cannot be sent over RPC: send None, bool, int, float, str, "
        "bytes, a list, tuple, set or dict of these, a date, time, datetime, timedelta, "
        "Decimal or UUID, or a queryset of .values() or .values_list()."
    )


def _rows(queryset: Any) -> list[Any]:
    from django.db.models.query import ModelIterable

    if issubclass(queryset._iterable_class, ModelIterable):
        raise TypeError(
            f"A queryset of {queryset.model.__name__} objects cannot be sent over RPC: send "
            f"its .values(...) or .values_list(...), or a list of dicts."
        )
    return list(queryset)


def _text(value: Any) -> str:
    if isinstance(value, datetime.timedelta):
        return _duration(value)
    return str(value) if isinstance(value, decimal.Decimal | uuid.UUID) else value.isoformat()


def _duration(value: datetime.timedelta) -> str:
    """ISO 8601 text of a duration, exact to the microsecond: ``-P1DT7200.5S``.

    Days and seconds only (no months or years, whose length varies), the form
    msgspec and JSON Schema's ``duration`` read.
    """
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micro < 0 else ""
    days, micro = divmod(abs(micro), 86_400_000_000)
    seconds, micro = divmod(micro, 1_000_000)
    text = f"{sign}P{days}D" if days else f"{sign}P"
    if seconds or micro or not days:
        fraction = f".{micro:06d}".rstrip("0") if micro else ""
        text += f"T{seconds}{fraction}S"
    return text


_DURATION = re.compile(
    r"(-)?P(?:(\d{1,9})D)?(?:T(?:(\d{1,9})H)?(?:(\d{1,11})M)?(?:(\d{1,12})(?:\.(\d{1,6}))?S)?)?",
    re.ASCII,
)


def _timedelta(text: str) -> datetime.timedelta:
    """Read the ISO 8601 durations ``_duration`` writes (and days, hours, minutes, seconds)."""
    match = _DURATION.fullmatch(text)
    if match is None or text.endswith(("P", "T")):
        raise ValueError(f"{text!r:.40} is not an ISO 8601 duration")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    try:
        value = datetime.timedelta(
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=int(seconds or 0),
            microseconds=int((fraction or "0").ljust(6, "0")),
        )
    except OverflowError:
        raise ValueError(f"{text!r:.40} is out of range for a duration") from None
    return -value if sign else value


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


#: Tuples and sets nested in each other at most this deep (each level is a
#: nested msgpack decode on the C stack: a thousand levels would overflow it).
MAX_DEPTH = 32
# Above this many items, a set or map whose members share hashes is refused:
# building it would take quadratic time (UUIDs and Decimals hash by value).
_CHECK_HASHES_ABOVE = 64


def refuse_collisions(keys: list[Any], what: str) -> None:
    """Raise ``ValueError`` if many of ``keys`` share a hash: a set or dict of them is a trap."""
    if len(keys) > _CHECK_HASHES_ABOVE and len({hash(key) for key in keys}) * 2 < len(keys):
        raise ValueError(f"the {len(keys)} {what} share hashes (a hash-flooding attempt?)")


def map_from_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """msgpack's ``object_pairs_hook``: a dict, unless its keys were crafted to collide."""
    if len(pairs) > _CHECK_HASHES_ABOVE:
        refuse_collisions([key for key, _ in pairs], "keys of a map")
    return dict(pairs)


def ext_hook(unpack: Callable[[bytes], Any]) -> Callable[[int, bytes], Any]:
    """Return msgpack's ``ext_hook``, unpacking nested arrays and maps with ``unpack``.

    ``unpack`` carries the caller's limits, so a value nested in an extension
    is held to them as one at the top is, and extensions nest at most
    ``MAX_DEPTH`` deep. A malformed payload raises ``ValueError``, which makes
    the whole event a bad one.
    """
    depth = 0

    def nested(data: bytes) -> Any:
        nonlocal depth
        if depth >= MAX_DEPTH:
            raise ValueError(f"extensions nested more than {MAX_DEPTH} deep")
        depth += 1
        try:
            return unpack(data)
        finally:
            depth -= 1

    def decode(code: int, data: bytes) -> Any:
        if code in _TEXT_DECODERS:
            return _TEXT_DECODERS[code](data.decode())
        if code in _ARRAY_DECODERS:
            items = nested(data)
            if not isinstance(items, list):
                raise ValueError(f"extension {code} does not hold an array")
            if code != TUPLE:
                refuse_collisions(items, "members of a set")
            return _ARRAY_DECODERS[code](items)
        if code == KWARGS:
            kwargs = nested(data)
            if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
                raise ValueError("keyword arguments are not a map with string keys")
            return Kwargs(kwargs)
        return msgpack.ExtType(code, data)  # another program's extension: left as it is

    return decode


#: The largest decimal exponent taken in: 1E+10000 is already far beyond any
#: DecimalField, and int() of 1E+999999999 would take the process's memory.
MAX_DECIMAL_EXPONENT = 10_000


def _decimal(text: str) -> decimal.Decimal:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r:.40} is not a decimal") from None
    if value.is_snan() or (value.is_finite() and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT):
        raise ValueError(f"{text!r:.40} is out of range for a decimal")
    return value


_TEXT_DECODERS: dict[int, Callable[[str], Any]] = {
    DATETIME: datetime.datetime.fromisoformat,
    DATE: datetime.date.fromisoformat,
    TIME: datetime.time.fromisoformat,
    DECIMAL: _decimal,
    UUID: uuid.UUID,
    TIMEDELTA: _timedelta,
}
_ARRAY_DECODERS: dict[int, Callable[[list[Any]], Any]] = {
    TUPLE: tuple,
    SET: set,
    FROZENSET: frozenset,
}
