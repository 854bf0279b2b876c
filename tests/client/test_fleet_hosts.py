"""A fleet of runrpc servers on separate test hosts, called by one client (issue 15).

Every host is a network namespace with its own address on a bridge
(``tests/hosts.py``): three servers (hosts 1 to 3), the load client on host
4, a spare server on host 5. The client, ``tests/fleet_client.py``, runs 64
callers sharing one ``RPCClient`` and reports each second and each failure
as JSON lines; the test cuts a host's link in the middle of the load (a
partition, not a clean close) and rewrites the client host's hosts file (the
resolver the test controls), then judges what the client saw.

The servers run without ``DATABASE_URL`` (PostgreSQL on 127.0.0.1 is not
reachable from a namespace): ``server_pid`` needs no database.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from django_zrpc import conf
from tests.conftest import ROOT, subprocess_env
from tests.hosts import HostProcess, HostsUnavailable, TestHosts

#: Each host has its own address, so every server can use the same port.
PORT = 4242
HEARTBEAT = 1.0  # the servers' and the client's
DOWN_FOR = 2.0
CALLERS = 64
#: Each caller's pause between calls: the load keeps the machine's 2 cores
#: below saturation, where the servers' shares would follow the CPU scheduler.
PAUSE = 0.02
SERVER_HOSTS = (1, 2, 3)
CLIENT_HOST = 4
SPARE_HOST = 5
SERVICE = "fleet"
#: Beyond two heartbeats: the client judges silence every 10 ms, and a
#: loaded 2-core machine schedules late.
SLACK = 0.5


@dataclass
class Server:
    host: int
    endpoint: str
    process: HostProcess

    @property
    def pid(self) -> int:
        return self.process.pid


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _start_server(hosts: TestHosts, host: int, port: int, *options: str) -> Server:
    env = subprocess_env(ZRPC_LOG_CALLS="0")
    env.pop("DATABASE_URL", None)
    address = hosts.address(host)
    argv = [sys.executable, "manage.py", "runrpc", "--noreload", "--skip-checks"]
    argv += ["--heartbeat", str(HEARTBEAT), *options, f"{address}:{port}"]
    return Server(host, f"tcp://{address}:{port}", hosts.run(host, argv, env, cwd=ROOT))


def _start_redis(hosts: TestHosts) -> str:
    """Start a redis-server of the test's own on the bridge address; return its redis:// URL."""
    with socket.socket() as probe:
        probe.bind((hosts.bridge_address, 0))
        port = probe.getsockname()[1]
    argv = ["redis-server", "--port", str(port), "--bind", hosts.bridge_address]
    # Only the test hosts reach the bridge address: protected mode would refuse them.
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
    hosts.run(None, argv).wait_for("Ready to accept connections", timeout=20)
    return f"redis://{hosts.bridge_address}:{port}/0"


