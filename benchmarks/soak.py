"""Soak: many callers against runrpc for minutes, restarting the server along the way.

    .venv/bin/python benchmarks/soak.py --minutes 10 --callers 64 --restart-every 60

Run by hand, not in CI. Every call echoes a value unique to it, so a reply that
reached the wrong call, twice, or never (the call's timeout) is counted. The
server gets SIGTERM every ``--restart-every`` seconds (graceful stop, exit
code checked) and starts again on the same port. RSS and open file descriptors
of the server and of this client process are sampled every 5 s.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SETTINGS, free_port  # noqa: E402
from django_zrpc.client.gevent.connection import Client  # noqa: E402
from django_zrpc.exceptions import RemoteError  # noqa: E402


def start_server(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "PYTHONUNBUFFERED": "1",
        "ZRPC_LOG_CALLS": "0",
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runrpc",
            "--noreload",
            "--skip-checks",
            "--heartbeat",
            "2",
            "--graceful-timeout",
            "2",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Serving " in line:
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--restart-every", type=float, default=60)
    args = parser.parse_args()

    port = free_port()
    server = start_server(port)
    client = Client(f"tcp://127.0.0.1:{port}", timeout=10, heartbeat=2)
    deadline = time.monotonic() + args.minutes * 60
    outcomes: collections.Counter[str] = collections.Counter()
    exit_codes: list[int] = []
    samples: list[dict] = []
    lifetimes = [0]

    def caller(index: int) -> None:
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            value = [index, sequence]
            try:
                result = client.echo(value)
            except RemoteError as err:
                outcomes[f"RemoteError {err.name}"] += 1
                continue
            except Exception as err:
                outcomes[type(err).__name__] += 1
                continue
            outcomes["ok" if result == value else "MISMATCH"] += 1

    def restarter() -> None:
        nonlocal server
        while time.monotonic() + args.restart_every < deadline:
            gevent.sleep(args.restart_every)
            server.send_signal(signal.SIGTERM)
            while server.poll() is None:
                gevent.sleep(0.05)
            exit_codes.append(server.returncode)
            server = start_server(port)
            lifetimes.append(len(samples))

    def sampler() -> None:
        while time.monotonic() < deadline:
            gevent.sleep(5)
            samples.append(
                {
                    "t": round(args.minutes * 60 - (deadline - time.monotonic())),
                    "server_life": len(lifetimes) - 1,
                    "server_rss_kb": rss_kb(server.pid),
                    "server_fds": fds(server.pid),
                    "client_rss_kb": rss_kb(os.getpid()),
                    "client_fds": fds(os.getpid()),
                    "calls": sum(outcomes.values()),
                }
            )

    workers = [gevent.spawn(caller, i) for i in range(args.callers)]
    helpers = [gevent.spawn(restarter), gevent.spawn(sampler)]
    gevent.joinall(workers)
    gevent.killall(helpers)
    client.close()
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    exit_codes.append(server.returncode)

    per_life = collections.defaultdict(list)
    for sample in samples:
        per_life[sample["server_life"]].append(sample)
    summary = {
        "minutes": args.minutes,
        "callers": args.callers,
        "outcomes": dict(outcomes),
        "server_exit_codes": exit_codes,
        "server_rss_kb_first_last_per_life": [
            (life[0]["server_rss_kb"], life[-1]["server_rss_kb"]) for life in per_life.values()
        ],
        "server_fds_min_max": (
            min(s["server_fds"] for s in samples),
            max(s["server_fds"] for s in samples),
        ),
        "client_rss_kb_first_last": (samples[0]["client_rss_kb"], samples[-1]["client_rss_kb"]),
        "client_fds_min_max": (
            min(s["client_fds"] for s in samples),
            max(s["client_fds"] for s in samples),
        ),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
