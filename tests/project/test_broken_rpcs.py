"""A broken rpcs.py in a fresh project: runrpc's autoreloader waits for the fix, commands say why.

The projects are the README's (tests/project/test_newcomer.py), run as a newcomer
runs them: ``manage.py runrpc`` with the autoreloader on, a real client.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import STARTUP_TIMEOUT, ServerProcess, free_port
from tests.project.test_newcomer import RPCS, make_project

SYNTAX_ERROR = RPCS + "\n\ndef broken(:\n    pass\n"
NAME_ERROR = RPCS + "\n\nundefined_in_rpcs\n"

# The reloader's DEBUG lines about rpcs.py: "File .../rpcs.py first seen with
# mtime ..." says that it took its first look at the file, so that an edit
# from then on is one it sees. The other files' lines are left out.
WATCH_LOG = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "rpcs": {
            "()": "django.utils.log.CallbackFilter",
            "callback": lambda record: "rpcs.py" in record.getMessage(),
        },
    },
    "handlers": {"rpcs": {"class": "logging.StreamHandler", "filters": ["rpcs"]}},
    "loggers": {
        "django.utils.autoreload": {"handlers": ["rpcs"], "level": "DEBUG", "propagate": False},
    },
}
"""
FIRST_SEEN = "rpcs.py first seen with mtime"
WAITING = "Watching for file changes: runrpc restarts and serves once the fix is saved."


def error_line(source: str, text: str) -> int:
    """Return the number of the line of ``source`` that holds ``text``."""
    return next(n for n, line in enumerate(source.splitlines(), 1) if text in line)


@pytest.fixture
def project(tmp_path):
    path, env = make_project(tmp_path)
    with open(path / "mysite" / "settings.py", "a") as settings:
        settings.write(WATCH_LOG)
    return path, env


def start_reloading(path, env) -> ServerProcess:
    """Start `manage.py runrpc PORT`, the autoreloader on as by default."""
    port = free_port()
    return ServerProcess([str(port)], env, path, port)


def fix_when_watched(server: ServerProcess, mark: int, rpcs, source: str) -> int:
    """Write ``source`` once the reloader started after ``mark`` watches rpcs.py; return a mark."""
    server.wait_for(FIRST_SEEN, timeout=STARTUP_TIMEOUT, since=mark)
    assert server.proc.poll() is None, server.output
    mark = server.mark()
    rpcs.write_text(source)
    return mark


def assert_says_hello(server: ServerProcess) -> None:
    with server.client(timeout=10) as client:
        assert client.hello("Ada") == "Hello, Ada!"


@pytest.mark.parametrize(
    ("source", "error", "text"),
    [
        (SYNTAX_ERROR, "SyntaxError", "def broken(:"),
        (NAME_ERROR, "NameError", "undefined_in_rpcs"),
    ],
    ids=["syntax-error", "name-error"],
)
def test_the_autoreloader_waits_for_a_broken_rpcs_py_to_be_fixed(project, source, error, text):
    path, env = project
    rpcs = path / "greetings" / "rpcs.py"
    rpcs.write_text(source)
    server = start_reloading(path, env)
    try:
        server.wait_for(WAITING)
        where = f"{error} at {rpcs}, line {error_line(source, text)}:"
        assert f"Error: greetings.rpcs cannot be imported: {where}" in server.output
        assert text in server.output  # the line itself, under the message
        mark = fix_when_watched(server, 0, rpcs, RPCS)
        server.wait_for("Serving 1 RPC functions", timeout=STARTUP_TIMEOUT, since=mark)
        assert_says_hello(server)
    finally:
        exit_code = server.stop(signal.SIGTERM)
    assert exit_code == 0, server.output


def test_an_rpcs_py_broken_while_serving_is_served_again_once_fixed(project):
    path, env = project
    rpcs = path / "greetings" / "rpcs.py"
    server = start_reloading(path, env)
    try:
        server.wait_for("Serving 1 RPC functions")
        assert_says_hello(server)
        mark = fix_when_watched(server, 0, rpcs, NAME_ERROR)
        server.wait_for(WAITING, timeout=STARTUP_TIMEOUT, since=mark)
        assert "NameError" in server.output_since(mark)
        # Still up, serving nothing, until the file is fixed.
        mark = fix_when_watched(server, mark, rpcs, RPCS)
        server.wait_for("Serving 1 RPC functions", timeout=STARTUP_TIMEOUT, since=mark)
        assert_says_hello(server)
    finally:
        exit_code = server.stop(signal.SIGTERM)
    assert exit_code == 0, server.output


@pytest.fixture(scope="module")
def broken_project(tmp_path_factory):
    path, env = make_project(tmp_path_factory.mktemp("broken"))
    (path / "greetings" / "rpcs.py").write_text(SYNTAX_ERROR)
    return path, env


@pytest.mark.parametrize(
    "command",
    [
        ["rpccall", "hello", "Ada"],
        ["rpclist"],
        ["runrpc", "--noreload", "{port}"],
        ["check"],
    ],
    ids=lambda command: command[0],
)
def test_commands_name_the_broken_file_and_line_without_a_traceback(broken_project, command):
    path, env = broken_project
    args = [arg.replace("{port}", str(free_port())) for arg in command]
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    rpcs = path / "greetings" / "rpcs.py"
    line = error_line(SYNTAX_ERROR, "def broken(:")
    assert result.returncode == 1, result.stderr
    assert f"greetings.rpcs cannot be imported: SyntaxError at {rpcs}, line {line}:" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_ping_does_not_need_the_projects_functions(broken_project):
    path, env = broken_project
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "manage.py", "rpchealth", str(port), "--timeout", "0.5"],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    assert result.returncode == 1, result.stderr
    assert f"tcp://127.0.0.1:{port} did not answer a ping" in result.stderr
    assert "Traceback" not in result.stderr