@dataclass
class Fleet:
    hosts: TestHosts
    servers: dict[int, Server]  # the fixture's, by host
    redis_url: str | None  # where the servers announce themselves, if they do
    newcomers: list[Server]  # servers the tests started

    def endpoints(self, *hosts: int) -> list[str]:
        return [self.servers[host].endpoint for host in hosts]

    def host_of(self, pid: int | str) -> int | None:
        for server in [*self.servers.values(), *self.newcomers]:
            if server.pid == int(pid):
                return server.host
        return None

    def start(self, host: int, port: int = PORT, announce: bool = True) -> Server:
        """Start runrpc on ``host`` (announced in the fleet's Redis if there is one)."""
        options: tuple[str, ...] = ()
        if announce and self.redis_url is not None:
            address = f"tcp://{self.hosts.address(host)}:{port}"
            options = ("--announce", f"{self.redis_url}?service={SERVICE}")
            options += ("--announce-address", address)
        return _start_server(self.hosts, host, port, *options)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Five test hosts, runrpc ready on hosts 1, 2, 3 and 5. All of it gone afterwards.

    With ``runrpc --announce`` (issue 15), the servers of hosts 1 to 3
    announce themselves in a redis-server of the test's own, on the bridge;
    the spare host's is not announced (the DNS test names it).
    """
    before = _netns_list()
    try:
        hosts = TestHosts(5)
    except HostsUnavailable as err:
        pytest.skip(f"test hosts cannot be made here: {err}")
    try:
        announcing = shutil.which("redis-server") is not None
        fleet = Fleet(hosts, {}, _start_redis(hosts) if announcing else None, [])
        for host in (*SERVER_HOSTS, SPARE_HOST):
            fleet.servers[host] = fleet.start(host, announce=host in SERVER_HOSTS)
        for server in fleet.servers.values():
            server.process.wait_for("Serving ", timeout=60)
        yield fleet
    finally:
        hosts.close()
        assert _netns_list() == before


# -- the load client and what it reports --------------------------------------


class LoadRun:
    """``tests/fleet_client.py`` running on the client host, and its JSON lines."""

    def __init__(self, fleet: Fleet, endpoints: list[str], seconds: float, *options: str):
        env = subprocess_env()
        env.pop("DATABASE_URL", None)
        argv = [sys.executable, "tests/fleet_client.py", *endpoints]
        argv += ["--callers", str(CALLERS), "--seconds", str(seconds), "--pause", str(PAUSE)]
        argv += ["--heartbeat", str(HEARTBEAT), "--down-for", str(DOWN_FOR)]
        # A call answered later than this was held up: server_pid takes a millisecond.
        argv += ["--late", str(2 * HEARTBEAT + SLACK), *options]
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

    def wait_for_second(self, condition, timeout_at: float) -> None:
        """Wait until a reported second meets ``condition``, or ``timeout_at`` (monotonic)."""
        while time.monotonic() < timeout_at:
            if any(condition(s) for s in self.events("second")):
                return
            if self.process.proc.poll() is not None:
                return
            time.sleep(0.05)

    def summary(self) -> dict[str, Any]:
        """Wait for the load to end; return its summary."""
        self.process.wait(self.seconds + 30)
        (summary,) = self.events("summary")
        assert summary["unfinished"] == 0, self.process.output
        return summary


@pytest.fixture
def start_load(fleet: Fleet) -> Iterator:
    """``start_load(endpoints, seconds, *options)``; its client is stopped when the test ends.

    A test that fails before the load is over leaves no caller behind to
    disturb the next test's shares.
    """
    runs: list[LoadRun] = []

    def start(endpoints: list[str], seconds: float, *options: str) -> LoadRun:
        runs.append(LoadRun(fleet, endpoints, seconds, *options))
        return runs[-1]

    yield start
    for run in runs:
        run.process.stop()


def finish(load: LoadRun) -> dict[str, Any]:
    """End the load now (SIGTERM: calls in flight finish); return its summary."""
    load.process.proc.send_signal(signal.SIGTERM)
    return load.summary()


def host_fresh(fleet: Fleet, second: dict[str, Any], host: int) -> bool:
    """Whether ``host`` answered a call at once (not one held up) in the reported ``second``."""
    return any(fleet.host_of(pid) == host for pid in second["fresh"])


def host_served(fleet: Fleet, second: dict[str, Any], host: int) -> bool:
    """Whether ``host`` answered a call in the reported ``second``."""
    return shares(fleet, [second]).get(host, 0) > 0


def shares(fleet: Fleet, seconds: list[dict[str, Any]]) -> dict[int, int]:
    """Calls served by each host over ``seconds``."""
    counts: Counter[int] = Counter()
    for second in seconds:
        for pid, calls in second["served"].items():
            host = fleet.host_of(pid)
            assert host is not None, f"pid {pid} is none of the fleet's servers"
            counts[host] += calls
    return dict(counts)


def assert_even(counts: dict[int, int], hosts: tuple[int, ...], report: str) -> None:
    """Each host's share is within ±15% of the mean share."""
    mean = sum(counts.get(host, 0) for host in hosts) / len(hosts)
    assert mean > 0
    for host in hosts:
        assert abs(counts.get(host, 0) - mean) <= 0.15 * mean, (
            f"host {host} served {counts.get(host, 0)}, the mean is {mean:.0f}: {counts}\n{report}"
        )


# -- the tests ---------------------------------------------------------------------


def run_partition(fleet: Fleet, start_load, endpoints: list[str], rejoin_within: float) -> None:
    """Spread, then host 1 partitioned mid-load, then rejoined: judge what the client saw.

    Host 1 must get calls again within ``rejoin_within`` seconds of rejoining.
    """
    cut_after = 3
    # Longer than a detection (two heartbeats) and DOWN_FOR: the client tries
    # host 1 again while it is still cut off.
    cut_for = 2 * HEARTBEAT + DOWN_FOR + 2
    load = start_load(endpoints, 60)
    steady = load.wait_seconds(cut_after, timeout=30)
    partitioned = time.monotonic()
    fleet.hosts.partition(1)
    # The cut takes effect when partition() returns, not when it is called:
    # replies host 1 sent meanwhile may still arrive.
    cut = time.monotonic()
    try:
        load.wait_until(partitioned + cut_for)
    finally:
        fleet.hosts.rejoin(1)
    rejoined = time.monotonic()
    back_by = rejoined + rejoin_within
    load.wait_for_second(lambda s: s["t"] > rejoined and host_fresh(fleet, s, 1), back_by + 1)
    summary = finish(load)
    seconds, failures = load.events("second"), load.events("failure")
    report = f"partitioned at {partitioned:.2f}, rejoined at {rejoined:.2f}\n{load.process.output}"

    # Before the cut: calls spread within ±15% of each other (the first second
    # warms up), and none failed.
    assert_even(shares(fleet, steady[1:]), SERVER_HOSTS, report)
    assert [f for f in failures if f["t"] < partitioned] == [], report
    # During it: new calls go to hosts 2 and 3 at once, every second; none to host 1.
    during = [s for s in seconds if s["t"] - 1 >= cut and s["t"] <= rejoined]
    assert len(during) >= cut_for - 2, report
    for second in during:
        assert host_served(fleet, second, 2), f"{second}\n{report}"
        assert host_served(fleet, second, 3), f"{second}\n{report}"
        assert not host_served(fleet, second, 1), f"{second}\n{report}"
    # Rejoined: host 1 gets calls again (new ones, answered at once) within a few seconds.
    back = [s for s in seconds if s["t"] > rejoined and host_fresh(fleet, s, 1)]
    assert back, f"host 1 got no new call after it rejoined\n{report}"
    assert back[0]["t"] <= back_by, report

    # No call hangs: the ones in flight on host 1 when it was cut off do not
    # wait for it to come back (nor for their timeout) ...
    late = load.events("late")
    slowest = max((f["t"] - f["started"] for f in late), default=0.0)
    assert late == [], f"{len(late)} calls succeeded after up to {slowest:.1f}s\n{report}"

    # ... they fail, each within two heartbeats of the cut (or of its start,
    # when it started after the cut) ...
    assert failures, f"no call was in flight on host 1 when it was cut off\n{report}"
    for failure in failures:
        assert failure["endpoint"] in (None, fleet.servers[1].endpoint), report
        waited = failure["t"] - max(partitioned, failure["started"])
        assert failure["type"] == "LostRemote", f"after {waited:.2f}s: {failure}\n{report}"
        assert waited <= 2 * HEARTBEAT + SLACK, f"a call failed after {waited:.2f}s\n{report}"
    # ... and once the first has, calls go elsewhere: none started later fails.
    detected = min(f["t"] for f in failures)
    after = [f for f in failures if f["started"] > detected + 0.1]
    assert after == [], f"calls started after the detection failed\n{report}"
    assert summary["failures"] == len(failures)


