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

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from benchmarks.common import (
    argument,
    check,
    measure_workloads,
    measure_workloads_async,
    peer_arguments,
)
from benchmarks.grpc_service import ECHO, OPTIONS, pack, unpack

TIMEOUT = 30.0  # seconds, each call's deadline, as the other clients' timeout=30


def measure_sync(
    target: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        echo = channel.unary_unary(
            ECHO, request_serializer=pack, response_deserializer=unpack, _registered_method=True
        )

        def call_for(workload: str) -> Callable[[int], None]:
            def call(i: int) -> None:
                arg = argument(workload, i)
                check(workload, arg, echo(arg, timeout=TIMEOUT))

            return call

        return measure_workloads(call_for, workloads, callers, seconds, pids)


async def measure_aio(
    target: str, pids: list[int], workloads: list[str], callers: list[int], seconds: float
) -> list[dict]:
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        echo = channel.unary_unary(
            ECHO, request_serializer=pack, response_deserializer=unpack, _registered_method=True
        )

        def call_for(workload: str) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                arg = argument(workload, i)
                check(workload, arg, await echo(arg, timeout=TIMEOUT))

            return call

        return await measure_workloads_async(call_for, workloads, callers, seconds, pids)


def main() -> None:
    args = peer_arguments(["sync", "aio"], "HOST:PORT of benchmarks/grpc_service.py")
    measured = (args.target, args.pids, args.workloads, args.callers, args.seconds)
    if args.mode == "sync":
        results = measure_sync(*measured)
    else:
        results = asyncio.run(measure_aio(*measured))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
