"""Fixtures that start real ``runrpc`` processes and talk to them over TCP."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zerorpc
import zmq

from django_zrpc.wire import protocol
from tests.redis_server import redis_server  # noqa: F401 - a fixture for every test module

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
SETTINGS = "tests.settings"


# Each pytest-xdist worker hands out ports from a range of its own, below the
# kernel's ephemeral ports (32768 and up): a port one worker uses for a
# server that is down on purpose (its clients keep trying to connect) is never
# another worker's live server, and no two workers race for the same port.
# ZRPC_TEST_FIRST_PORT and ZRPC_TEST_PORTS_PER_WORKER move the ranges, so that
# two checkouts can run their suites side by side on one machine.
_PORTS_PER_WORKER = int(os.environ.get("ZRPC_TEST_PORTS_PER_WORKER", "2500"))
_FIRST_PORT = int(os.environ.get("ZRPC_TEST_FIRST_PORT", "12000"))
_port_turn = itertools.count()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now, from this worker's range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = _FIRST_PORT + (index % 8) * _PORTS_PER_WORKER
    for _ in range(_PORTS_PER_WORKER):
        port = first + next(_port_turn) % _PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (a server of this worker, or another service)
            return port
    raise RuntimeError(f"No free port in {first}-{first + _PORTS_PER_WORKER - 1}.")


class ServerProcess:
    """A ``manage.py runrpc`` child process and everything it printed."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        port: int,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.port = port
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runrpc", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def mark(self) -> int:
        """Return where the output is now, for ``wait_for(..., since=)`` and ``output_since``.

        A server shared by a module's tests has printed for the tests before:
        a test reads only what came after its mark.
        """
        return len(self.lines)

    def output_since(self, mark: int) -> str:
        return "\n".join(self.lines[mark:])

    def wait_for(self, text: str, timeout: float = STARTUP_TIMEOUT, since: int = 0) -> None:
        """Wait until a line printed after ``since`` contains ``text``; fail if the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[since:]):
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                pytest.fail(
                    f"runrpc exited ({self.proc.returncode}) before {text!r}:\n{self.output}"
                )
            time.sleep(0.05)
        pytest.fail(f"runrpc did not print {text!r} within {timeout}s:\n{self.output}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``signum`` to the process we started and return its exit code."""
        self.signal(signum)
        return self.wait_stopped(timeout)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` if the process still runs; do not wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait_stopped(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit after a signal; kill it and fail after ``timeout``."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"runrpc did not stop within {timeout}s of a signal:\n{self.output}")
        self._reader.join(5)
        return self.proc.returncode

    @contextmanager
    def client(self, timeout: float = 10, heartbeat: float = 5) -> Iterator[zerorpc.Client]:
        client = zerorpc.Client(self.endpoint, timeout=timeout, heartbeat=heartbeat)
        try:
            yield client
        finally:
            client.close()


def raw_dealer(endpoint: str) -> zmq.Socket:
    """A bare ZeroMQ DEALER: a zerorpc peer that does only what the test makes it do."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(endpoint)
    return sock


def request(name: str, args: list, message_id: bytes = b"m" * 32) -> bytes:
    """The blob of a zerorpc v3 request event."""
    return protocol.pack(name, args, {"message_id": message_id, "v": 3})


def abandon_call(server: ServerProcess, name: str, *args: object) -> None:
    """Call ``name``, then go silent; return once the server has given the call up.

    Two heartbeats 0.2 s apart first: the server judges a caller by the
    longer of its own period and the caller's, zerorpc's 5 s until the
    caller's heartbeats show it, so a caller that never beat would be lost
    only after 10 s.
    """
    mark = server.mark()
    message_id = b"a" * 32
    sock = raw_dealer(server.endpoint)
    try:
        sock.send_multipart([b"", request(name, list(args), message_id)])
        for number in range(2):
            beat = {"message_id": b"b%031d" % number, "v": 3, "response_to": message_id}
            sock.send_multipart([b"", protocol.pack(protocol.HEARTBEAT, [0], beat)])
            time.sleep(0.2)
        server.wait_for(f"rpc {name} lost its caller", timeout=15, since=mark)
    finally:
        sock.close()


def slowest_failure(call, error: type[BaseException], count: int) -> float:
    """Make ``count`` calls that must each raise ``error``; return the slowest one's seconds."""
    slowest = 0.0
    for _ in range(count):
        started = time.monotonic()
        with pytest.raises(error):
            call()
        slowest = max(slowest, time.monotonic() - started)
    return slowest


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a process the tests start: the tests' settings, unbuffered output."""
    env = dict(os.environ)
    # manage.py and testproject.wsgi default to the demo's settings, without the probes.
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """Create the test database for every session, not only for django_db tests.

    pytest-django sets up only the databases that marked tests use; the tests
    here mostly reach the database through runrpc processes instead.
    ``django_db_modify_db_settings`` gives each pytest-xdist worker a database
    of its own (``test_test_gw0``, ...).
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def live_database_url(django_db_setup, django_db_blocker) -> str:
    """Return a DATABASE_URL for the test database, with demo tickets committed in it."""
    from django.core.management import call_command
    from django.db import connection

    with django_db_blocker.unblock():
        call_command("load_demo_tickets", count=300, stdout=open(os.devnull, "w"))
        db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


@pytest.fixture(scope="session")
def _stopping_servers(django_db_setup) -> Iterator[list[ServerProcess]]:
    """Servers sent SIGTERM at their fixture's teardown; wait for them at the session's end.

    A server takes its 0.5 s linger and more to exit: the next tests run
    meanwhile instead of waiting. This fixture depends on django_db_setup so
    that every server has exited before the test database is dropped.
    """
    stopping: list[ServerProcess] = []
    yield stopping
    for server in stopping:
        server.wait_stopped()


@contextmanager
def _server_starter(database_url: str, stopping: list[ServerProcess]) -> Iterator:
    """Yield ``start(*args, cwd=, wait=, port=, **env)``; on exit, SIGTERM what it started."""
    started: list[ServerProcess] = []

    def start(
        *args: str,
        cwd: Path = ROOT,
        wait: bool = True,
        port: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
        **env: str,
    ) -> ServerProcess:
        port = port or free_port()
        env.setdefault("DATABASE_URL", database_url)
        server = ServerProcess(
            ["--noreload", *args, f"127.0.0.1:{port}"], subprocess_env(**env), cwd, port, preexec_fn
        )
        started.append(server)
        if wait:
            server.wait_for("Serving ")
        return server

    try:
        yield start
    finally:
        for server in started:
            server.signal()
        stopping.extend(started)


@pytest.fixture
def start_server(live_database_url, _stopping_servers):
    """Start ``manage.py runrpc --noreload`` on a free port, for this test only.

    For a test that kills, stops or reconfigures its server; tests that only
    call a server share the module's ``server``.
    """
    with _server_starter(live_database_url, _stopping_servers) as start:
        yield start


@pytest.fixture(scope="module")
def start_module_server(live_database_url, _stopping_servers):
    """Start a runrpc server that the module's tests share; stop it after the module."""
    with _server_starter(live_database_url, _stopping_servers) as start:
        yield start


@pytest.fixture(scope="module")
def server(start_module_server) -> ServerProcess:
    """A runrpc server of the tests' settings with a 1 s heartbeat, shared by the module.

    A process start costs about a second, so the module's tests share one:
    use it only in tests that leave it as they found it (no signals, no
    settings of their own), and read its log from ``server.mark()`` on.
    """
    return start_module_server("--heartbeat", "1")


@pytest.fixture
def project_settings(tmp_path):
    """Write a settings module extending the tests' settings; return runrpc's args and env."""

    def make(**overrides: object) -> tuple[list[str], dict[str, str]]:
        lines = [f"from {SETTINGS} import *"]
        lines += [f"{name} = {value!r}" for name, value in overrides.items()]
        (tmp_path / "override_settings.py").write_text("\n".join(lines) + "\n")
        return ["--settings=override_settings"], {"PYTHONPATH": str(tmp_path)}

    return make


def is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


requires_postgres = pytest.mark.skipif(
    not is_postgres(),
    reason="needs PostgreSQL: set DATABASE_URL=postgres://user@127.0.0.1:5432/test",
)
