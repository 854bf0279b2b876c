"""Autodiscovery of rpcs.py in every installed app."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import gevent
import pytest
from django.test import override_settings

from django_zrpc.autodiscovery import check_rpcs_modules
from django_zrpc.client.balancer import Balancer
from django_zrpc.exceptions import BrokenRPCModule
from django_zrpc.registry import rpc
from django_zrpc.server import build_server
from tests.conftest import ROOT, free_port, subprocess_env

APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_zrpc",
    "testproject.tickets",
    "tests.probes",
]


def make_app(tmp_path, name: str, rpcs_source: str | None) -> None:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    if rpcs_source is not None:
        (package / "rpcs.py").write_text(textwrap.dedent(rpcs_source))


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.split(".")[0].startswith("zrpc_tmp_")]:
        del sys.modules[module]


def test_an_app_without_rpcs_is_skipped_and_a_new_one_is_registered(app_dir):
    make_app(app_dir, "zrpc_tmp_plain", None)
    make_app(
        app_dir,
        "zrpc_tmp_extra",
        """
        from django_zrpc import rpc

        @rpc.register()
        def extra_ping():
            return "pong"
        """,
    )
    try:
        with override_settings(INSTALLED_APPS=[*APPS, "zrpc_tmp_plain", "zrpc_tmp_extra"]):
            assert rpc["extra_ping"].func() == "pong"
    finally:
        rpc.unregister("extra_ping")


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("import zrpc_no_such_module\n", ModuleNotFoundError, "No module named 'zrpc_no_"),
        ("def broken(:\n", SyntaxError, "invalid syntax"),
        ("raise RuntimeError('boom in rpcs')\n", RuntimeError, "boom in rpcs"),
    ],
)
def test_an_rpcs_module_that_fails_to_import_stops_the_server_not_startup(
    app_dir, source, error, message
):
    make_app(app_dir, "zrpc_tmp_broken", source)
    where = f"{error.__name__} at {app_dir / 'zrpc_tmp_broken' / 'rpcs.py'}, line 1: {message}"
    with override_settings(INSTALLED_APPS=[*APPS, "zrpc_tmp_broken"]):
        with pytest.raises(BrokenRPCModule, match=re.escape(where)) as caught:
            build_server()
        assert isinstance(caught.value.__cause__, error)
        [found] = check_rpcs_modules()
        assert (found.id, found.obj) == ("django_zrpc.E022", "zrpc_tmp_broken.rpcs")
        assert found.msg == str(caught.value)
    # The app is no longer installed: nothing is missing from the registry.
    assert check_rpcs_modules() == []
    build_server().close()


def test_a_name_registered_twice_is_reported_at_the_line_that_registers_it(app_dir):
    source = """
        from django_zrpc import rpc

        @rpc.register(name="get_ticket")
        def my_get_ticket(id):
            return id
        """
    make_app(app_dir, "zrpc_tmp_twice", source)
    rpcs = app_dir / "zrpc_tmp_twice" / "rpcs.py"
    with override_settings(INSTALLED_APPS=[*APPS, "zrpc_tmp_twice"]):
        [found] = check_rpcs_modules()
    # The decorator's line in the app, not the registry's that raised.
    assert f"DuplicateRPCName at {rpcs}, line 4: RPC name 'get_ticket'" in found.msg


def test_duplicate_names_across_apps_stop_runrpc(tmp_path):
    make_app(
        tmp_path,
        "zrpc_tmp_dupe",
        """
        from django_zrpc import rpc

        @rpc.register(name="get_ticket")
        def my_get_ticket(id):
            return id
        """,
    )
    (tmp_path / "dupe_settings.py").write_text(
        "from testproject.settings import *\nINSTALLED_APPS = [*INSTALLED_APPS, 'zrpc_tmp_dupe']\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "runrpc",
            "--noreload",
            "--settings=dupe_settings",
            str(free_port()),
        ],
        cwd=ROOT,
        env=subprocess_env(PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "RPC name 'get_ticket' is registered twice" in result.stderr
    assert "testproject.tickets.rpcs.get_ticket" in result.stderr
    assert "zrpc_tmp_dupe.rpcs.my_get_ticket" in result.stderr


class SlowPool:
    """A pool whose close lets other callers run, as closing a connection does."""

    calls_in_flight = 0

    def __init__(self) -> None:
        self.closes = 0

    def close(self) -> None:
        gevent.sleep(0.01)
        self.closes += 1


def test_callers_that_find_addresses_gone_at_once_close_each_pool_once():
    endpoints = ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"]
    balancer = Balancer(endpoints, refresh=30, down_for=1)
    pools = {endpoint: SlowPool() for endpoint in endpoints}
    state = SimpleNamespace(pools=dict(pools), version=balancer.directory.version)
    balancer.directory.update(endpoints[2:])  # two addresses left the directory
    callers = [gevent.spawn(balancer.choose, state, set()) for _ in range(2)]
    gevent.joinall(callers, timeout=5, raise_error=True)
    assert [caller.value for caller in callers] == [endpoints[2]] * 2
    assert [pool.closes for pool in pools.values()] == [1, 1, 0]
    assert list(state.pools) == endpoints[2:]
