"""Where the microseconds of one call at a time go, on each side.

    .venv/bin/python benchmarks/sequential.py [--calls 5000] [--rounds 3]

A view makes its calls one after another, so what a page feels is the time
of one call with nothing else in flight. Each client here makes ``--calls``
echo calls in a row against each server, in a process of its own, in
interleaved rounds. Pairing each client with the raw pyzmq server, and the
raw pyzmq client with each server, splits the time between the two sides:

- ``raw pyzmq``: a blocking DEALER, and a blocking ROUTER (the floor);
- ``gevent, minimal``: the least a gevent client can do (send, wait on the
  socket's descriptor, receive), the floor of any gevent client;
- ``RPCClient`` and ``AsyncRPCClient``, with their defaults;
- ``runrpc``: the server as deployed, with the production defaults
  (``DEBUG`` off, no ``ZRPC_*`` settings, metrics on with ``--ops``).

It prints, for each pair, the median over the rounds of the microseconds a
call took and the CPU microseconds a call cost the client's process and the
server's. Absolute figures drift with the machine's load; compare the rows
of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import SETTINGS, free_port, process_cpu  # noqa: E402
from benchmarks.servers import Server  # noqa: E402

CLIENTS = ["raw pyzmq", "gevent, minimal", "RPCClient", "AsyncRPCClient"]
SERVERS = ["raw pyzmq", "runrpc"]
RUNRPC_ARGS = ["--noreload", "--skip-checks"]


def _client_main(kind: str, endpoint: str, calls: int, server_pid: int) -> None:
    """Make ``calls`` echo calls in a row; print one JSON line of what they took."""
    if kind in ("RPCClient", "gevent, minimal"):
        from gevent import monkey

        monkey.patch_all()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import msgpack
    import zmq

    if kind == "AsyncRPCClient":
        import asyncio

        import django

        django.setup()
        from django_zrpc import AsyncRPCClient

        async def run() -> dict[str, float]:
            client = AsyncRPCClient(endpoint, timeout=30)
            for i in range(200):  # connected, warmed up
                await client("echo", i)
            return await _timed_async(client, calls, server_pid)

        print(json.dumps(asyncio.run(run())))
        return
    if kind == "raw pyzmq":
        sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(endpoint)

        def call(i: int) -> object:
            header = {"message_id": b"%032d" % i, "v": 3}
            sock.send_multipart([b"", msgpack.packb((header, "echo", [i]), use_bin_type=True)])
            _, blob = sock.recv_multipart()
            return msgpack.unpackb(blob, raw=False)[2][0]

    elif kind == "gevent, minimal":
        import gevent

        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(endpoint)
        hub = gevent.get_hub()
        readable = hub.loop.io(sock.getsockopt(zmq.FD), 1)

        def call(i: int) -> object:
            header = {"message_id": b"%032d" % i, "v": 3}
            sock.send_multipart([b"", msgpack.packb((header, "echo", [i]), use_bin_type=True)], 1)
            for _ in range(1_000_000):
                try:
                    frames: list[bytes] = sock.recv_multipart(1)
                except zmq.Again:
                    hub.wait(readable)
                else:
                    return msgpack.unpackb(frames[1], raw=False)[2][0]
            raise AssertionError("no reply")

    else:
        import django

        django.setup()
        from django_zrpc import RPCClient

        client = RPCClient(endpoint, timeout=30)

        def call(i: int) -> object:
            return client("echo", i)

    for i in range(200):
        call(i)
    server_cpu, cpu, started = process_cpu(server_pid), time.process_time(), time.perf_counter()
    for i in range(calls):
        if call(i) != i:
            raise AssertionError(f"echo {i} came back wrong")
    print(json.dumps(_figures(calls, started, cpu, server_cpu, server_pid)))


async def _timed_async(client: object, calls: int, server_pid: int) -> dict[str, float]:
    server_cpu, cpu, started = process_cpu(server_pid), time.process_time(), time.perf_counter()
    for i in range(calls):
        if await client("echo", i) != i:  # type: ignore[operator]
            raise AssertionError(f"echo {i} came back wrong")
    return _figures(calls, started, cpu, server_cpu, server_pid)


def _figures(
    calls: int, started: float, cpu: float, server_cpu: float, server_pid: int
) -> dict[str, float]:
    seconds = time.perf_counter() - started
    return {
        "us_per_call": seconds / calls * 1e6,
        "client_cpu_us": (time.process_time() - cpu) / calls * 1e6,
        "server_cpu_us": (process_cpu(server_pid) - server_cpu) / calls * 1e6,
    }


def _start(kind: str, env: dict[str, str]) -> Server:
    port = free_port()
    if kind == "raw pyzmq":
        args = [sys.executable, "-m", "benchmarks.servers", "raw", str(port)]
        return Server(kind, args, env, port, "ready").wait_ready()
    bare = {k: v for k, v in env.items() if k not in ("ZRPC_LOG_CALLS", "DJANGO_DEBUG")}
    ops = ["--ops", f"127.0.0.1:{free_port()}"]
    args = [sys.executable, "manage.py", "runrpc", *RUNRPC_ARGS, *ops, str(port)]
    return Server(kind, args, bare, port, "Serving ").wait_ready()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls in a row per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS}
    servers = {}
    try:
        for kind in SERVERS:
            servers[kind] = _start(kind, env)
        figures: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for client in CLIENTS:
                for kind, server in servers.items():
                    command = [sys.executable, __file__, "--client", client, server.endpoint]
                    command += [str(args.calls), str(server.proc.pid)]
                    out = subprocess.run(
                        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
                    )
                    if out.returncode != 0:
                        raise RuntimeError(f"{client} -> {kind} failed:\n{out.stderr[-2000:]}")
                    figures.setdefault((client, kind), []).append(
                        json.loads(out.stdout.strip().splitlines()[-1])
                    )
    finally:
        for server in servers.values():
            server.stop()
    floor = statistics.median(f["us_per_call"] for f in figures[("raw pyzmq", "raw pyzmq")])
    print(f"{args.calls} echo calls in a row, median of {args.rounds} rounds ({time.ctime()})")
    heading = f"{'client -> server':36} {'us/call':>8} {'x floor':>8}"
    print(f"{heading} {'client CPU':>11} {'server CPU':>11}")
    for (client, kind), rows in figures.items():
        us = statistics.median(r["us_per_call"] for r in rows)
        client_cpu = statistics.median(r["client_cpu_us"] for r in rows)
        server_cpu = statistics.median(r["server_cpu_us"] for r in rows)
        print(
            f"{client + ' -> ' + kind:36} {us:8.0f} {floor / us:8.2f} "
            f"{client_cpu:9.0f}us {server_cpu:9.0f}us"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
