"""The package's layering: what ``core`` may import, what a settings check loads, old names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import django_zrpc
from tests.conftest import ROOT, subprocess_env

PACKAGE = Path(django_zrpc.__file__).parent

# What core/__init__.py says core may import from the rest of django_zrpc.
CORE_MAY_IMPORT = {
    "django_zrpc.wire",
    "django_zrpc.context",
    "django_zrpc.exceptions",
    "django_zrpc.curve",
}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "django_zrpc":
                modules.update(f"django_zrpc.{alias.name}" for alias in node.names)
            else:
                modules.add(node.module)
    return modules


def test_core_imports_only_what_its_docstring_allows():
    outside = {}
    for path in sorted((PACKAGE / "core").glob("*.py")):
        wrong = {
            module
            for module in _imported_modules(path)
            if module.startswith("django_zrpc")
            and not module.startswith(
                ("django_zrpc.core", "django_zrpc.wire", "django_zrpc.transport")
            )
            # The old import path of the gevent connection.
            and not module.startswith("django_zrpc.client.gevent")
            and module not in CORE_MAY_IMPORT
        }
        if wrong:
            outside[path.name] = sorted(wrong)
    assert outside == {}


def test_what_core_may_import_is_free_of_gevent_and_sockets():
    paths = [PACKAGE / "context.py", PACKAGE / "exceptions.py", *(PACKAGE / "wire").glob("*.py")]
    for path in paths:
        # zerorpc's exceptions are loaded without zerorpc's package (its gevent).
        imported = _imported_modules(path) - {"zerorpc.exceptions"}
        assert not {m for m in imported if m.split(".")[0] in ("gevent", "zmq", "zerorpc")}, path
        assert not {m for m in imported if m.startswith("django_zrpc.core")}, path


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
        if m.split(".")[0] in ("gevent", "zmq")
        or m == "zerorpc"
        or m.startswith(("django_zrpc.core", "django_zrpc.server", "django_zrpc.client.gevent"))
        or m in ("django_zrpc.core.client", "django_zrpc.pool")
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
    from django_zrpc import errors, exceptions
    from django_zrpc.wire import remote_errors

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


# The asyncio client and what it shares with the gevent one (issue 16).
ASYNC_SIDE = [
    *sorted((PACKAGE / "aio").glob("*.py")),
    *sorted((PACKAGE / "wire").glob("*.py")),
    PACKAGE / "transport" / "aio_sockets.py",
    PACKAGE / "transport" / "dealer.py",
    PACKAGE / "transport" / "monitor.py",
    PACKAGE / "client" / "__init__.py",
    PACKAGE / "client" / "retry.py",
    PACKAGE / "client" / "options.py",
    PACKAGE / "context.py",
]
GEVENT_SIDE = {
    "django_zrpc.client.gevent.rpc_client",
    "django_zrpc.client.gevent.pool",
    "django_zrpc.client.gevent.named_clients",
    "django_zrpc.client.gevent.connection",
    "django_zrpc.transport.socket_loop",
    "django_zrpc.server.engine",
}


def test_the_asyncio_client_imports_no_gevent_nor_the_gevent_client():
    wrong = {}
    for path in ASYNC_SIDE:
        imported = _imported_modules(path)
        bad = {m for m in imported if m.split(".")[0] in ("gevent", "zerorpc")} | (
            imported & GEVENT_SIDE
        )
        if bad:
            wrong[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert wrong == {}


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
      or m.startswith("django_zrpc.client.gevent"))]))
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
    from tests.test_newcomer import make_project

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
        or m.startswith(("django_zrpc.core", "django_zrpc.aio", "django_zrpc.contrib"))
        or m.startswith(("django_zrpc.server", "django_zrpc.client.gevent"))
        or m in ("django_zrpc.core.client", "django_zrpc.pool")
    ]
    assert unwanted == []
