"""How evenly ``runrpc --workers N`` spreads new connections over its workers.

    .venv/bin/python benchmarks/spread.py [--workers 2 4] [--connections 1000] [--bursts 5]

For each N: ``--connections`` connections made one after another, each calling
``server_pid`` once; then ``--bursts`` times, a pool's worth (16) opened at
once. Prints how many each worker got. Runs runrpc with the tests' settings
(their probes serve ``server_pid``) on 127.0.0.1 and a free port, on SQLite.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_zrpc.client.gevent.connection import Client  # noqa: E402
from tests.conftest import ServerProcess, free_port, subprocess_env  # noqa: E402

BURST = 16  # RPCClient's pool opens up to POOL_SIZE (10) at once; a little more


def _start(workers: int) -> ServerProcess:
    port = free_port()
    env = subprocess_env(ZRPC_LOG_CALLS="0")
    env.pop("DATABASE_URL", None)
    args = ["--noreload", "--skip-checks", "--workers", str(workers), f"127.0.0.1:{port}"]
    server = ServerProcess(args, env, ROOT, port)
    server.wait_for("Serving ")
    return server


def _shares(pids: list[int], workers: int) -> list[int]:
    counts = sorted(collections.Counter(pids).values(), reverse=True)
    return counts + [0] * (workers - len(counts))


def measure(workers: int, connections: int, bursts: int) -> None:
    server = _start(workers)
    try:
        pids = []
        for _ in range(connections):
            with Client(server.endpoint, timeout=10) as client:
                pids.append(client.server_pid())
        shares = _shares(pids, workers)
        print(f"--workers {workers}, {connections} connections one by one: {shares}", flush=True)
        for number in range(bursts):
            clients = [Client(server.endpoint, timeout=10) for _ in range(BURST)]
            calls = [gevent.spawn(client.server_pid) for client in clients]
            gevent.joinall(calls, timeout=30, raise_error=True)
            for client in clients:
                client.close()
            shares = _shares([call.value for call in calls], workers)
            print(f"--workers {workers}, burst {number + 1} of {BURST} at once: {shares}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=5)
    options = parser.parse_args()
    for workers in options.workers:
        measure(workers, options.connections, options.bursts)


if __name__ == "__main__":
    main()
