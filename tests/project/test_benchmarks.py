"""A seconds-long smoke pass of the benchmark runner: it runs and prints its tables.

Speed is never asserted in tests; the runner is documented in docs/benchmarks.rst.
The pass covers every pair that needs no virtualenv of its own (nameko's rows
are skipped with their reason under ``--quick``, and no docs are written), and
gRPC's when benchmarks/.grpc-venv was made by a full run (``--quick`` makes no
virtualenv: without it, the gRPC rows are skipped with that reason). The
target lines' ratios are checked on made-up rows, which need no run.
"""

import subprocess
import sys

from benchmarks import report
from tests.conftest import ROOT

PAIRS = [
    "raw pyzmq -> raw pyzmq",
    "zerorpc -> zerorpc",
    "zerorpc per call -> zerorpc",
    "zerorpc -> runrpc",
    "zerorpc -> runrpc, no call log",
    "zerorpc per call -> runrpc, no call log",
    "django_zrpc client -> runrpc, no call log",
    "RPCClient -> runrpc",
    "RPCClient -> runrpc, no call log",
    "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log",
    "HTTP -> gunicorn gevent view, no RPC (ceiling)",
    "AsyncRPCClient -> runrpc, no call log",
    "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log",
    "HTTP -> uvicorn async view, no RPC (ceiling)",
]
# The web servers' ceilings answer echo and payload alone.
NO_RAW = [p for p in PAIRS[1:] if not p.endswith("(ceiling)")]
# Echo alone: runrpc as deployed with the defaults (issue 17), after the target pair.
ECHO_PAIRS = [
    *PAIRS[:9],
    "RPCClient as a user -> runrpc, no call log",
    "RPCClient -> runrpc, production defaults",
    *PAIRS[9:],
]
GRPC = [
    "gRPC sync -> gRPC server",
    "gRPC aio -> gRPC server",
    "gRPC aio -> gRPC aio server",
]
# runrpc --workers: echo on one process with and without --workers; the 2 ms
# function on --workers 1 and 2.
WORKERS_ECHO = [
    "RPCClient -> runrpc (no --workers), no call log",
    "RPCClient -> runrpc --workers 1, no call log",
]
# runrpc --ops (issue 17): echo with the server's metrics on.
METRICS_ECHO = ["RPCClient -> runrpc, no call log, metrics on"]
WORKERS_BURN = [
    "RPCClient -> runrpc --workers 1, no call log (burn)",
    "RPCClient -> runrpc --workers 2, no call log (burn)",
]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_benchmark_runner_smoke_pass():
    docs = (ROOT / "docs" / "benchmarks.rst").read_text()
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--http-client", "python"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    rows = [cells(line) for line in lines if line.startswith("| ") and line.count("|") == 12]
    by_workload: dict[tuple[str, str], list[str]] = {}
    for workload, pair, callers, calls_per_second, *_ in rows[1:]:
        assert float(calls_per_second.replace(",", "")) > 0, (workload, pair, callers)
        by_workload.setdefault((workload, callers), []).append(pair)
    grpc_skipped = [line for line in lines if line.startswith("skipped: gRPC rows:")]
    grpc = [] if grpc_skipped else GRPC
    for callers in ("1", "4"):
        assert by_workload[("echo", callers)] == [
            *ECHO_PAIRS,
            *grpc,
            *WORKERS_ECHO,
            *METRICS_ECHO,
        ]
        assert by_workload[("payload", callers)] == PAIRS + grpc
        assert by_workload[("burn", callers)] == WORKERS_BURN
        if any(line.startswith("skipped: get_ticket rows:") for line in lines):
            assert ("get_ticket", callers) not in by_workload
        else:
            expected = [p for p in NO_RAW if p not in ("zerorpc -> runrpc", "RPCClient -> runrpc")]
            assert by_workload[("get_ticket", callers)] == expected

    streams = [cells(line) for line in lines if line.startswith("| ") and line.count("|") == 9]
    assert [(rows, pair) for rows, pair, *_ in streams[1:]] == [
        ("500", "zerorpc -> zerorpc"),
        ("500", "RPCClient -> runrpc, no call log"),
        ("1,000", "zerorpc -> zerorpc"),
        ("1,000", "RPCClient -> runrpc, no call log"),
    ]
    for _, _, rows_per_second, _, _, peak_rss, *_ in streams[1:]:
        assert float(rows_per_second.replace(",", "")) > 0
        assert float(peak_rss) > 0
    assert any(line.startswith("skipped: nameko rows:") for line in lines)
    assert any(line.startswith("target: ") for line in lines)
    assert (ROOT / "docs" / "benchmarks.rst").read_text() == docs


