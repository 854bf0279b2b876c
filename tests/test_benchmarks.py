"""A seconds-long smoke pass of the benchmark runner: it runs and prints its table.

Speed is never asserted in tests; the runner is documented in README.rst.
"""

import subprocess
import sys

from tests.conftest import ROOT


def test_wire_benchmark_smoke_pass():
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/wire.py",
            "--seconds",
            "0.3",
            "--rounds",
            "1",
            "--callers",
            "4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and "| 4 |" in line
    ]
    assert [row.split(" | ")[0] for row in rows] == [
        "| raw pyzmq -> raw pyzmq",
        "| zerorpc -> zerorpc",
        "| zerorpc -> runrpc",
        "| django_zrpc -> zerorpc",
        "| django_zrpc -> runrpc",
        "| django_zrpc -> runrpc, no call log",
    ]
    for row in rows:
        calls_per_second = float(row.split(" | ")[2].replace(",", ""))
        assert calls_per_second > 0
