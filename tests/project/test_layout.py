"""The package's layout by role: what each room may import, what a process loads, old paths.

The rooms are ``wire`` (the protocol, pure), ``transport`` (sockets and their
loops), ``client`` (with ``client/gevent`` and ``client/aio``), ``server``, and
the Django face at the root (with ``discovery``, ``metrics``, ``contrib`` and
``management``). The rules are read off every ``import`` of the package,
in functions and under ``TYPE_CHECKING`` too, and off the processes that a
settings check and the asyncio client start.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import django_zrpc
from tests.conftest import ROOT, subprocess_env

PACKAGE = Path(django_zrpc.__file__).parent

# Each module's room, by the longest prefix of its dotted name.
ROOMS = {
    "django_zrpc.wire": "wire",
    "django_zrpc.transport": "transport",
    "django_zrpc.client": "client",
    "django_zrpc.client.gevent": "client.gevent",
    "django_zrpc.client.aio": "client.aio",
    "django_zrpc.server": "server",
    "django_zrpc.contracts": "contracts",
    "django_zrpc.discovery": "discovery",
    "django_zrpc.metrics": "metrics",
    "django_zrpc.contrib": "contrib",
    "django_zrpc.management": "management",
    # The old import paths, kept as re-exports of the modules that moved.
    "django_zrpc.core": "old paths",
    "django_zrpc.errors": "old paths",
    "django_zrpc.remote_errors": "old paths",
}
# The Django face: settings, checks, exceptions, the registry and the call's context.
ROOT_MODULES = {
    "django_zrpc",
    "django_zrpc._zerorpc_exceptions",
    "django_zrpc.addrport",
    "django_zrpc.apps",
    "django_zrpc.autodiscovery",
    "django_zrpc.checks",
    "django_zrpc.conf",
    "django_zrpc.context",
    "django_zrpc.curve",
    "django_zrpc.exceptions",
    "django_zrpc.identity",
    "django_zrpc.identity_checks",
    "django_zrpc.launcher",
    "django_zrpc.middleware",
    "django_zrpc.pytest_plugin",
    "django_zrpc.registry",
    "django_zrpc.rpc_mock",
    "django_zrpc.testing",
    "django_zrpc.urls",
    "django_zrpc.views",
    "django_zrpc.zerorpc_cli",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Return what module ``name`` imports, a ``from package import module`` as the module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def room_of(name: str) -> str | None:
    if name in ROOT_MODULES:
        return "root"
    prefixes = [p for p in ROOMS if name == p or name.startswith(p + ".")]
    return ROOMS[max(prefixes, key=len)] if prefixes else None


def _edges(source_room: str, target: str) -> dict[str, list[str]]:
    """Return the modules of ``source_room`` that import a module of ``target``'s room."""
    found = {}
    for name, imported in GRAPH.items():
        if room_of(name) == source_room:
            wrong = sorted(m for m in imported if room_of(m) == target)
            if wrong:
                found[name] = wrong
    return found


def test_every_module_has_a_room():
    assert [name for name in MODULES if room_of(name) is None] == []


# What the wire may import from the rest of django_zrpc: the exception classes.
WIRE_MAY_IMPORT = {"django_zrpc.exceptions", "django_zrpc._zerorpc_exceptions"}
NOT_ON_THE_WIRE = ("gevent", "zmq", "asyncio", "asgiref", "zerorpc")


def _loads_a_loop_socket_or_settings(module: str) -> bool:
    return (
        module.split(".")[0] in NOT_ON_THE_WIRE
        or module == "django.conf"
        or module.startswith("django.conf.")
    )


def _wrong_imports(room: str, wrong: Callable[[str], bool]) -> dict[str, list[str]]:
    """Return the modules of ``room`` that import a module ``wrong`` refuses, and those."""
    found = {}
    for name, imported in GRAPH.items():
        if room_of(name) == room:
            bad = sorted(m for m in imported if wrong(m))
            if bad:
                found[name] = bad
    return found


def test_the_wire_imports_no_event_loop_socket_nor_settings():
    assert (
        _wrong_imports(
            "wire",
            lambda m: (
                m != "zerorpc.exceptions"
                and (
                    _loads_a_loop_socket_or_settings(m)
                    or (
                        m.startswith("django_zrpc")
                        and room_of(m) != "wire"
                        and m not in WIRE_MAY_IMPORT
                    )
                )
            ),
        )
        == {}
    )


