"""Django's values on the wire, packed and unpacked without a server."""

from __future__ import annotations

import datetime
import decimal
import threading
import time
import uuid
from collections import OrderedDict, namedtuple

import msgpack
import pytest
from django.db import models
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy, override

from django_zrpc.wire import protocol, values
from testproject.tickets.models import Ticket

AWARE = datetime.datetime(2026, 11, 23, 4, 50, 1, 123456, tzinfo=datetime.UTC)
SAMPLES = [
    AWARE,
    AWARE.astimezone(datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    datetime.datetime(2026, 1, 2, 3, 4, 5),
    datetime.date(2026, 2, 28),
    datetime.time(23, 59, 58, 1000),
    datetime.time(8, 0, tzinfo=datetime.UTC),
    decimal.Decimal("12.50"),
    decimal.Decimal("-1E+30"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    (1, "two", (3.0, None)),
    {1, 2, 3},
    frozenset({"a"}),
    {"nested": [(1, 2), {datetime.date(2026, 1, 1)}], "n": None},
    [],
    (),
]


def roundtrip(value, rich=True):
    blob = protocol.pack("OK", [value], {"message_id": b"m", "v": 3}, rich=rich)
    return protocol.Unpacker().unpack(blob).args[0]


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_each_value_comes_back_as_the_same_type_between_peers(value):
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, datetime.datetime | datetime.time):
        assert back.utcoffset() == value.utcoffset()


def test_plain_callers_get_readable_values():
    value = {
        "when": AWARE,
        "day": datetime.date(2026, 2, 28),
        "price": decimal.Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, 2),
        "tags": {"x"},
    }
    blob = protocol.pack("OK", [value], {"message_id": b"m", "v": 3}, rich=False)
    # What a stock msgpack reader (zerorpc's) decodes: no extension types.
    plain = msgpack.unpackb(blob, raw=False)[2][0]
    assert plain == {
        "when": "2026-11-23T04:50:01.123456+00:00",
        "day": "2026-02-28",
        "price": "12.50",
        "id": "12345678-1234-5678-1234-567812345678",
        "pair": [1, 2],
        "tags": ["x"],
    }


def test_extension_payloads_are_readable_text():
    blob = values.pack(decimal.Decimal("12.50"), rich=True)
    ext = msgpack.unpackb(blob)
    assert ext == msgpack.ExtType(values.DECIMAL, b"12.50")


def test_subclasses_go_as_their_base_type():
    Point = namedtuple("Point", "x y")
    value = [OrderedDict(a=1), Point(1, 2), timezone.now().date()]
    back = roundtrip(value)
    assert back == [{"a": 1}, (1, 2), value[2]]
    assert type(back[0]) is dict
    assert type(back[1]) is tuple


def test_lazy_translations_go_as_text_in_the_active_language():
    with override("en"):
        assert roundtrip(gettext_lazy("Yes")) == "Yes"


@pytest.mark.django_db
def test_querysets_of_values_go_as_rows_and_of_models_are_refused():
    Ticket.objects.create(title="one", price=1)
    Ticket.objects.create(title="two", price=2)
    titles = Ticket.objects.order_by("id").values("title")
    assert roundtrip(titles) == [{"title": "one"}, {"title": "two"}]
    assert roundtrip(Ticket.objects.order_by("id").values_list("title", "id"))[0][0] == "one"
    assert type(roundtrip(Ticket.objects.values_list("title"))[0]) is tuple
    assert roundtrip(Ticket.objects.order_by("id").values_list("title", flat=True)) == [
        "one",
        "two",
    ]
    with pytest.raises(TypeError, match="A queryset of Ticket objects cannot be sent"):
        roundtrip(Ticket.objects.all())


def test_an_unsendable_value_is_a_type_error_naming_its_type():
    with pytest.raises(TypeError, match=r"complex cannot be sent over RPC"):
        roundtrip({"x": [1j]})
    with pytest.raises(TypeError, match=r"object cannot be sent over RPC"):
        roundtrip(object())


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (values.DATETIME, b"yesterday"),
        (values.DECIMAL, b"twelve"),
        (values.UUID, b"not-a-uuid"),
        (values.TUPLE, b"\xc1"),
        (values.SET, msgpack.packb({"a": 1})),
        (values.SET, msgpack.packb([[1]])),  # an unhashable member
        (values.KWARGS, msgpack.packb({1: 2})),
        (values.DATE, b"\xff\xfe"),
    ],
)
def test_a_malformed_extension_makes_the_event_bad(code, payload):
    blob = msgpack.packb(
        [{"message_id": b"m", "v": 3}, "echo", [msgpack.ExtType(code, payload)]],
        use_bin_type=True,
    )
    with pytest.raises(protocol.BadEvent):
        protocol.Unpacker().unpack(blob)


