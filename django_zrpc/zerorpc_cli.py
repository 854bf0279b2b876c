"""zerorpc's own command-line client, made to run on Python 3.10 and newer.

    python -m django_zrpc.zerorpc_cli tcp://127.0.0.1:4242                # list functions
    python -m django_zrpc.zerorpc_cli tcp://127.0.0.1:4242 get_ticket 1   # call one
    python -m django_zrpc.zerorpc_cli --json tcp://127.0.0.1:4242 echo '{"a": 1}'

zerorpc 0.6.3's ``zerorpc`` command lists functions on Python 3.11 but fails
after every call: it tests results against ``collections.Iterator``, removed in
Python 3.10, and formats argument specs with ``inspect.formatargspec``,
removed in 3.11. This module puts both names back and runs zerorpc's own
``main()``, unchanged.
"""

from __future__ import annotations

import collections
import collections.abc
import inspect
import sys
from typing import Any


def _formatargspec(args: Any, varargs: Any = None, varkw: Any = None, defaults: Any = None) -> str:
    parts = list(args or ())
    for index, default in enumerate(defaults or ()):
        position = len(parts) - len(defaults) + index
        parts[position] = f"{parts[position]}={default!r}"
    if varargs:
        parts.append(f"*{varargs}")
    if varkw:
        parts.append(f"**{varkw}")
    return f"({', '.join(parts)})"


def main() -> int:
    if not hasattr(collections, "Iterator"):
        collections.Iterator = collections.abc.Iterator  # type: ignore[attr-defined]
    if not hasattr(inspect, "formatargspec"):
        inspect.formatargspec = _formatargspec  # type: ignore[attr-defined]
    from zerorpc.cli import main as zerorpc_main

    return zerorpc_main() or 0


if __name__ == "__main__":
    sys.exit(main())
