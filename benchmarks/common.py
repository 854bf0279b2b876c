"""Helpers shared by the runner and every client process, nameko's and gRPC's included.

Standard library only: ``nameko_client.py`` and ``grpc_client.py`` import this
module from their own virtualenvs, where neither Django nor gevent is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "benchmarks.settings"  # DJANGO_SETTINGS_MODULE of every Django process of the benchmarks
TICKS = os.sysconf("SC_CLK_TCK")

PAYLOAD = "x" * 10_240  # the 10 KB workload: one string, so that JSON (nameko) carries it too
TICKET_IDS = 1_000  # get_ticket cycles through ids 1..TICKET_IDS
METHOD = {
    "echo": "echo",
    "payload": "echo",
    "get_ticket": "get_ticket",
    "burn": "burn",
    "echo_str": "echo",
    "echo_typed": "echo_typed",
    "order": "order",
    "order_typed": "order_typed",
    "large": "large_echo",
}
BURN_MS = 2  # the CPU each call of the burn workload costs the server  # what each calls
ORDER_ITEMS = 100  # the items of one order, in the order and order_typed workloads
ORDER = [{"sku": f"sku-{i}", "qty": 1 + i % 5} for i in range(ORDER_ITEMS)]
MAX_CALLS = 50_000_000  # every measuring loop also stops after this many calls
# The large workload's value: 10 MiB of random bytes (incompressible, so that no
# layer can shrink it), echoed back. ``run.py --quick`` sets the environment
# variable to 1 MiB, so that CI's smoke pass stays seconds long.
LARGE_BYTES_VARIABLE = "ZRPC_BENCH_LARGE_BYTES"
LARGE_BYTES = 10 * 1024 * 1024
# Callers of the large workload: one moves 20 MiB a call, more would measure
# the machine's memory rather than the RPC.
LARGE_CALLERS = [1]

WORKLOADS = {
    "echo": "echo of a small int",
    "payload": "echo of a 10 KB string",
    "get_ticket": "get_ticket: a PostgreSQL read by primary key",
    "burn": f"burn: {BURN_MS} ms of the server's CPU per call",
    # A function's contract (its type hints) against the same function untyped:
    # what validating a call costs.
    "echo_str": "echo of a short string, untyped",
    "echo_typed": "echo_typed(x: str) -> str, validated",
    "order": f"order of {ORDER_ITEMS} items (maps), untyped",
    "order_typed": f"order_typed of {ORDER_ITEMS} items, each validated into a dataclass",
    "large": "large_echo of 10 MiB of bytes (1 MiB under --quick), echoed back",
}


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_cpu() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def processes_cpu(pids: Iterable[int]) -> float:
    return sum(process_cpu(pid) for pid in pids)


def status_kb(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-like field of /proc/PID/status, in kB (0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (gunicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def large_bytes() -> int:
    """The size of the large workload's value in this run, in bytes."""
    return int(os.environ.get(LARGE_BYTES_VARIABLE, LARGE_BYTES))


@functools.cache
def _large_value() -> bytes:
    return os.urandom(large_bytes())


def memory_before(workload: str, pids: Iterable[int]) -> dict[int, int]:
    """The RSS of this process and of ``pids`` before a workload's first call, in kB.

    The workload's value is made first, so that what the calls add is what
    :func:`memory_growth` reports, not the caller's own value. Each peak is
    then reset (``/proc/PID/clear_refs``), so that a peak of the process's
    start-up is not taken for one of the calls.
    """
    argument(workload, 0)
    before = {}
    for pid in [os.getpid(), *pids]:
        before[pid] = status_kb(pid, "VmRSS")
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:  # an older kernel, or not ours: the peak since start-up
            pass
    return before


def memory_growth(before: dict[int, int]) -> dict:
    """Peak RSS (``VmHWM``) now minus the RSS :func:`memory_before` read, in kB.

    ``client_rss_kb``: this process's; ``server_rss_kb``: the servers', summed
    over their processes (zero's broker and worker, gunicorn and its workers).
    """
    me, *servers = before
    return {
        "client_rss_kb": status_kb(me, "VmHWM") - before[me],
        "server_rss_kb": sum(status_kb(pid, "VmHWM") - before[pid] for pid in servers),
    }


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def argument(workload: str, i: int) -> Any:
    """The argument of call number ``i`` of a workload."""
    if workload == "echo":
        return 1
    if workload == "payload":
        return PAYLOAD
    if workload == "get_ticket":
        return 1 + i % TICKET_IDS
    if workload == "burn":
        return BURN_MS
    if workload in ("echo_str", "echo_typed"):
        return "x"
    if workload in ("order", "order_typed"):
        return ORDER
    if workload == "large":
        return _large_value()
    raise ValueError(f"unknown workload {workload!r}")


