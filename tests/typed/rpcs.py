"""Typed RPC functions: one of each type family a contract covers, for the contract tests.

Each function records that it ran (``ran()`` lists the names), so a test can
tell that a refused call never reached it.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypedDict

import msgspec

from django_zrpc import rpc

_RAN: list[str] = []


class Size(enum.Enum):
    SMALL = "S"
    MEDIUM = "M"


@dataclass
class Line:
    sku: str
    qty: int
    price: Decimal = Decimal("0")


@dataclass
class Order:
    lines: list[Line]
    ship_to: str
    size: Size = Size.MEDIUM
    tags: set[str] = field(default_factory=set)


class LineS(msgspec.Struct):
    sku: str
    qty: int


class Address(TypedDict):
    street: str
    city: str


@rpc.register()
def typed_echo(x: str) -> str:
    """Return ``x``: the cheapest typed call."""
    return x


@rpc.register()
def place_order(
    lines: list[Line], ship_to: str, size: Literal["S", "M"] = "M", note: str | None = None
) -> int:
    """Place an order; return how many items it holds."""
    _RAN.append("place_order")
    return sum(line.qty for line in lines)


@rpc.register()
def make_order(order: Order) -> Order:
    """Return the order it was given, as received (a dataclass with an Enum and a set)."""
    _RAN.append("make_order")
    return order


@rpc.register()
def struct_total(lines: list[LineS]) -> int:
    """Sum the quantities of msgspec Struct lines."""
    _RAN.append("struct_total")
    return sum(line.qty for line in lines)


@rpc.register()
def describe(
    when: datetime.datetime,
    day: datetime.date,
    at: datetime.time,
    span: datetime.timedelta,
    amount: Decimal,
    ident: uuid.UUID,
    size: Size,
    pair: tuple[int, str],
    names: set[str],
    table: dict[str, int],
    address: Address,
    maybe: int | None = None,
) -> dict[str, str]:
    """Return the Python type each argument arrived as, by parameter name."""
    _RAN.append("describe")
    values = locals()
    return {name: type(values[name]).__name__ for name in values if name != "values"}


@rpc.register(stream=True)
def count_lines(n: int) -> Iterator[Line]:
    """Stream ``n`` lines."""
    _RAN.append("count_lines")
    for index in range(n):
        yield Line(f"sku-{index}", index)


@rpc.register(blocking=True)
def typed_blocking(n: int, when: datetime.date) -> str:
    """Run in a thread: say what arrived."""
    _RAN.append("typed_blocking")
    return f"{type(n).__name__} {type(when).__name__}"


@rpc.register(stream=True)
def wrong_items(n: int) -> Iterator[int]:
    """Stream str items where ints are promised."""
    for index in range(n):
        yield str(index)  # type: ignore[misc]


@rpc.register()
def wrong_result(x: int) -> int:
    """Return a str where an int is promised: a broken contract."""
    return str(x)  # type: ignore[return-value]


@rpc.register(deprecated="use place_order")
def old_place_order(lines: list[Line]) -> int:
    """The first order call, kept for old callers."""
    _RAN.append("old_place_order")
    return len(lines)


@rpc.register(validate=False)
def unchecked(x: int) -> int:
    """Annotated but not validated: whatever comes in goes to the function."""
    _RAN.append("unchecked")
    return x


@rpc.register()
def ran() -> list[str]:
    """The typed functions that ran in this process, in order."""
    return list(_RAN)
