"""The gRPC clients of the benchmark, run with benchmarks/.grpc-venv's Python.

    .grpc-venv/bin/python benchmarks/grpc_client.py sync|aio HOST:PORT
        --pids PID --workloads echo,payload --callers 1,16,64 --seconds 5

``sync``: callers are threads sharing one ``grpc.insecure_channel`` (one
HTTP/2 connection, calls multiplexed on it), as gRPC recommends: a channel
is thread-safe and meant to be reused. It is what a Django view running in a
thread (gunicorn gthread, uWSGI, runserver) would do. ``aio``: callers are
tasks on one asyncio loop sharing one ``grpc.aio.insecure_channel``, what an
async view or an asyncio service would do. Both call ``echo`` of
benchmarks/grpc_service.py with msgpack payloads, and print the same JSON as
``benchmarks.clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from benchmarks.common import (
    argument,
    check,
    drive,
    drive_async,
    memory_before,
    memory_growth,
    spawn_threads,
)
from benchmarks.grpc_service import ECHO, OPTIONS, pack, unpack

TIMEOUT = 30.0  # seconds, each call's deadline, as the other clients' timeout=30


def measure_sync(
    target: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    results = []
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        echo = channel.unary_unary(
            ECHO, request_serializer=pack, response_deserializer=unpack, _registered_method=True
        )
        for workload in workloads:

            def call(i: int, workload: str = workload) -> None:
                arg = argument(workload, i)
                check(workload, arg, echo(arg, timeout=TIMEOUT))

            memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
            call(0)  # connect and warm up, outside the measurement
            for n in callers:
                result = drive(call, n, seconds, spawn_threads, pids)
                results.append(
                    {"workload": workload, "callers": n, **result, **memory_growth(memory)}
                )
    return results


async def measure_aio(
    target: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    results = []
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        echo = channel.unary_unary(
            ECHO, request_serializer=pack, response_deserializer=unpack, _registered_method=True
        )
        for workload in workloads:

            async def call(i: int, workload: str = workload) -> None:
                arg = argument(workload, i)
                check(workload, arg, await echo(arg, timeout=TIMEOUT))

            memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
            await call(0)  # connect and warm up, outside the measurement
            for n in callers:
                result = await drive_async(call, n, seconds, pids)
                results.append(
                    {"workload": workload, "callers": n, **result, **memory_growth(memory)}
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sync", "aio"])
    parser.add_argument("target", help="HOST:PORT of benchmarks/grpc_service.py")
    parser.add_argument("--pids", default="")
    parser.add_argument("--workloads", default="echo")
    parser.add_argument("--callers", default="1")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    pids = [int(p) for p in args.pids.split(",") if p]
    workloads = args.workloads.split(",")
    callers = [int(n) for n in args.callers.split(",")]
    if args.mode == "sync":
        results = measure_sync(args.target, pids, workloads, callers, args.seconds)
    else:
        coroutine = measure_aio(args.target, pids, workloads, callers, args.seconds)
        results = asyncio.run(coroutine)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
