"""The server's room holds modules of one job each, and runrpc is a thin command over it.

The limits are the layout's: a module past 400 lines, a class past 300 or a
function past 60 does more than one job. runrpc only parses, checks and
prints: what serves is in ``server/runner.py``, where a test of the server
can reach it without the command.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "django_zrpc"
SERVING = [
    "server/engine.py",
    "server/state.py",
    "server/routing.py",
    "server/workers.py",
    "server/callers.py",
    "server/call_log.py",
    "server/runner.py",
    "server/run_logging.py",
    "management/commands/runrpc.py",
]
LIMITS = {ast.ClassDef: 300, ast.FunctionDef: 60}


def _too_long(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        limit = LIMITS.get(type(node))
        if limit is not None and node.end_lineno - node.lineno + 1 > limit:
            yield f"{node.name}: {node.end_lineno - node.lineno + 1} lines (limit {limit})"


@pytest.mark.parametrize("module", SERVING)
def test_each_module_that_serves_is_of_one_job(module):
    path = PACKAGE / module
    assert path.exists(), f"{module} is missing"
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{module} has {lines} lines (limit 400)"
    assert list(_too_long(path)) == []


def test_runrpc_leaves_serving_to_the_runner():
    source = (PACKAGE / "management/commands/runrpc.py").read_text()
    for name in ("build_server", "Supervisor", "zmq", "signal_handler", "ops.serve"):
        assert name not in source, f"runrpc.py still does the runner's job: {name}"


def test_the_server_is_built_of_its_jobs_and_the_stall_watch_finds_the_call():
    from django_zrpc.server.engine import Server
    from django_zrpc.server.workers import Workers

    # StallWatch names the call by the frame of Server._execute: it must be
    # the function the workers run.
    assert Server._execute is Workers._execute
    assert {"Routing", "Workers", "Callers", "CallLog", "State"} <= {
        cls.__name__ for cls in Server.__mro__
    }