def check(workload: str, arg: Any, result: Any) -> None:
    """Fail loudly on a wrong answer: a benchmark of wrong answers measures nothing."""
    if workload == "get_ticket":
        ok = isinstance(result, dict) and result.get("id") == arg
    elif workload in ("order", "order_typed"):
        ok = result == sum(item["qty"] for item in arg)
    elif workload == "large":  # bytes, not a bytearray or a str; a memcmp is cheap
        ok = type(result) is bytes and result == arg
        arg = f"{len(arg):,} bytes"
    else:
        ok = result == arg
    if not ok:
        raise AssertionError(f"{workload}: wrong answer {str(result)[:80]!r} for {arg!r}")


def spawn_threads(loop: Callable[[int], None], n: int) -> None:
    """Run ``loop(0)`` .. ``loop(n - 1)`` in threads; raise the first error of any."""
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            loop(index)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def drive(
    call: Callable[[int], None],
    callers: int,
    seconds: float,
    spawn_all: Callable[[Callable[[int], None], int], None],
    server_pids: list[int],
) -> dict:
    """Let ``callers`` green threads run ``call(i)`` in a loop for ``seconds``.

    ``spawn_all(loop, n)`` runs ``loop(0)`` .. ``loop(n - 1)`` concurrently and
    returns when all have ended (gevent or eventlet does that).
    Returns calls, elapsed seconds, CPU seconds of this process and of the
    servers in the window, and the latency percentiles in milliseconds.
    """
    latencies: list[float] = []
    counter = [0]
    deadline = time.monotonic() + seconds
    per_caller = MAX_CALLS // callers

    def loop(index: int) -> None:
        for _ in range(per_caller):
            if time.monotonic() >= deadline:
                return
            i = counter[0]
            counter[0] += 1
            started = time.perf_counter()
            call(i)
            latencies.append(time.perf_counter() - started)

    server_cpu = processes_cpu(server_pids)
    cpu = own_cpu()
    started = time.monotonic()
    spawn_all(loop, callers)
    return summary(
        len(latencies),
        time.monotonic() - started,
        own_cpu() - cpu,
        processes_cpu(server_pids) - server_cpu,
        latencies,
    )


async def drive_async(
    call: Callable[[int], Awaitable[None]],
    callers: int,
    seconds: float,
    server_pids: list[int],
) -> dict:
    """:func:`drive` for asyncio clients: ``callers`` tasks on the running loop.

    Each task awaits ``call(i)`` in a loop for ``seconds``; the figures are
    those of :func:`drive`. Used by gRPC's ``grpc.aio`` client, and meant for
    any asyncio client of the benchmark (``AsyncRPCClient``'s, issue 16).
    """
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
            await call(i)
            latencies.append(time.perf_counter() - started)

    server_cpu = processes_cpu(server_pids)
    cpu = own_cpu()
    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return summary(
        len(latencies),
        time.monotonic() - started,
        own_cpu() - cpu,
        processes_cpu(server_pids) - server_cpu,
        latencies,
    )


def summary(
    calls: int, elapsed: float, cpu: float, server_cpu: float, latencies: list[float]
) -> dict:
    latencies.sort()
    return {
        "calls": calls,
        "seconds": elapsed,
        "cpu": cpu,
        "server_cpu": server_cpu,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def peer_arguments(modes: list[str], target_help: str) -> argparse.Namespace:
    """The command line of a peer's client process: ``MODE TARGET`` and the runner's options.

    ``pids``, ``workloads`` and ``callers`` come parsed into lists.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=modes)
    parser.add_argument("target", help=target_help)
    parser.add_argument("--pids", default="")
    parser.add_argument("--workloads", default="echo")
    parser.add_argument("--callers", default="1")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    args.pids = [int(p) for p in args.pids.split(",") if p]
    args.workloads = args.workloads.split(",")
    args.callers = [int(n) for n in args.callers.split(",")]
    return args


def measure_workloads(
    call_for: Callable[[str], Callable[[int], None]],
    workloads: list[str],
    callers: list[int],
    seconds: float,
    pids: list[int],
) -> list[dict]:
    """Drive ``call_for(workload)`` on threads at each number of callers; return the figures.

    Each workload's memory is read before its warm-up call, whose peak is one
    of the calls'.
    """
    results = []
    for workload in workloads:
        call = call_for(workload)
        memory = memory_before(workload, pids)
        call(0)  # connect and warm up, outside the measurement
        for n in callers:
            result = drive(call, n, seconds, spawn_threads, pids)
            results.append({"workload": workload, "callers": n, **result, **memory_growth(memory)})
    return results


async def measure_workloads_async(
    call_for: Callable[[str], Callable[[int], Awaitable[None]]],
    workloads: list[str],
    callers: list[int],
    seconds: float,
    pids: list[int],
) -> list[dict]:
    """:func:`measure_workloads` for asyncio clients: tasks on the running loop."""
    results = []
    for workload in workloads:
        call = call_for(workload)
        memory = memory_before(workload, pids)
        await call(0)
        for n in callers:
            result = await drive_async(call, n, seconds, pids)
            results.append({"workload": workload, "callers": n, **result, **memory_growth(memory)})
    return results
