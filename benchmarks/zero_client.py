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

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zero import AsyncZeroClient, ZeroClient

from benchmarks.common import (
    argument,
    check,
    measure_workloads,
    measure_workloads_async,
    peer_arguments,
)

TIMEOUT_MS = 30_000  # each call's timeout, as the other clients' timeout=30
# zero dispatches by name, one function per argument type (zero_service.py).
FUNCTION = {"echo": "echo", "payload": "payload", "large": "large_echo"}


def measure_sync(
    host: str, port: int, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    client = ZeroClient(host, port, default_timeout=TIMEOUT_MS)

    def call_for(workload: str) -> Callable[[int], None]:
        def call(i: int) -> None:
            arg = argument(workload, i)
            check(workload, arg, client.call(FUNCTION[workload], arg))

        return call

    try:
        return measure_workloads(call_for, workloads, callers, seconds, pids)
    finally:
        client.close()


async def measure_async(
    host: str, port: int, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    client = AsyncZeroClient(host, port, default_timeout=TIMEOUT_MS)

    def call_for(workload: str) -> Callable[[int], Awaitable[None]]:
        async def call(i: int) -> None:
            arg = argument(workload, i)
            check(workload, arg, await client.call(FUNCTION[workload], arg))

        return call

    try:
        return await measure_workloads_async(call_for, workloads, callers, seconds, pids)
    finally:
        client.close()


def main() -> None:
    args = peer_arguments(["sync", "async"], "HOST:PORT of benchmarks/zero_service.py")
    host, port = args.target.rsplit(":", 1)
    measured = (host, int(port), args.pids, args.workloads, args.callers, args.seconds)
    if args.mode == "sync":
        results = measure_sync(*measured)
    else:
        results = asyncio.run(measure_async(*measured))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
