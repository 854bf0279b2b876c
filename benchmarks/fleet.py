"""A fleet behind Redis discovery: how calls spread, and what each change costs the callers.

    .venv/bin/python benchmarks/fleet.py [--seconds 5] [--repeat 3]

Run by hand, not in CI (issue 15). A redis-server of its own on a free port,
and ``manage.py runrpc --announce redis://...?service=fleet`` processes of
the test project's settings (they serve ``server_pid``) on 127.0.0.1; one
``RPCClient("redis://...?service=fleet")`` in this process with 64 greenlets
calling ``server_pid``, so each answer names the instance that served it.

1. spread: calls/s and each instance's share over three instances, and the
   calls/s of the same load on one of them by its ``tcp://`` address;
2. a fourth instance: seconds from its "Serving" line to its first call;
3. SIGTERM of one instance under the load: calls failed (want 0);
4. SIGKILL of one instance under the load: calls failed, and the seconds
   from the kill to the last failure;
5. Redis stopped for 2 s under the load, then restarted empty: calls failed,
   and seconds until a new instance got calls after the restart.

Parts 3 to 5 are repeated ``--repeat`` times. One line per figure.
Bounded: every wait has a deadline; every process it starts is stopped by
its process id.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, log  # noqa: E402
from benchmarks.robustness import TEST_SETTINGS, Runrpc, base_env, report  # noqa: E402

CALLERS = 64
SERVICE = "fleet"


class Redis:
    """A redis-server of our own that keeps nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?service={SERVICE}"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(200):
            try:
                probe.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Load:
    """CALLERS greenlets calling ``server_pid`` through one client until stopped."""

    def __init__(self, client: Any) -> None:
        import gevent

        self.client = client
        self.answers: list[tuple[float, int]] = []
        self.failures: list[tuple[float, str]] = []
        self.running = True
        self.greenlets = [gevent.spawn(self._call) for _ in range(CALLERS)]

    def _call(self) -> None:
        import gevent

        for _ in range(10**7):
            if not self.running:
                return
            try:
                self.answers.append((time.monotonic(), self.client.server_pid()))
            except Exception as err:
                self.failures.append((time.monotonic(), type(err).__name__))
                gevent.sleep(0.01)

    def stop(self) -> None:
        import gevent

        self.running = False
        gevent.joinall(self.greenlets, timeout=30)

    def first_from(self, pid: int, deadline: float) -> float | None:
        import gevent

        while time.monotonic() < deadline:
            found = next((at for at, who in self.answers if who == pid), None)
            if found is not None:
                return found
            gevent.sleep(0.02)
        return None


def start(redis: Redis, env: dict[str, str], *args: str) -> Runrpc:
    server = Runrpc(TEST_SETTINGS, ["--heartbeat", "1", "--announce", redis.url, *args], env)
    if server.wait_for("Serving ", 60) is None:
        raise RuntimeError("runrpc did not start")
    return server


def client(endpoints: str) -> Any:
    from django_zrpc import RPCClient

    return RPCClient(endpoints, timeout=10)


def rate(load: Load, seconds: float) -> float:
    import gevent

    gevent.sleep(1.0)  # warm up
    before, began = len(load.answers), time.monotonic()
    gevent.sleep(seconds)
    return (len(load.answers) - before) / (time.monotonic() - began)


def spread_part(redis: Redis, env: dict[str, str], seconds: float) -> list[Runrpc]:
    servers = [start(redis, env) for _ in range(3)]
    one = client(servers[0].endpoint)
    load = Load(one)
    single = rate(load, seconds)
    load.stop()
    one.close()
    fleet = client(redis.url)
    load = Load(fleet)
    since = time.monotonic()
    total = rate(load, seconds)
    shares = Counter(pid for at, pid in load.answers if at >= since)
    mean = sum(shares.values()) / len(shares)
    report("one instance by tcp://, calls/s", round(single))
    report("three instances by redis://, calls/s", round(total))
    report(
        "shares of the three (deviation from the mean)",
        ", ".join(f"{(count - mean) / mean:+.1%}" for count in sorted(shares.values())),
    )
    newcomer = start(redis, env)
    served_at = newcomer.wait_for("Serving ", 1)
    first = load.first_from(newcomer.proc.pid, time.monotonic() + 10)
    report(
        "a fourth instance: seconds from 'Serving' to its first call",
        "none within 10 s" if first is None or served_at is None else f"{first - served_at[0]:.3f}",
    )
    load.stop()
    fleet.close()
    return [*servers, newcomer]


def change_part(redis: Redis, env: dict[str, str], repeat: int) -> None:
    import gevent

    stopped, killed, outage = [], [], []
    for turn in range(repeat):
        log(f"changes, turn {turn + 1} of {repeat}")
        servers = [start(redis, env) for _ in range(3)]
        fleet = client(redis.url)
        load = Load(fleet)
        gevent.sleep(1.0)
        servers[0].proc.send_signal(signal.SIGTERM)
        gevent.sleep(2.0)
        stopped.append(len(load.failures))
        before, killed_at = len(load.failures), time.monotonic()
        servers[1].proc.send_signal(signal.SIGKILL)
        gevent.sleep(2.0)
        failures = load.failures[before:]
        last = max((at for at, _ in failures), default=killed_at) - killed_at
        killed.append((len(failures), last, Counter(kind for _, kind in failures)))
        before = len(load.failures)
        redis.stop()
        gevent.sleep(2.0)
        redis.start()
        newcomer = start(redis, env)
        first = load.first_from(newcomer.proc.pid, time.monotonic() + 10)
        served = newcomer.wait_for("Serving ", 1)
        seen = None if first is None or served is None else first - served[0]
        outage.append((len(load.failures) - before, seen))
        load.stop()
        fleet.close()
        for server in [*servers, newcomer]:
            server.stop()
    report("SIGTERM under load: calls failed per turn", stopped)
    report(
        "SIGKILL under load: calls failed, seconds to the last failure, kinds",
        "; ".join(f"{n}, {last:.3f} s, {dict(kinds)}" for n, last, kinds in killed),
    )
    report(
        "Redis down 2 s and back empty: calls failed, seconds to a new instance's first call",
        "; ".join(f"{n}, {'-' if s is None else f'{s:.3f}'}" for n, s in outage),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", TEST_SETTINGS)
    import django

    django.setup()
    env = base_env(None)
    redis = Redis()
    servers: list[Runrpc] = []
    try:
        servers = spread_part(redis, env, options.seconds)
        for server in servers:
            server.stop()
        change_part(redis, env, options.repeat)
    finally:
        for server in servers:
            server.stop()
        redis.stop()


if __name__ == "__main__":
    main()