def test_nested_extensions_are_held_to_the_container_limit():
    # 72 KiB of tuples of empty maps: over the counting threshold.
    inner = msgpack.packb([{}] * 6000)
    blob = msgpack.packb(
        [{"message_id": b"m", "v": 3}, "echo", [msgpack.ExtType(values.TUPLE, inner)] * 12],
        use_bin_type=True,
    )
    assert len(blob) > 64 * 1024
    with pytest.raises(protocol.BadEvent, match="more than 1000 arrays and maps"):
        protocol.Unpacker(max_containers=1000).unpack(blob)
    assert len(protocol.Unpacker().unpack(blob).args) == 12


def test_another_programs_extension_is_left_as_it_is():
    blob = msgpack.packb(
        [{"message_id": b"m", "v": 3}, "echo", [msgpack.ExtType(42, b"x")]], use_bin_type=True
    )
    assert protocol.Unpacker().unpack(blob).args == [msgpack.ExtType(42, b"x")]


def nested_tuples(depth):
    value = msgpack.ExtType(values.TUPLE, msgpack.packb([]))
    for _ in range(depth - 1):
        value = msgpack.ExtType(values.TUPLE, msgpack.packb([value]))
    return msgpack.packb([{"message_id": b"m", "v": 3}, "echo", [value]], use_bin_type=True)


def test_extensions_nest_at_most_max_depth():
    assert protocol.Unpacker().unpack(nested_tuples(values.MAX_DEPTH)).args[0] is not None
    # A thousand levels in under 2 KB would overflow the C stack; refused instead.
    for depth in (values.MAX_DEPTH + 1, 1000):
        with pytest.raises(protocol.BadEvent, match="nested more than"):
            protocol.Unpacker().unpack(nested_tuples(depth))


def colliding_uuids(count):
    # UUIDs hash as their integer modulo 2**61 - 1: these all hash alike.
    return [uuid.UUID(int=1 + i * (2**61 - 1)) for i in range(count)]


@pytest.mark.parametrize("shape", ["set", "map"])
def test_members_crafted_to_share_a_hash_are_refused_at_once(shape):
    uuids = colliding_uuids(5000)
    assert len({hash(u) for u in uuids}) == 1
    header = msgpack.packb({"message_id": b"m", "v": 3}) + msgpack.packb("echo")
    if shape == "set":
        arg = msgpack.packb(msgpack.ExtType(values.SET, values.pack(uuids, rich=True)))
    else:  # a map whose keys are the UUIDs, written out by hand
        pairs = b"".join(values.pack(u, rich=True) + msgpack.packb(1) for u in uuids)
        arg = b"\xde" + len(uuids).to_bytes(2, "big") + pairs
    blob = b"\x93" + header + b"\x91" + arg
    started = time.monotonic()
    with pytest.raises(protocol.BadEvent, match="share hashes"):
        protocol.Unpacker().unpack(blob)
    assert time.monotonic() - started < 1.0


def test_distinct_uuids_in_sets_and_maps_are_fine():
    ids = {uuid.uuid4() for _ in range(500)}
    assert roundtrip(ids) == ids
    assert roundtrip({u: 1 for u in ids}) == {u: 1 for u in ids}


@pytest.mark.parametrize("text", [b"1E+100000", b"sNaN", b"-1E-99999"])
def test_decimals_out_of_range_are_refused(text):
    blob = msgpack.packb(
        [{"message_id": b"m", "v": 3}, "echo", [msgpack.ExtType(values.DECIMAL, text)]],
        use_bin_type=True,
    )
    with pytest.raises(protocol.BadEvent, match="out of range"):
        protocol.Unpacker().unpack(blob)


def test_str_and_int_subclasses_go_as_their_values():
    class Color(models.TextChoices):
        RED = "red"

    class Level(models.IntegerChoices):
        HIGH = 3

    value = [mark_safe("<b>x</b>"), Color.RED, Level.HIGH, True, False]
    back = roundtrip(value)
    assert back == ["<b>x</b>", "red", 3, True, False]
    assert [type(item) for item in back] == [str, str, int, bool, bool]


def test_packers_are_reused_but_not_after_a_large_message_nor_across_threads():
    values.pack([1], True)
    kept = len(values._rich_packers)
    assert kept >= 1
    values.pack([b"x" * (1024 * 1024)], True)
    assert len(values._rich_packers) == kept - 1  # its grown buffer goes with it
    # Threads packing at once each take a packer of their own.
    results: list[bool] = []

    def packs(n: int) -> None:
        for i in range(2000):
            item = [n, i, (n, i), {n}]
            blob = values.pack([{"message_id": b"m"}, "x", item], True)
            results.append(protocol.Unpacker().unpack(blob).args == item)

    threads = [threading.Thread(target=packs, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8000
