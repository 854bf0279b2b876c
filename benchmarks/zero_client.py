"""The zero clients of the benchmark, run with benchmarks/.zero-venv's Python.

    .zero-venv/bin/python benchmarks/zero_client.py sync|async HOST:PORT
        --pids PID,... --workloads echo,payload,large --callers 1,16,64 --seconds 5

``sync``: callers are threads sharing one ``ZeroClient``. A ZeroClient is
not one connection: it keeps a DEALER socket per thread (its pool is keyed
by the thread's id, and zero's docs say "for different threads/processes,
different connections are created"), so sharing it between threads is how
zero is meant to be called concurrently, each thread with its own socket
and one call at a time on it. ``async``: callers are tasks on one asyncio
loop sharing one ``AsyncZeroClient`` (one DEALER, its replies matched to the
calls by id). Both call benchmarks/zero_service.py and print the same JSON
as ``benchmarks.clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zero import AsyncZeroClient, ZeroClient

from benchmarks.common import (
    argument,
    check,
    drive,
    drive_async,
    memory_before,
    memory_growth,
    spawn_threads,
)

TIMEOUT_MS = 30_000  # each call's timeout, as the other clients' timeout=30
# zero dispatches by name, one function per argument type (zero_service.py).
FUNCTION = {"echo": "echo", "payload": "payload", "large": "large_echo"}


def measure_sync(
    host: str, port: int, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    client = ZeroClient(host, port, default_timeout=TIMEOUT_MS)
    results = []
    try:
        for workload in workloads:

            def call(i: int, workload: str = workload) -> None:
                arg = argument(workload, i)
                check(workload, arg, client.call(FUNCTION[workload], arg))

            memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
            call(0)  # connect and warm up, outside the measurement
            for n in callers:
                result = drive(call, n, seconds, spawn_threads, pids)
                results.append(
                    {"workload": workload, "callers": n, **result, **memory_growth(memory)}
                )
    finally:
        client.close()
    return results


async def measure_async(
    host: str, port: int, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    client = AsyncZeroClient(host, port, default_timeout=TIMEOUT_MS)
    results = []
    try:
        for workload in workloads:

            async def call(i: int, workload: str = workload) -> None:
                arg = argument(workload, i)
                check(workload, arg, await client.call(FUNCTION[workload], arg))

            memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
            await call(0)  # connect and warm up, outside the measurement
            for n in callers:
                result = await drive_async(call, n, seconds, pids)
                results.append(
                    {"workload": workload, "callers": n, **result, **memory_growth(memory)}
                )
    finally:
        client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sync", "async"])
    parser.add_argument("target", help="HOST:PORT of benchmarks/zero_service.py")
    parser.add_argument("--pids", default="")
    parser.add_argument("--workloads", default="echo")
    parser.add_argument("--callers", default="1")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    pids = [int(p) for p in args.pids.split(",") if p]
    workloads = args.workloads.split(",")
    callers = [int(n) for n in args.callers.split(",")]
    if args.mode == "sync":
        results = measure_sync(host, int(port), pids, workloads, callers, args.seconds)
    else:
        coroutine = measure_async(host, int(port), pids, workloads, callers, args.seconds)
        results = asyncio.run(coroutine)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
