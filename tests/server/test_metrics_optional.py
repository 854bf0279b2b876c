"""prometheus_client is optional: without it, --ops fails in one line naming the extra."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, free_port, subprocess_env
from tests.ops_http import get, wait_until

INSTALL = 'pip install "django-zrpc[metrics]"'


def hidden_prometheus(tmp_path, **settings: object) -> dict[str, str]:
    """An environment where ``import prometheus_client`` fails, as where it is not installed."""
    package = tmp_path / "prometheus_client"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'prometheus_client'\")\n"
    )
    lines = ["from tests.settings import *", *(f"{k} = {v!r}" for k, v in settings.items())]
    (tmp_path / "hidden_settings.py").write_text("\n".join(lines) + "\n")
    return subprocess_env(PYTHONPATH=str(tmp_path), DJANGO_SETTINGS_MODULE="hidden_settings")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_runrpc_ops_without_prometheus_client_is_a_one_line_error(tmp_path):
    env = hidden_prometheus(tmp_path)
    ports = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    done = manage(env, "runrpc", "--noreload", "--ops", *ports)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("CommandError: Metrics need prometheus_client")
    assert INSTALL in done.stderr


def test_the_system_check_says_so_when_metrics_are_asked_for(tmp_path):
    env = hidden_prometheus(tmp_path, ZRPC_METRICS=True)
    done = manage(env, "check")
    assert done.returncode == 1
    assert "django_zrpc.E019" in done.stderr
    assert INSTALL in done.stderr


def test_health_alone_needs_no_prometheus_client(tmp_path, live_database_url):
    env = hidden_prometheus(tmp_path, ZRPC_METRICS=False)
    env["DATABASE_URL"] = live_database_url
    ops = f"http://127.0.0.1:{free_port()}"
    args = [
        "runrpc",
        "--noreload",
        "--ops",
        ops.removeprefix("http://"),
        f"127.0.0.1:{free_port()}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answered() -> tuple[int, str] | None:
            try:
                return get(f"{ops}/readyz", timeout=1)
            except OSError:
                return None

        assert wait_until(answered, 30, "/readyz answered") == (200, "ready\n")
        assert get(f"{ops}/metrics")[0] == 404
    finally:
        proc.terminate()
        proc.wait(15)
