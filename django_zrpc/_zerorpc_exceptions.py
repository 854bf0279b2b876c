"""zerorpc's exception classes, loaded without the gevent that ``import zerorpc`` brings.

django_zrpc re-exports zerorpc's ``LostRemote``, ``RemoteError`` and
``TimeoutExpired``, so that ``except zerorpc.RemoteError`` and ``except
django_zrpc.RemoteError`` catch the same thing. zerorpc's package imports
gevent and ``zmq.green`` on import, while its ``exceptions`` module is plain
Python: loading that module alone, under its own name, lets the settings
checks and any gevent-free code (an asyncio client) use the very classes
zerorpc raises. When zerorpc itself is imported later, its ``from .exceptions
import *`` finds the module loaded, and a finder gives the package its
``exceptions`` attribute, which the import system sets only for a submodule
it loads itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

NAME = "zerorpc.exceptions"


class _AttachToPackage(importlib.abc.MetaPathFinder):
    """Once, when ``zerorpc`` is imported: set its ``exceptions`` before its code runs."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "zerorpc":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_package = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            module.exceptions = sys.modules[NAME]  # type: ignore[attr-defined]
            exec_package(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def load() -> Any:
    """Return the module ``zerorpc.exceptions``, loading it alone if zerorpc is not imported."""
    loaded = sys.modules.get(NAME)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("zerorpc")
    if package is None or not package.submodule_search_locations:
        raise ImportError("django-zrpc needs zerorpc 0.6.3: pip install django-zrpc.")
    location = f"{next(iter(package.submodule_search_locations))}/exceptions.py"
    spec = importlib.util.spec_from_file_location(NAME, location)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    sys.meta_path.insert(0, _AttachToPackage())
    return module
