"""Which events are large: packed to measure and sent without a copy (see ``values``)."""

from __future__ import annotations

from typing import Any

#: Events whose strings and bytes (the call's arguments, or a result) add up
#: to this many bytes are packed into a buffer made to measure, and sent from
#: it. A reused packer grows its buffer by doubling and then copies the
#: message out: packing 10 MiB peaked at 30 MiB, where this peaks at 10.
LARGE_VALUE_BYTES = 1024 * 1024
_SIZED = (bytes, str, bytearray, memoryview)


def large_hint(obj: Any) -> int:
    """The bytes of the strings and bytes among ``obj``'s items and theirs: an event's arguments."""
    if type(obj) is not list:
        return 0
    size = 0
    for item in obj:
        kind = type(item)
        if kind in _SIZED:
            size += len(item)
        elif kind is list or kind is tuple:
            for inner in item:
                if type(inner) in _SIZED:
                    size += len(inner)
    return size