WIRE_SCRIPT = """
import json, sys
import django_zrpc.wire.calls_out, django_zrpc.wire.protocol, django_zrpc.wire.remote_errors
import django_zrpc.wire.unreachable, django_zrpc.wire.values
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("gevent", "zmq", "asyncio", "asgiref", "zerorpc") or m.startswith("django.conf"))))
"""


def test_loading_the_wire_loads_no_event_loop_socket_nor_settings():
    # What it imports through the rest of django_zrpc counts too: no settings
    # module is set, and none is read.
    env = subprocess_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", WIRE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["zerorpc.exceptions"]


def test_contracts_import_no_event_loop_socket_settings_client_nor_server():
    # The registry, checks and commands read contracts without loading a server.
    high = ("transport", "client", "client.gevent", "client.aio", "server")
    assert (
        _wrong_imports(
            "contracts", lambda m: _loads_a_loop_socket_or_settings(m) or room_of(m) in high
        )
        == {}
    )


def test_rooms_point_down_the_wire_and_transport_import_no_client_nor_server():
    for low in ("wire", "transport"):
        for high in ("client", "client.gevent", "client.aio", "server"):
            assert _edges(low, high) == {}, (low, high)
    assert _edges("wire", "transport") == {}


def test_client_and_server_never_import_each_other():
    for client in ("client", "client.gevent", "client.aio"):
        assert _edges(client, "server") == {}
        assert _edges("server", client) == {}


def test_the_gevent_and_asyncio_clients_never_import_each_other():
    assert _edges("client.gevent", "client.aio") == {}
    assert _edges("client.aio", "client.gevent") == {}
    # What both share imports neither of them.
    assert _edges("client", "client.gevent") == {}
    assert _edges("client", "client.aio") == {}
    assert "django_zrpc.transport.aio_sockets" not in GRAPH["django_zrpc.transport.socket_loop"]
    assert "django_zrpc.transport.socket_loop" not in GRAPH["django_zrpc.transport.aio_sockets"]


def test_the_asyncio_client_and_what_it_shares_import_no_gevent():
    wrong = {}
    for name, imported in GRAPH.items():
        if room_of(name) in ("client", "client.aio", "wire") or name in (
            "django_zrpc.transport.aio_sockets",
            "django_zrpc.transport.dealer",
            "django_zrpc.transport.monitor",
            "django_zrpc.context",
        ):
            bad = {
                m
                for m in imported - {"zerorpc.exceptions"}
                if m.split(".")[0] in ("gevent", "zerorpc")
                or m == "django_zrpc.transport.socket_loop"
            }
            if bad:
                wrong[name] = sorted(bad)
    assert wrong == {}


def test_the_gevent_and_asyncio_clients_have_the_same_module_names():
    def names(side: str) -> list[str]:
        return sorted(path.name for path in (PACKAGE / "client" / side).glob("*.py"))

    assert names("gevent") == names("aio")
    assert "rpc_client.py" in names("aio")


# What serves or makes calls: a settings check and a web process load none of it.
ENGINE = (
    "django_zrpc.core",
    "django_zrpc.server",
    "django_zrpc.client.gevent",
    "django_zrpc.client.aio",
    "django_zrpc.transport",
    "django_zrpc.wire.calls_out",
)

CHECK_SCRIPT = """
import json, sys
import django
from django.core.management import call_command
django.setup()
call_command("check", verbosity=0)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("gevent", "zmq", "zerorpc", "django_zrpc"))))
"""


def test_manage_py_check_loads_no_server_client_gevent_or_sockets(tmp_path):
    # A project of the demo app, with no views and only the database
    # middleware: code of the project's own that imports RPCClient (the test
    # project's views and probes do) loads gevent itself, and so does
    # sentry-sdk (its middleware is a default where it is installed).
    (tmp_path / "demo_settings.py").write_text(
        "from testproject.settings import *\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth',"
        " 'django_zrpc', 'testproject.tickets']\n"
        "ROOT_URLCONF = 'demo_settings'\n"
        "ZRPC_MIDDLEWARE = ['django_zrpc.middleware.CloseOldConnectionsMiddleware']\n"
        "urlpatterns = []\n"
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="demo_settings", PYTHONPATH=f"{tmp_path}:{ROOT}")
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "zerorpc.exceptions" in loaded  # the classes django_zrpc re-exports
    unwanted = [
        m
        for m in loaded
        if m.split(".")[0] in ("gevent", "zmq") or m == "zerorpc" or m.startswith(ENGINE)
    ]
    assert unwanted == []


