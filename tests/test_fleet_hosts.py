"""A fleet of runrpc servers on separate test hosts, called by one client (issue 15).

Every host is a network namespace with its own address on a bridge
(``tests/hosts.py``): three servers (hosts 1 to 3), the load client on host
4, a spare server on host 5. The client, ``tests/fleet_load.py``, runs 64
callers sharing one ``RPCClient`` and reports each second and each failure
as JSON lines; the test cuts a host's link in the middle of the load (a
partition, not a clean close) and rewrites the client host's hosts file (the
resolver the test controls), then judges what the client saw.

The servers run without ``DATABASE_URL`` (PostgreSQL on 127.0.0.1 is not
reachable from a namespace): ``server_pid`` needs no database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.hosts import HostProcess, HostsUnavailable, TestHosts

#: Each host has its own address, so every server can use the same port.
PORT = 4242
HEARTBEAT = 1.0  # the servers' and the client's
DOWN_FOR = 2.0
CALLERS = 64
SERVER_HOSTS = (1, 2, 3)
CLIENT_HOST = 4
SPARE_HOST = 5
#: Scheduling on a loaded 2-core machine: a tick of the client's ticker and more.
SLACK = 1.0


@dataclass
class Server:
    host: int
    endpoint: str
    process: HostProcess

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Fleet:
    hosts: TestHosts
    servers: dict[int, Server]  # by host

    def endpoints(self, *hosts: int) -> list[str]:
        return [self.servers[host].endpoint for host in hosts]

    def host_of(self, pid: int | str) -> int | None:
        for server in self.servers.values():
            if server.pid == int(pid):
                return server.host
        return None


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _start_server(hosts: TestHosts, host: int) -> Server:
    env = subprocess_env(ZRPC_LOG_CALLS="0")
    env.pop("DATABASE_URL", None)
    address = hosts.address(host)
    argv = [sys.executable, "manage.py", "runrpc", "--noreload", "--skip-checks"]
    argv += ["--heartbeat", str(HEARTBEAT), f"{address}:{PORT}"]
    return Server(host, f"tcp://{address}:{PORT}", hosts.run(host, argv, env, cwd=ROOT))


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Five test hosts; runrpc on hosts 1, 2, 3 and 5, ready. All of it gone afterwards."""
    before = _netns_list()
    try:
        hosts = TestHosts(5)
    except HostsUnavailable as err:
        pytest.skip(f"test hosts cannot be made here: {err}")
    try:
        servers = {host: _start_server(hosts, host) for host in (*SERVER_HOSTS, SPARE_HOST)}
        for server in servers.values():
            server.process.wait_for("Serving ", timeout=60)
        yield Fleet(hosts, servers)
    finally:
        hosts.close()
        assert _netns_list() == before


# -- the load client and what it reports --------------------------------------


class LoadRun:
    """``tests/fleet_load.py`` running on the client host, and its JSON lines."""

    def __init__(self, fleet: Fleet, endpoints: list[str], seconds: float, *options: str):
        env = subprocess_env()
        env.pop("DATABASE_URL", None)
        argv = [sys.executable, "tests/fleet_load.py", *endpoints]
        argv += ["--callers", str(CALLERS), "--seconds", str(seconds)]
        argv += ["--heartbeat", str(HEARTBEAT), "--down-for", str(DOWN_FOR), *options]
        self.seconds = seconds
        self.process = fleet.hosts.run(CLIENT_HOST, argv, env, cwd=ROOT)

    def events(self, kind: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.process.lines):
            if line.startswith("{"):
                event = json.loads(line)
                if event["event"] == kind:
                    found.append(event)
        return found

    def wait_seconds(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until the client has reported ``count`` seconds; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seconds = self.events("second")
            if len(seconds) >= count:
                return seconds
            if self.process.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"the load client did not report {count} seconds:\n{self.process.output}")

    def wait_until(self, moment: float) -> None:
        """Wait until the client has reported a second that ended at ``moment`` or later."""
        deadline = time.monotonic() + (moment - time.monotonic()) + 10
        while time.monotonic() < deadline:
            if any(s["t"] >= moment for s in self.events("second")):
                return
            if self.process.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"the load client did not report up to {moment}:\n{self.process.output}")

    def summary(self) -> dict[str, Any]:
        self.process.wait(self.seconds + 30)
        (summary,) = self.events("summary")
        assert summary["unfinished"] == 0, self.process.output
        return summary


