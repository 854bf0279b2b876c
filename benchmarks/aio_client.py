"""The ``asyncrpcclient`` kind of the benchmark's clients: AsyncRPCClient on asyncio.

Callers are asyncio tasks sharing one client, in a process with no gevent;
the figures are those of ``benchmarks.common.drive`` (calls, seconds, CPU of
this process and of the servers, p50/p99).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from benchmarks.common import (
    MAX_CALLS,
    METHOD,
    SETTINGS,
    argument,
    check,
    memory_before,
    memory_growth,
    own_cpu,
    processes_cpu,
    summary,
)


def measure(
    endpoint: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()
    return asyncio.run(_measure(endpoint, pids, workloads, callers, seconds))


async def _measure(
    endpoint: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    from django_zrpc import AsyncRPCClient

    results = []
    async with AsyncRPCClient(endpoint, timeout=30) as client:  # the default pool
        for workload in workloads:
            memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
            await _one(client, workload, 0)  # connect and warm up, outside the measurement
            for n in callers:
                result = await _drive(client, workload, n, seconds, pids)
                results.append(
                    {"workload": workload, "callers": n, **result, **memory_growth(memory)}
                )
    return results


async def _one(client: Any, workload: str, i: int) -> None:
    arg = argument(workload, i)
    check(workload, arg, await client(METHOD[workload], arg))


async def _drive(client: Any, workload: str, callers: int, seconds: float, pids: list[int]) -> dict:
    latencies: list[float] = []
    counter = [0]
    deadline = time.monotonic() + seconds
    per_caller = MAX_CALLS // callers

    async def loop() -> None:
        for _ in range(per_caller):
            if time.monotonic() >= deadline:
                return
            i = counter[0]
            counter[0] += 1
            started = time.perf_counter()
            await _one(client, workload, i)
            latencies.append(time.perf_counter() - started)

    server_cpu = processes_cpu(pids)
    cpu = own_cpu()
    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return summary(
        len(latencies),
        time.monotonic() - started,
        own_cpu() - cpu,
        processes_cpu(pids) - server_cpu,
        latencies,
    )