def row(pair: str, rate: float) -> dict:
    """A made-up echo row at 64 callers, for the target lines."""
    return {"pair": pair, "callers": 64, "workload": "echo", "rate": rate}


def test_target_lines_give_ratios_to_raw_pyzmq_zerorpc_and_grpc():
    rows = [
        row("RPCClient -> runrpc, no call log", 12_000),
        row("zerorpc -> zerorpc", 1_500),
        row("raw pyzmq -> raw pyzmq", 20_000),
        row("gRPC sync -> gRPC server", 3_000),
        row("gRPC aio -> gRPC aio server", 8_000),
    ]
    lines = report.targets({"rows": rows, "streams": []})
    assert lines[0] == (
        "RPCClient -> runrpc, no call log vs zerorpc -> zerorpc, echo, 64 callers: 8.0x "
        "(target >= 8x: met); vs raw pyzmq -> raw pyzmq: 0.60x; "
        "vs gRPC sync -> gRPC server: 4.00x; vs gRPC aio -> gRPC server: not measured; "
        "vs gRPC aio -> gRPC aio server: 1.50x"
    )
    assert lines[1] == (
        "RPCClient -> runrpc, no call log vs zerorpc -> zerorpc, echo, 16 callers: "
        "not measured in this run (target >= 5x)"
    )


def test_web_target_line_gives_each_row_over_its_ceiling():
    rows = [
        row("HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log", 2_000),
        row("HTTP -> gunicorn gevent view, no RPC (ceiling)", 2_500),
        row("HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log", 900),
        row("HTTP -> uvicorn async view, no RPC (ceiling)", 1_000),
    ]
    lines = [line for line in report.targets({"rows": rows, "streams": []}) if "uvicorn" in line]
    assert lines == [
        "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log vs "
        "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log, echo, 16 callers: "
        "not measured in this run",
        "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log vs "
        "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log, echo, 64 callers: "
        "0.45x (target >= 1x: NOT met); gunicorn gevent view with the RPC vs without: 0.80x; "
        "uvicorn async view with the RPC vs without: 0.90x",
    ]


def test_the_as_user_target_line_is_the_ratio_to_the_same_echo_anonymous():
    made_up = {"rows": [row("RPCClient -> runrpc, no call log", 10_000)], "streams": []}
    made_up["rows"].append(row("RPCClient as a user -> runrpc, no call log", 9_000))
    lines = [line for line in report.targets(made_up) if line.startswith("RPCClient as a user")]
    assert (
        "RPCClient as a user -> runrpc, no call log vs anonymous, echo, 64 callers: 0.90x "
        "(target >= 0.85x: met)"
    ) in lines


def test_contract_target_lines_give_typed_over_untyped_and_the_servers_cpu():
    rows = [
        {
            **row("RPCClient -> runrpc, no call log", rate),
            "workload": w,
            "callers": 16,
            "server_us": us,
        }
        for w, rate, us in [
            ("echo_typed", 9_000, 35),
            ("echo_str", 10_000, 33),
            ("order_typed", 3_000, 111),
            ("order", 5_000, 94),
        ]
    ]
    lines = [
        line
        for line in report.targets({"rows": rows, "streams": []})
        if " vs echo_str" in line or " vs order" in line
    ]
    assert lines == [
        "RPCClient -> runrpc, no call log, echo_typed vs echo_str, 16 callers: 0.90x "
        "(target >= 0.9x: met); server CPU per call 35 vs 33 µs",
        "RPCClient -> runrpc, no call log, order_typed vs order, 16 callers: 0.60x "
        "(target >= 0.7x: NOT met); server CPU per call 111 vs 94 µs",
    ]
    assert "echo_typed vs echo_str: not measured in this run (target >= 0.9x)" in "\n".join(
        report.targets({"rows": [], "streams": []})
    )
