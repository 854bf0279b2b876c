"""Calls/s of the zerorpc wire: raw pyzmq, stock zerorpc, and runrpc, in one interleaved run.

    .venv/bin/python benchmarks/wire.py [--seconds 5] [--rounds 3] [--callers 16 64]

Every server and every client is a process of its own on 127.0.0.1. Each
round measures every pair once, in turn; the table shows medians over rounds,
and each figure as a ratio to the stock zerorpc client calling a stock zerorpc
server in the same run. CPU is user+system time per call, of the client
process and of the server process. Never run in CI beyond a smoke pass
(``--seconds 0.5 --rounds 1``): speed is measured here, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- servers (each run as: python benchmarks/wire.py serve-KIND PORT) ----------


def serve_raw(port: int) -> None:
    """A ROUTER that answers every msgpack event with an OK event: the floor."""
    import msgpack
    import zmq

    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    while True:
        *identity, _, blob = sock.recv_multipart()
        header, _name, args = msgpack.unpackb(blob, raw=False)
        reply = {"message_id": b"x" * 32, "v": 3, "response_to": header["message_id"]}
        sock.send_multipart([*identity, b"", msgpack.packb((reply, "OK", args), use_bin_type=True)])


def serve_zerorpc(port: int) -> None:
    import zerorpc

    class Service:
        def echo(self, value):
            return value

    server = zerorpc.Server(Service())
    server.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    server.run()


# -- clients (each run as: python benchmarks/wire.py call-KIND ENDPOINT CALLERS SECONDS) --


def call_raw(endpoint: str, callers: int, seconds: float) -> dict:
    """Keep ``callers`` requests outstanding on one DEALER, as concurrent callers would."""
    import msgpack
    import zmq

    sock = zmq.Context().socket(zmq.DEALER)
    sock.connect(endpoint)
    count = 0

    def send(i: int) -> None:
        header = {"message_id": b"%032d" % i, "v": 3}
        sock.send_multipart([b"", msgpack.packb((header, "echo", [1]), use_bin_type=True)])

    for i in range(callers):
        send(i)
    cpu = _cpu()
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        sock.recv_multipart()
        count += 1
        send(count)
    return {"calls": count, "seconds": time.monotonic() - started, "cpu": _cpu() - cpu}


def call_zerorpc(endpoint: str, callers: int, seconds: float) -> dict:
    import zerorpc

    return _call_concurrently(zerorpc.Client(endpoint, timeout=30), callers, seconds)


def call_core(endpoint: str, callers: int, seconds: float) -> dict:
    from django_zrpc.core.client import Client

    return _call_concurrently(Client(endpoint, timeout=30), callers, seconds)


def _call_concurrently(client: Any, callers: int, seconds: float) -> dict:
    """Let ``callers`` greenlets call ``client.echo(1)`` in a loop for ``seconds``."""
    import gevent

    client.echo(1)
    counts = [0] * callers
    deadline = time.monotonic() + seconds

    def caller(index: int) -> None:
        while time.monotonic() < deadline:
            client.echo(1)
            counts[index] += 1

    cpu = _cpu()
    started = time.monotonic()
    gevent.joinall([gevent.spawn(caller, i) for i in range(callers)], raise_error=True)
    return {"calls": sum(counts), "seconds": time.monotonic() - started, "cpu": _cpu() - cpu}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the run -------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_server(kind: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind.startswith("runrpc"):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DATABASE_URL", None)
        if kind == "runrpc-quiet":
            env["ZRPC_LOG_CALLS"] = "0"
        args = [sys.executable, "manage.py", "runrpc", "--noreload", "--skip-checks", str(port)]
        ready = "Serving "
    else:
        env = dict(os.environ)
        args = [sys.executable, __file__, f"serve-{kind}", str(port)]
        ready = "ready"
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if ready in line:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} server did not start")
    # Keep reading so that a full pipe never blocks the server.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, f"tcp://127.0.0.1:{port}"


def measure(client: str, endpoint: str, server_pid: int, callers: int, seconds: float) -> dict:
    server_cpu = _process_cpu(server_pid)
    out = subprocess.run(
        [sys.executable, __file__, f"call-{client}", endpoint, str(callers), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["server_cpu"] = _process_cpu(server_pid) - server_cpu
    return result


PAIRS = [
    ("raw pyzmq -> raw pyzmq", "raw", "raw"),
    ("zerorpc -> zerorpc", "zerorpc", "zerorpc"),
    ("zerorpc -> runrpc", "zerorpc", "runrpc"),
    ("django_zrpc -> zerorpc", "core", "zerorpc"),
    ("django_zrpc -> runrpc", "core", "runrpc"),
    ("django_zrpc -> runrpc, no call log", "core", "runrpc-quiet"),
]
BASELINE = "zerorpc -> zerorpc"


def run(seconds: float, rounds: int, callers_list: list[int]) -> None:
    servers = {kind: start_server(kind) for kind in ("raw", "zerorpc", "runrpc", "runrpc-quiet")}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for _ in range(rounds):
            for callers in callers_list:
                for label, client, server in PAIRS:
                    proc, endpoint = servers[server]
                    result = measure(client, endpoint, proc.pid, callers, seconds)
                    results.setdefault((label, callers), []).append(result)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"echo of a small int; {rounds} interleaved rounds of {seconds}s, medians\n")
    print(f"| pair | callers | calls/s | x {BASELINE} | CPU µs/call client | CPU µs/call server |")
    print("|---|---:|---:|---:|---:|---:|")
    for callers in callers_list:
        base = _median_rate(results[(BASELINE, callers)])
        for label, _, _ in PAIRS:
            runs = results[(label, callers)]
            rate = _median_rate(runs)
            client_us = statistics.median(r["cpu"] / r["calls"] * 1e6 for r in runs)
            server_us = statistics.median(r["server_cpu"] / r["calls"] * 1e6 for r in runs)
            print(
                f"| {label} | {callers} | {rate:,.0f} | {rate / base:.2f} "
                f"| {client_us:.0f} | {server_us:.0f} |"
            )


def _median_rate(runs: list[dict]) -> float:
    return statistics.median(r["calls"] / r["seconds"] for r in runs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("serve-"):
        {"serve-raw": serve_raw, "serve-zerorpc": serve_zerorpc}[sys.argv[1]](int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1].startswith("call-"):
        function = {"call-raw": call_raw, "call-zerorpc": call_zerorpc, "call-core": call_core}[
            sys.argv[1]
        ]
        print(json.dumps(function(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    run(args.seconds, args.rounds, args.callers)


if __name__ == "__main__":
    main()
