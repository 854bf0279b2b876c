"""ZRPC_MIDDLEWARE: zerorpc-style hooks, loaded by dotted path."""

from __future__ import annotations

import textwrap

import pytest
import zerorpc
from django.core.exceptions import MiddlewareNotUsed

from django_zrpc.server.build import load_middleware

MIDDLEWARE_MODULE = '''
import os

class Exploding:
    """Every hook that must not break a call raises."""

    def server_inspect_exception(self, request_event, reply_event, task_context, exc_info):
        raise RuntimeError("inspect hook exploded")

    def server_after_call(self, request_event, exc_info):
        raise RuntimeError("after-call hook exploded")


class Recording:
    """Print each hook as it runs, so the test can read the order in the log."""

    def server_before_exec(self, request_event):
        print("HOOK before", request_event.name, flush=True)

    def server_after_exec(self, request_event, reply_event):
        print("HOOK after_exec", request_event.name, reply_event.name, flush=True)

    def server_inspect_exception(self, request_event, reply_event, task_context, exc_info):
        print("HOOK inspect", request_event.name, exc_info[0].__name__, flush=True)

    def server_after_call(self, request_event, exc_info):
        print("HOOK after_call", request_event.name, flush=True)
'''


@pytest.fixture
def settings_with(tmp_path):
    (tmp_path / "zrpc_tmp_mw.py").write_text(MIDDLEWARE_MODULE)

    def make(*middleware: str) -> dict[str, str]:
        (tmp_path / "mw_settings.py").write_text(
            textwrap.dedent(f"""
                from tests.settings import *
                ZRPC_MIDDLEWARE = {list(middleware)!r}
            """)
        )
        return {"PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "mw_settings"}

    return make


def start(start_server, env, *args):
    settings_module = env.pop("DJANGO_SETTINGS_MODULE")
    return start_server("--heartbeat", "1", *args, f"--settings={settings_module}", **env)


def test_hooks_run_in_order_for_results_errors_and_streams(start_server, settings_with):
    server = start(start_server, settings_with("zrpc_tmp_mw.Recording"))
    with server.client() as client:
        client.echo(1)
        with pytest.raises(zerorpc.RemoteError):
            client.fail("x")
        assert list(client.count_up(3)) == [0, 1, 2]
    server.wait_for("HOOK after_call count_up")
    hooks = [line for line in server.lines if line.startswith("HOOK")]
    assert hooks == [
        "HOOK before echo",
        "HOOK after_exec echo OK",
        "HOOK after_call echo",
        "HOOK before fail",
        "HOOK inspect fail ValueError",
        "HOOK after_call fail",
        "HOOK before count_up",
        "HOOK after_exec count_up STREAM_DONE",
        "HOOK after_call count_up",
    ]


def test_a_failing_hook_is_logged_and_never_hangs_the_caller(start_server, settings_with):
    # One worker: if a failing hook killed it, the next call would hang.
    server = start(start_server, settings_with("zrpc_tmp_mw.Exploding"), "--concurrency", "1")
    with server.client(timeout=5) as client:
        for _ in range(3):
            with pytest.raises(zerorpc.RemoteError) as caught:
                client.fail("x")
            assert caught.value.name == "ValueError"
        assert client.echo(2) == 2
    server.wait_for("RuntimeError: inspect hook exploded")
    server.wait_for("RuntimeError: after-call hook exploded")


def test_middleware_not_used_is_left_out():
    class Off:
        def __init__(self):
            raise MiddlewareNotUsed("off")

    import sys
    import types

    module = types.ModuleType("zrpc_tmp_off")
    module.Off = Off  # type: ignore[attr-defined]
    sys.modules["zrpc_tmp_off"] = module
    try:
        loaded = load_middleware(
            ["zrpc_tmp_off.Off", "django_zrpc.middleware.CloseOldConnectionsMiddleware"]
        )
    finally:
        del sys.modules["zrpc_tmp_off"]
    assert [type(m).__name__ for m in loaded] == ["CloseOldConnectionsMiddleware"]


def test_an_error_sweeps_a_connection_whose_set_up_failed(django_db_blocker, monkeypatch):
    import sys

    from django.db import connection

    from django_zrpc.middleware import CloseOldConnectionsMiddleware

    middleware = CloseOldConnectionsMiddleware()
    with django_db_blocker.unblock():
        connection.close()

        def broken(*args, **kwargs):
            raise RuntimeError("set-up failed after connect")

        monkeypatch.setattr(connection, "init_connection_state", broken)
        try:
            connection.ensure_connection()
        except RuntimeError:
            exc_info = sys.exc_info()
        assert connection.connection is not None  # open, and no connection_created
        middleware.server_after_call(None, exc_info)
        assert connection.connection is None
