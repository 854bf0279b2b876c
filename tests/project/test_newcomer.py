"""What README.rst tells a newcomer to do, done in a fresh project.

`django-admin startproject`'s manage.py, unedited; the app added to
INSTALLED_APPS; an rpcs.py; `manage.py runrpc`; a call from Python.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import zerorpc

from tests.conftest import ServerProcess, free_port, subprocess_env

RPCS = '''
from django_zrpc import rpc


@rpc.register()
def hello(name):
    """Greet name."""
    return f"Hello, {name}!"
'''


def make_project(tmp_path):
    """Make the README's project in ``tmp_path``; return the path and the environment to run it."""
    env = subprocess_env()
    env.pop("DJANGO_SETTINGS_MODULE")  # the new project's manage.py names its own
    env.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        check=True,
        env=env,
        timeout=60,
    )
    subprocess.run(
        [sys.executable, "manage.py", "startapp", "greetings"],
        cwd=tmp_path,
        check=True,
        env=env,
        timeout=60,
    )
    (tmp_path / "greetings" / "rpcs.py").write_text(RPCS)
    settings = tmp_path / "mysite" / "settings.py"
    source = settings.read_text()
    assert "INSTALLED_APPS = [\n" in source
    settings.write_text(
        source.replace(
            "INSTALLED_APPS = [\n", "INSTALLED_APPS = [\n    'django_zrpc',\n    'greetings',\n"
        )
    )
    return tmp_path, env


@pytest.fixture
def project(tmp_path):
    """A project of the test's own, for a test that edits it."""
    return make_project(tmp_path)


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory):
    """A project shared by the module's tests that only run it."""
    return make_project(tmp_path_factory.mktemp("newcomer"))


def assert_serves_hello(path, env) -> None:
    """Start `manage.py runrpc --noreload` in the project, call hello, stop it with exit 0."""
    port = free_port()
    server = ServerProcess(["--noreload", str(port)], env, path, port)
    try:
        server.wait_for("Serving 1 RPC functions at tcp://127.0.0.1:")
        with server.client() as client:
            assert client.hello("Ada") == "Hello, Ada!"
    finally:
        assert server.stop() == 0


def test_newcomer_project_serves_its_rpcs_with_an_unedited_manage_py(shared_project):
    assert_serves_hello(*shared_project)


def test_autoreloader_restarts_the_server_when_rpcs_change(project):
    path, env = project
    port = free_port()
    server = ServerProcess([str(port)], env, path, port)  # the reloader is on by default
    try:
        server.wait_for("Serving 1 RPC functions")
        with server.client(timeout=5) as client:
            assert client.hello("Ada") == "Hello, Ada!"
        time.sleep(1.1)  # let the file's mtime move past the reloader's snapshot
        rpcs = path / "greetings" / "rpcs.py"
        rpcs.write_text(
            RPCS
            + textwrap.dedent("""
                @rpc.register()
                def bye(name):
                    return f"Bye, {name}!"
            """)
        )
        server.wait_for("Serving 2 RPC functions", timeout=30)
        with server.client(timeout=5) as client:
            assert client.bye("Ada") == "Bye, Ada!"
    finally:
        exit_code = server.stop(signal.SIGTERM)
    assert exit_code == 0
    # The reloader's child is gone with its parent: the port is free again.
    probe = zerorpc.Client(f"tcp://127.0.0.1:{port}", timeout=1, heartbeat=None)
    try:
        with pytest.raises(zerorpc.TimeoutExpired):
            probe._zerorpc_ping()
    finally:
        probe.close()


@pytest.mark.parametrize(
    "command",
    [
        ["{python}", "-m", "django", "runrpc", "--settings=mysite.settings"],
        ["{django_admin}", "runrpc", "--settings=mysite.settings", "--pythonpath=."],
    ],
    ids=["python-m-django", "django-admin"],
)
def test_other_ways_to_start_runrpc(shared_project, command):
    from pathlib import Path

    path, env = shared_project
    port = free_port()
    replacements = {
        "{python}": sys.executable,
        "{django_admin}": str(Path(sys.executable).parent / "django-admin"),
    }
    args = [replacements.get(arg, arg) for arg in command] + ["--noreload", str(port)]
    proc = subprocess.Popen(
        args, cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client = zerorpc.Client(f"tcp://127.0.0.1:{port}", timeout=20, heartbeat=5)
        try:
            assert client.hello("Ada") == "Hello, Ada!"
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0, output


def test_a_manage_py_that_changes_sys_path_keeps_working(project):
    """cookiecutter-django's manage.py puts an apps folder on sys.path: the relaunch runs it."""
    path, env = project
    (path / "apps").mkdir()
    (path / "greetings").rename(path / "apps" / "greetings")
    manage = path / "manage.py"
    manage.write_text(
        manage.read_text().replace(
            "import sys\n",
            "import sys\nfrom pathlib import Path\n"
            "sys.path.append(str(Path(__file__).resolve().parent / 'apps'))\n",
            1,
        )
    )
    assert_serves_hello(path, env)
