"""Import every installed app's ``rpcs.py``; keep the error of one that fails to import.

A broken ``rpcs.py`` does not stop Django from starting. runrpc's autoreloader
has to stay up to see the fix, as runserver's does for a broken ``models.py``,
and the commands that need the functions say what is wrong in one sentence
instead of a traceback. So the error is kept here and raised where the
functions are needed (runrpc, rpclist, rpccall, ``build_server``); a system
check reports it to every other command that runs the checks.
"""

from __future__ import annotations

import importlib.util
import os
import sysconfig
import traceback
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.utils.module_loading import module_has_submodule

from django_zrpc.exceptions import BrokenRPCModule

MODULE = "rpcs"


@dataclass(frozen=True)
class BrokenModule:
    """An app's ``rpcs.py`` that raised ``error`` when imported."""

    app: str  # the app's module name, e.g. "greetings"
    error: Exception
    path: str | None  # rpcs.py, or None if the import system does not know it

    @property
    def name(self) -> str:
        return f"{self.app}.{MODULE}"

    def location(self) -> tuple[str | None, int | None]:
        """Return the file and line the error was raised at: where to fix it."""
        error = self.error
        if isinstance(error, SyntaxError) and error.filename:
            return error.filename, error.lineno
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith("<")  # not <frozen importlib._bootstrap>
        ]
        # The project's own line that led there, not django_zrpc's or Django's
        # that raised (a name registered twice is raised in the registry).
        own = [frame for frame in frames if not _is_library(frame.filename)] or frames
        return (own[-1].filename, own[-1].lineno) if own else (self.path, None)

    def sentence(self) -> str:
        """Say in one sentence what failed, where, and what to do."""
        error = self.error
        message = (error.msg if isinstance(error, SyntaxError) else str(error)).rstrip(".")
        path, line = self.location()
        where = f"{path}, line {line}" if line is not None else str(path)
        return (
            f"{self.name} cannot be imported: {type(error).__name__} at {where}: {message}. "
            f"Fix it there: none of the functions of {self.name} are served until it imports."
        )

    def report(self) -> str:
        """Return the error's traceback from the first frame in ``rpcs.py`` on."""
        error = self.error
        if isinstance(error, SyntaxError) and error.filename == self.path:
            # The file's own code never ran: the line and its caret say it all.
            return "".join(traceback.format_exception_only(type(error), error))
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != self.path:
            tb = tb.tb_next
        # Raised before rpcs.py ran (its import found no file): the whole chain says why.
        return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))

    def files(self) -> set[Path]:
        """Return the files to watch for the fix: rpcs.py and each file the error went through."""
        names = {self.path, self.location()[0]}
        names.update(frame.filename for frame in traceback.extract_tb(self.error.__traceback__))
        return {Path(name).absolute() for name in names if name and os.path.isfile(name)}


def _is_library(path: str) -> bool:
    """Return True for a file of django_zrpc, of the standard library or of an installed package."""
    folders = {sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")}
    folders.add(str(Path(__file__).parent))
    return any(path.startswith(folder + os.sep) for folder in folders if folder)


# The app module name -> its broken rpcs.py. Kept per app, not as one list:
# tests change INSTALLED_APPS and back, and only installed apps count.
_broken: dict[str, BrokenModule] = {}


def autodiscover() -> None:
    """Import the ``rpcs`` module of every installed app that has one."""
    for app_config in apps.get_app_configs():
        _broken.pop(app_config.name, None)
        if not module_has_submodule(app_config.module, MODULE):
            continue
        name = f"{app_config.name}.{MODULE}"
        try:
            import_module(name)
        except Exception as err:
            _broken[app_config.name] = BrokenModule(app_config.name, err, _origin(name))
    if _broken:
        from django.utils.autoreload import autoreload_started

        autoreload_started.connect(watch_broken_modules, dispatch_uid="django_zrpc_broken_rpcs")


def _origin(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def broken_modules() -> list[BrokenModule]:
    """Return the installed apps' ``rpcs`` modules that failed to import."""
    return [broken for app, broken in sorted(_broken.items()) if apps.is_installed(app)]


def raise_if_broken() -> None:
    """Raise ``BrokenRPCModule`` if an installed app's ``rpcs.py`` failed to import."""
    broken = broken_modules()
    if broken:
        message = " ".join(module.sentence() for module in broken)
        raise BrokenRPCModule(message) from broken[0].error


def check_rpcs_modules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report each ``rpcs.py`` that failed to import, for the commands that run the checks."""
    return [
        Error(module.sentence(), obj=module.name, id="django_zrpc.E022")
        for module in broken_modules()
    ]


def watch_broken_modules(sender: Any, **kwargs: Any) -> None:
    """Have the autoreloader watch the broken modules, which are not in ``sys.modules``.

    Without this, Django's reloader would not see the fix: it watches the
    files of imported modules, and a module that failed is not one. A glob
    of the file's own name is how a reloader is told to watch one file.
    """
    for module in broken_modules():
        for path in sorted(module.files()):
            sender.watch_dir(path.parent, path.name)