def test_zerorpc_and_django_zrpc_raise_the_same_classes():
    # django_zrpc.exceptions loads zerorpc's exceptions module before zerorpc
    # itself is imported; zerorpc must then use that very module.
    script = (
        "import django_zrpc.exceptions as ours, zerorpc, zerorpc.exceptions\n"
        "assert zerorpc.RemoteError is ours.RemoteError is zerorpc.exceptions.RemoteError\n"
        "assert zerorpc.LostRemote is ours.LostRemote\n"
        "assert zerorpc.TimeoutExpired is ours.TimeoutExpired\n"
        "assert issubclass(ours.ServerUnavailable, zerorpc.TimeoutExpired)\n"
        "print('same')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "same", done.stderr


def test_names_of_release_0_1_keep_importing():
    from django_zrpc import errors, exceptions, remote_errors

    assert errors.register_error is remote_errors.register_error is django_zrpc.register_error
    for name in (
        "RemoteDoesNotExist",
        "RemoteMultipleObjectsReturned",
        "RemotePermissionDenied",
        "RemoteValidationError",
    ):
        assert getattr(errors, name) is getattr(exceptions, name)
    from django_zrpc.curve import CurveKeyError

    assert CurveKeyError is exceptions.CurveKeyError


# Each import path of an earlier release, and the module that now holds its name.
OLD_PATHS = [
    ("django_zrpc.core.client", "Client", "django_zrpc.client.gevent.connection"),
    ("django_zrpc.core.client", "Stream", "django_zrpc.client.gevent.stream"),
    ("django_zrpc.core.client", "CallByName", "django_zrpc.wire.calls_out"),
    ("django_zrpc.core.client", "HANDSHAKE_GRACE", "django_zrpc.wire.calls_out"),
    ("django_zrpc.core.client", "MAX_ERROR_TEXT", "django_zrpc.wire.calls_out"),
    ("django_zrpc.core.client", "STREAM_WINDOW", "django_zrpc.wire.calls_out"),
    ("django_zrpc.core.client", "TICK", "django_zrpc.wire.calls_out"),
    ("django_zrpc.server", "build_server", "django_zrpc.server.build"),
    ("django_zrpc.server", "load_middleware", "django_zrpc.server.build"),
    ("django_zrpc.server", "connection_limits", "django_zrpc.server.build"),
    ("django_zrpc.server", "idle_check", "django_zrpc.server.build"),
    ("django_zrpc.client", "RPCClient", "django_zrpc.client.gevent.rpc_client"),
    ("django_zrpc.client", "PooledStream", "django_zrpc.client.gevent.stream"),
    ("django_zrpc.client.aio", "AsyncRPCClient", "django_zrpc.client.aio.rpc_client"),
    *(
        ("django_zrpc.remote_errors", name, "django_zrpc.wire.remote_errors")
        for name in ("register_error", "encode", "decode", "expected", "HEADER", "NEVER_STARTED")
    ),
    ("django_zrpc.errors", "register_error", "django_zrpc.wire.remote_errors"),
    *(
        ("django_zrpc", name, module)
        for name, module in (
            ("rpc", "django_zrpc.registry"),
            ("RPCClient", "django_zrpc.client.gevent.rpc_client"),
            ("AsyncRPCClient", "django_zrpc.client.aio.rpc_client"),
            ("async_clients", "django_zrpc.client.aio.named_clients"),
            ("clients", "django_zrpc.client.gevent.named_clients"),
            ("default_client", "django_zrpc.client.gevent.named_clients"),
            ("current_call", "django_zrpc.context"),
            ("register_error", "django_zrpc.wire.remote_errors"),
            ("ServerUnavailable", "django_zrpc.exceptions"),
        )
    ),
]


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_an_old_import_path_gives_the_same_object_as_its_new_home(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )


def test_every_lazy_name_of_the_package_is_found_where_it_points():
    for name, module in django_zrpc._LAZY.items():
        assert getattr(django_zrpc, name) is getattr(importlib.import_module(module), name)


ASYNC_SCRIPT = """
import asyncio, json, sys
import django
django.setup()
from django_zrpc import AsyncRPCClient, async_clients

async def main():
    async with AsyncRPCClient(sys.argv[1], timeout=10) as client:
        return await client.echo("no gevent")

print(json.dumps([asyncio.run(main()), sorted(m for m in sys.modules
      if m.split(".")[0] == "gevent" or m == "zerorpc"
      or m.startswith(("django_zrpc.core", "django_zrpc.client.gevent"))
      or m == "django_zrpc.transport.socket_loop")]))
"""


def test_an_asyncio_process_calls_runrpc_without_loading_gevent(tmp_path, server):
    # The demo app only: the probes' rpcs.py imports RPCClient (and so gevent).
    (tmp_path / "demo_settings.py").write_text(
        "from testproject.settings import *\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth',"
        " 'django_zrpc', 'testproject.tickets']\n"
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="demo_settings", PYTHONPATH=f"{tmp_path}:{ROOT}")
    done = subprocess.run(
        [sys.executable, "-c", ASYNC_SCRIPT, server.endpoint],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["no gevent", []]


NEW_PROJECT_SCRIPT = """
import json, sys
import django
from django.core.management import call_command
django.setup()
call_command("check", verbosity=0)
from django_zrpc import conf
middleware = conf.get("MIDDLEWARE")
from mysite.wsgi import application  # the web process: its middleware chain built
print(json.dumps({"middleware": middleware, "loaded": sorted(sys.modules)}))
"""


def test_new_project_with_sentry_and_opentelemetry_checks_and_serves_web_without_the_engine(
    tmp_path,
):
    # sentry-sdk and OpenTelemetry installed put their middleware in the
    # default ZRPC_MIDDLEWARE; checking it must load neither them (sentry-sdk
    # imports gevent) nor the RPC engine, which wait for runrpc or a call.
    pytest.importorskip("sentry_sdk")
    pytest.importorskip("opentelemetry")
    from tests.project.test_newcomer import make_project

    path, env = make_project(tmp_path)
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    done = subprocess.run(
        [sys.executable, "-c", NEW_PROJECT_SCRIPT],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "django_zrpc.contrib.sentry.SentryMiddleware" in seen["middleware"]
    assert "django_zrpc.contrib.opentelemetry.OpenTelemetryMiddleware" in seen["middleware"]
    unwanted = [
        m
        for m in seen["loaded"]
        if m.split(".")[0] in ("gevent", "zmq", "sentry_sdk", "opentelemetry")
        or m == "zerorpc"
        or m.startswith((*ENGINE, "django_zrpc.contrib"))
    ]
    assert unwanted == []


# The folders whose modules are old import paths, re-exports all: the doc
# names the folder, not each of its modules.
DOCUMENTED_AS_A_FOLDER = {"core/"}


def _documented_modules() -> dict[str, list[str]]:
    """Return the first cells of docs/architecture.rst's module tables, by the folder(s) above.

    A table's folder is the ``django_zrpc/...`` its heading names (both, in
    the heading of the table that the two clients share).
    """
    found: dict[str, list[str]] = {}
    folders: list[str] = []
    for line in (ROOT / "docs" / "architecture.rst").read_text().splitlines():
        heading = re.findall(r"``django_zrpc/([\w/]*)``", line)
        if heading and not line.startswith("``"):
            folders = heading
        elif folders and line.startswith("``"):
            name = line[2:].partition("``")[0]
            for folder in folders:
                found.setdefault(folder, []).append(name)
    return found


def _package_files() -> set[str]:
    """Return every module of the package by its path, a subpackage's ``__init__`` aside."""
    files = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and relative != "__init__.py":
            continue
        if not relative.startswith(tuple(DOCUMENTED_AS_A_FOLDER)):
            files.add(relative)
    return files


def test_the_architecture_doc_names_exactly_the_modules_that_exist():
    documented = _documented_modules()
    paths = [f"{folder}{name}" for folder, names in documented.items() for name in names]
    modules = sorted(p for p in paths if p.endswith(".py"))
    assert [p for p in set(modules) if modules.count(p) > 1] == [], "named twice"
    assert sorted(set(modules) ^ _package_files()) == [], (
        "docs/architecture.rst must name each module of django_zrpc once, in the table of its "
        "folder: the paths above are missing from it, or are named there but do not exist."
    )
    folders = [p for p in paths if p.endswith("/")]
    assert [f for f in folders if not (PACKAGE / f).is_dir()] == [], "a folder that does not exist"


def test_the_architecture_doc_shows_the_two_clients_side_by_side_under_the_same_names():
    documented = _documented_modules()
    assert sorted(documented["client/gevent/"]) == sorted(documented["client/aio/"])


def test_every_path_the_architecture_doc_walks_through_exists():
    text = (ROOT / "docs" / "architecture.rst").read_text()
    walks = text[text.index("One call on the server") :]
    paths = set(re.findall(r"``([\w/]+\.py)``", walks))
    assert paths, "the walk-throughs name no module"
    assert sorted(p for p in paths if not (PACKAGE / p).is_file()) == []


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(name: str) -> set[str]:
    """Return the modules of the package that ``name`` imports when it runs.

    At module level and in functions alike; an import under ``TYPE_CHECKING``
    never runs, so it cannot make a cycle and is left out.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    nodes: list[ast.AST] = [ast.parse(path.read_text())]
    while nodes:
        node = nodes.pop()
        if _is_type_checking(node):
            nodes.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.update(
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            )
        nodes.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


# Import cycles allowed for now, each by its modules; the list may only shrink.
# The asyncio client's connection, pool and stream once named each other at
# run time; write its modules here only if such a cycle comes back while it is
# rewritten, and take it out when it is gone.
ALLOWED_CYCLES: list[list[str]] = []


def test_no_import_cycles_between_modules():
    cycles = _cycles({name: _runtime_imports(name) for name in MODULES})
    new = [c for c in cycles if c not in ALLOWED_CYCLES]
    assert new == [], (
        "These modules import each other in a circle (at module level or in a function): "
        "move what they share to a module that imports neither, or import it under "
        "TYPE_CHECKING if only the type is needed."
    )
    gone = [c for c in ALLOWED_CYCLES if c not in cycles]
    assert gone == [], "These cycles are gone: remove them from ALLOWED_CYCLES."


def test_a_cycle_through_an_in_function_import_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# The size ratchet: a module over MAX_MODULE_LINES lines, a function over
# MAX_FUNCTION_LINES or a class over MAX_CLASS_LINES deserves a split. Those
# over it today are listed with their size, which may only go down: lower the
# number when one shrinks, remove the entry when it is under the limit.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300
OVER_THE_LIMIT = {}


def _definitions(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(dotted name, lines, limit)`` of every function and class under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            limit = MAX_CLASS_LINES if isinstance(child, ast.ClassDef) else MAX_FUNCTION_LINES
            yield name, (child.end_lineno or child.lineno) - child.lineno + 1, limit
            yield from _definitions(child, f"{name}.")
        else:
            yield from _definitions(child, prefix)


def _sizes() -> dict[str, tuple[int, int]]:
    """Return each module's, function's and class's ``(lines, limit)`` by its ratchet key."""
    sizes = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        key = path.relative_to(PACKAGE).as_posix()
        source = path.read_text()
        sizes[key] = (len(source.splitlines()), MAX_MODULE_LINES)
        for name, lines, limit in _definitions(ast.parse(source), ""):
            sizes[f"{key}::{name}"] = (lines, limit)
    return sizes


def test_no_module_function_or_class_grows_past_its_limit():
    sizes = _sizes()
    over = {
        key: lines
        for key, (lines, limit) in sizes.items()
        if lines > max(limit, OVER_THE_LIMIT.get(key, 0))
    }
    assert over == {}, (
        f"Over the limit ({MAX_MODULE_LINES} lines a module, {MAX_FUNCTION_LINES} a function, "
        f"{MAX_CLASS_LINES} a class) or past its entry in OVER_THE_LIMIT: split it."
    )


def test_the_size_ratchet_lists_only_what_is_over_the_limit_at_its_size():
    sizes = _sizes()
    stale = {
        key: sizes.get(key, (0, 0))[0]
        for key, allowed in OVER_THE_LIMIT.items()
        if sizes.get(key, (0, 0))[0] != allowed
    }
    assert stale == {}, (
        "These entries of OVER_THE_LIMIT have shrunk (or are gone, at 0): lower each to the "
        "size shown, or remove it if that is under its limit."
    )
    under = sorted(key for key in OVER_THE_LIMIT if sizes[key][0] <= sizes[key][1])
    assert under == [], "Under their limit now: remove them from OVER_THE_LIMIT."


def test_code_says_why_not_which_ticket():
    pattern = re.compile(r"\(issues? \d+")
    found = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert found == [], (
        "Say why in words instead of naming an issue: its number tells a reader nothing."
    )


def test_the_package_ships_its_types():
    assert (PACKAGE / "py.typed").is_file()
    assert "django_zrpc = py.typed" in (ROOT / "setup.cfg").read_text()
