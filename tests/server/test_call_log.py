"""runrpc's per-call log by default: on with DEBUG = True, off in production (issue 17)."""

from __future__ import annotations

import pytest
import zerorpc


@pytest.mark.parametrize(("debug", "logged"), [("0", False), ("1", True)])
def test_calls_are_logged_by_default_only_with_debug(start_server, tmp_path, debug, logged):
    # The tests' settings set ZRPC_LOG_CALLS; a project that does not gets the default.
    (tmp_path / "default_log.py").write_text("from tests.settings import *\ndel ZRPC_LOG_CALLS\n")
    server = start_server("--settings=default_log", PYTHONPATH=str(tmp_path), DJANGO_DEBUG=debug)
    with server.client() as client:
        assert client.echo(1) == 1
        with pytest.raises(zerorpc.RemoteError):
            client.fail("always logged")
    server.wait_for("ERROR rpc fail failed in")  # the echo's line, if any, came first
    assert any("INFO rpc echo OK in " in line for line in server.lines) is logged