def shares(fleet: Fleet, seconds: list[dict[str, Any]]) -> dict[int, int]:
    """Calls served by each host over ``seconds``."""
    counts: Counter[int] = Counter()
    for second in seconds:
        for pid, calls in second["served"].items():
            host = fleet.host_of(pid)
            assert host is not None, f"pid {pid} is none of the fleet's servers"
            counts[host] += calls
    return dict(counts)


def assert_even(counts: dict[int, int], hosts: tuple[int, ...]) -> None:
    """Each host's share is within ±15% of the mean share."""
    mean = sum(counts.get(host, 0) for host in hosts) / len(hosts)
    assert mean > 0
    for host in hosts:
        assert abs(counts.get(host, 0) - mean) <= 0.15 * mean, (
            f"host {host} served {counts.get(host, 0)}, the mean is {mean:.0f}: {counts}"
        )


# -- the tests ---------------------------------------------------------------------


def run_partition(fleet: Fleet, endpoints: list[str], *options: str) -> None:
    """Spread, then host 1 partitioned mid-load, then rejoined: judge what the client saw."""
    cut_after, cut_for = 4, 7.0
    load = LoadRun(fleet, endpoints, cut_after + cut_for + 6, *options)
    steady = load.wait_seconds(cut_after, timeout=30)
    partitioned = time.monotonic()
    fleet.hosts.partition(1)
    try:
        load.wait_until(partitioned + cut_for)
    finally:
        fleet.hosts.rejoin(1)
    rejoined = time.monotonic()
    summary = load.summary()
    seconds, failures = load.events("second"), load.events("failure")
    report = f"partitioned at {partitioned:.2f}, rejoined at {rejoined:.2f}\n{load.process.output}"

    # Before: calls spread within ±15% of each other (the first second warms up).
    assert_even(shares(fleet, steady[1:]), SERVER_HOSTS)
    assert [f for f in failures if f["t"] < partitioned] == [], report

    # The calls in flight on host 1 fail, each within two heartbeats of the cut
    # (or of its start, when it started after the cut).
    assert failures, f"no call was in flight on host 1 when it was cut off\n{report}"
    for failure in failures:
        assert failure["type"] == "LostRemote", report
        assert failure["endpoint"] in (None, fleet.servers[1].endpoint), report
        waited = failure["t"] - max(partitioned, failure["started"])
        assert waited <= 2 * HEARTBEAT + SLACK, f"a call failed after {waited:.2f}s\n{report}"
    # Once the first failed, calls go elsewhere at once: none started later fails.
    detected = min(f["t"] for f in failures)
    late = [f for f in failures if f["started"] > detected + 0.1]
    assert late == [], f"calls started after the detection failed\n{report}"
    # Hosts 2 and 3 serve in every whole second of the partition; host 1 in none.
    during = [s for s in seconds if partitioned + 1 <= s["t"] - 1 and s["t"] <= rejoined]
    assert len(during) >= cut_for - 2, report
    for second in during:
        served = shares(fleet, [second])
        assert served.get(2, 0) > 0, f"{second}\n{report}"
        assert served.get(3, 0) > 0, f"{second}\n{report}"
        assert served.get(1, 0) == 0, f"{second}\n{report}"

    # Rejoined: host 1 gets calls again within a few seconds, and nothing fails.
    back = [s for s in seconds if s["t"] > rejoined and shares(fleet, [s]).get(1, 0) > 0]
    assert back, f"host 1 got no call after it rejoined\n{report}"
    assert back[0]["t"] <= rejoined + DOWN_FOR + 3, report
    assert [f for f in failures if f["t"] > rejoined] == [], report
    assert summary["failures"] == len(failures)


def test_a_partitioned_host_of_a_static_list_is_avoided_until_it_rejoins(fleet):
    run_partition(fleet, fleet.endpoints(*SERVER_HOSTS))