def redis_service(fleet: Fleet) -> str:
    """The fleet's ``redis://`` endpoint; skip when redis-server is not installed."""
    if fleet.redis_url is None:
        pytest.skip("redis-server is not installed")
    return f"{fleet.redis_url}?service={SERVICE}"


def test_a_partitioned_host_of_a_redis_service_is_avoided_until_it_rejoins(fleet, start_load):
    # Its announcement may have expired meanwhile: it tries Redis again every
    # third of its TTL (and clients read Redis again on its message).
    url = redis_service(fleet)
    run_partition(fleet, start_load, [url], DOWN_FOR + 3 + conf.get("ANNOUNCE_TTL") / 3)


def test_an_instance_announced_in_redis_gets_calls_soon_and_leaves_without_failures(
    fleet, start_load
):
    load = start_load([redis_service(fleet)], 60)
    load.wait_seconds(2, timeout=30)
    # Another server on the spare host, on a port of its own.
    spare = fleet.start(SPARE_HOST, port=PORT + 1)
    fleet.newcomers.append(spare)
    try:
        spare.process.wait_for("Serving ", timeout=60)
        announced = time.monotonic()
        load.wait_until(announced + 3)
        stopping = time.monotonic()
        assert spare.process.stop(timeout=15) == 0, spare.process.output  # SIGTERM, drained
        stopped = time.monotonic()
    finally:
        spare.process.stop()
    load.wait_until(stopped + 2)
    summary = finish(load)
    report = f"announced at {announced:.2f}, SIGTERM at {stopping:.2f}\n{load.process.output}"
    seconds = load.events("second")
    first = [s for s in seconds if str(spare.pid) in s["served"]]
    assert first, f"the new instance got no call\n{report}"
    assert first[0]["t"] - 1 <= announced + 5, report  # that second began within 5 s
    assert load.events("failure") == [], report  # SIGTERM under load: zero failures
    assert summary["failures"] == 0
    gone = [s for s in seconds if s["t"] - 1 > stopped]
    assert gone, report
    assert not any(str(spare.pid) in s["served"] for s in gone), report


NAME = "fleet.test"
REFRESH = 1.0


def test_a_dns_name_is_spread_over_its_addresses_and_followed_when_they_change(fleet, start_load):
    url = f"dns:///{NAME}:{PORT}"
    address = fleet.hosts.address
    fleet.hosts.set_hosts(CLIENT_HOST, {NAME: [address(host) for host in SERVER_HOSTS]})
    load = start_load([url], 60, "--option", f"refresh={REFRESH}")
    steady = load.wait_seconds(3, timeout=30)
    # One address gone, another new: the resolver's answer, changed under the client.
    changed = time.monotonic()
    fleet.hosts.set_hosts(CLIENT_HOST, {NAME: [address(2), address(3), address(SPARE_HOST)]})
    load.wait_until(changed + REFRESH + 1 + 3)
    summary = finish(load)
    report = f"changed at {changed:.2f}\n{load.process.output}"
    assert_even(shares(fleet, steady[1:]), SERVER_HOSTS, report)
    followed = [s for s in load.events("second") if s["t"] - 1 >= changed + REFRESH + 1]
    assert len(followed) >= 3, report
    for second in followed:
        assert not host_served(fleet, second, 1), f"{second}\n{report}"
    assert_even(shares(fleet, followed), (2, 3, SPARE_HOST), report)
    assert load.events("failure") == [], report
    assert summary["failures"] == 0
