"""Argument specs for zerorpc's introspection on Python 3.

zerorpc 0.6.3 builds ``_zerorpc_args`` and ``_zerorpc_inspect`` on
``inspect.getargspec``, which Python 3.11 removed: both built-ins crash there.
``argspec`` returns the same 4-item shape from ``inspect.getfullargspec``,
with defaults made safe for msgpack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

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


def doc(func: Callable[..., Any]) -> str | None:
    """Return the cleaned docstring of ``func``, or None."""
    return inspect.getdoc(func)
