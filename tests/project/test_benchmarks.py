"""A seconds-long smoke pass of the benchmark runner: it runs and prints its tables.

Speed is never asserted in tests; the runner is documented in docs/benchmarks.rst.
The pass covers every pair that needs no virtualenv of its own (nameko's rows
are skipped with their reason under ``--quick``, and no docs are written), and
gRPC's and zero's when a full run made benchmarks/.grpc-venv and .zero-venv
(``--quick`` makes no virtualenv: without one, its rows are skipped with that
reason). The large workload runs with a 1 MiB value under ``--quick``. The
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
    "AsyncRPCClient -> runrpc, production defaults",
    *PAIRS[9:],
]
GRPC = [
    "gRPC sync -> gRPC server",
    "gRPC aio -> gRPC server",
    "gRPC aio -> gRPC aio server",
]
ZERO = ["zero sync (threads) -> zero server", "zero async -> zero server"]
# The large workload: the floor, zerorpc, both clients against runrpc as
# deployed, and the peers, each with a server of its own.
LARGE = [
    "raw pyzmq -> raw pyzmq",
    "zerorpc -> zerorpc",
    "RPCClient -> runrpc, production defaults",
    "AsyncRPCClient -> runrpc, production defaults",
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
        timeout=240,
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
    zero_skipped = [line for line in lines if line.startswith("skipped: zero rows:")]
    zero = [] if zero_skipped else ZERO
    for callers in ("1", "4"):
        assert by_workload[("echo", callers)] == [
            *ECHO_PAIRS,
            *grpc,
            *zero,
            *WORKERS_ECHO,
            *METRICS_ECHO,
        ]
        assert by_workload[("payload", callers)] == PAIRS + grpc + zero
        assert ("large", callers) not in by_workload  # its own table, below
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
    large = [cells(line) for line in lines if line.startswith("| ") and line.count("|") == 10]
    assert [(pair, callers) for pair, callers, *_ in large[1:]] == [
        (pair, "1") for pair in [*LARGE, *grpc, *zero]
    ]
    for _, _, calls_per_second, mib_per_second, _, client_x, server_x, *_ in large[1:]:
        assert float(calls_per_second.replace(",", "")) > 0
        assert float(mib_per_second.replace(",", "")) > 0
        assert client_x != "-"
        assert server_x != "-"
    assert any(line.startswith("large_echo of 1 MiB of bytes") for line in lines)
    assert any(
        line.startswith("target: RPCClient -> runrpc, production defaults, large (1 MiB)")
        for line in lines
    )
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
        "vs gRPC aio -> gRPC aio server: 1.50x; vs zero sync (threads) -> zero server: "
        "not measured; vs zero async -> zero server: not measured"
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
    every = report.targets({"rows": rows, "streams": []})
    lines = [line for line in every if "uvicorn" in line and "gunicorn" in line]
    assert lines == [
        "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log vs "
        "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log, echo, 16 callers: "
        "not measured in this run",
        "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log vs "
        "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log, echo, 64 callers: "
        "0.45x (target >= 1x: NOT met); gunicorn gevent view with the RPC vs without: 0.80x; "
        "uvicorn async view with the RPC vs without: 0.90x",
    ]
    assert (
        "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log vs "
        "HTTP -> gunicorn gevent view, no RPC (ceiling), echo, 64 callers: 0.80x "
        "(target >= 0.85x: NOT met)"
    ) in every
    assert (
        "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log vs "
        "HTTP -> uvicorn async view, no RPC (ceiling), echo, 64 callers: 0.90x "
        "(target >= 0.85x: met)"
    ) in every


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


def test_zero_and_floor_target_lines_cover_every_number_of_callers():
    made_up = {
        "callers": [1, 64],
        "rows": [
            row("RPCClient -> runrpc, production defaults", 18_000),
            row("zero sync (threads) -> zero server", 6_000),
            row("zero async -> zero server", 20_000),
            row("raw pyzmq -> raw pyzmq", 20_000),
        ],
        "streams": [],
    }
    lines = report.targets(made_up)
    assert (
        "RPCClient -> runrpc, production defaults vs raw pyzmq -> raw pyzmq, echo, 64 callers: "
        "0.90x (target >= 0.85x: met)"
    ) in lines
    assert (
        "RPCClient -> runrpc, production defaults vs raw pyzmq -> raw pyzmq, echo, 1 callers: "
        "not measured in this run (target >= 0.6x)"
    ) in lines
    assert (
        "RPCClient -> runrpc, production defaults vs zero sync (threads) -> zero server, echo, "
        "64 callers: 3.00x (target > 1x: met)"
    ) in lines
    assert (
        "RPCClient -> runrpc, production defaults vs zero async -> zero server, echo, "
        "64 callers: 0.90x (target > 1x: NOT met)"
    ) in lines


def test_large_target_lines_give_bytes_per_second_over_the_floor_and_rss_multiples():
    mib = 1024 * 1024
    rows = [
        {**row(pair, rate), "workload": "large", "callers": 1, "client_us": 1, "server_us": 1}
        for pair, rate in [
            ("raw pyzmq -> raw pyzmq", 50),
            ("RPCClient -> runrpc, production defaults", 45),
        ]
    ]
    rows[0].update(client_rss_kb=40 * 1024, server_rss_kb=30 * 1024)
    rows[1].update(client_rss_kb=25 * 1024, server_rss_kb=35 * 1024)
    made_up = {"rows": rows, "streams": [], "large_bytes": 10 * mib}
    made_up["large"] = report.large_rows(made_up)
    lines = [line for line in report.targets(made_up) if "large (10 MiB)" in line]
    assert lines[:3] == [
        "RPCClient -> runrpc, production defaults, large (10 MiB), 1 caller: 900 MiB/s, "
        "0.90x raw pyzmq -> raw pyzmq's (target >= 0.8x: met)",
        "RPCClient -> runrpc, production defaults, large (10 MiB), 1 caller: the caller's "
        "peak RSS growth 2.5x the value (target < 3x: met)",
        "RPCClient -> runrpc, production defaults, large (10 MiB), 1 caller: the server's "
        "peak RSS growth 3.5x the value (target < 3x: NOT met)",
    ]
    assert lines[3].startswith(
        "AsyncRPCClient -> runrpc, production defaults, large (10 MiB), 1 caller: "
        "not measured in this run"
    )
