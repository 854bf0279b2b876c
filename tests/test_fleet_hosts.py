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
import socket
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
SERVICE = "fleet"
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


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _runrpc_announces() -> bool:
    """Whether this branch's runrpc has ``--announce`` (the discovery of issue 15)."""
    from django_zrpc.management.commands.runrpc import Command

    return "--announce" in Command().create_parser("manage.py", "runrpc").format_help()


def _endpoint_accepted(endpoint: str) -> bool:
    """Whether ``RPCClient`` takes ``endpoint`` (``dns:///``, ``redis://``: issue 15)."""
    from django_zrpc import RPCClient

    try:
        RPCClient(endpoint, timeout=1).close()
    except ValueError:
        return False
    return True


def _start_server(hosts: TestHosts, host: int, *options: str) -> Server:
    env = subprocess_env(ZRPC_LOG_CALLS="0")
    env.pop("DATABASE_URL", None)
    address = hosts.address(host)
    argv = [sys.executable, "manage.py", "runrpc", "--noreload", "--skip-checks"]
    argv += ["--heartbeat", str(HEARTBEAT), *options, f"{address}:{PORT}"]
    return Server(host, f"tcp://{address}:{PORT}", hosts.run(host, argv, env, cwd=ROOT))


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
    servers: dict[int, Server]  # by host
    redis_url: str | None  # where the servers announce themselves, if they do

    def endpoints(self, *hosts: int) -> list[str]:
        return [self.servers[host].endpoint for host in hosts]

    def host_of(self, pid: int | str) -> int | None:
        for server in self.servers.values():
            if server.pid == int(pid):
                return server.host
        return None

    def announce(self, host: int) -> tuple[str, ...]:
        """runrpc's options to announce the server of ``host`` in the fleet's Redis."""
        if self.redis_url is None:
            return ()
        address = f"tcp://{self.hosts.address(host)}:{PORT}"
        return ("--announce", f"{self.redis_url}?service={SERVICE}", "--announce-address", address)

    def start(self, host: int, announce: bool) -> Server:
        """Start runrpc on ``host``; stopped when the hosts are closed, if not before."""
        options = self.announce(host) if announce else ()
        server = self.servers[host] = _start_server(self.hosts, host, *options)
        return server


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Five test hosts; runrpc on hosts 1, 2 and 3, ready. All of it gone afterwards.

    With ``runrpc --announce`` (issue 15), the servers announce themselves in
    a redis-server of the test's own, on the bridge.
    """
    before = _netns_list()
    try:
        hosts = TestHosts(5)
    except HostsUnavailable as err:
        pytest.skip(f"test hosts cannot be made here: {err}")
    try:
        announcing = _runrpc_announces() and shutil.which("redis-server") is not None
        fleet = Fleet(hosts, {}, _start_redis(hosts) if announcing else None)
        for host in SERVER_HOSTS:
            fleet.start(host, announce=True)
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


def run_partition(fleet: Fleet, start_load, endpoints: list[str], *options: str) -> None:
    """Spread, then host 1 partitioned mid-load, then rejoined: judge what the client saw."""
    cut_after, cut_for = 4, 7.0
    load = start_load(endpoints, cut_after + cut_for + 6, *options)
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


def test_a_partitioned_host_of_a_static_list_is_avoided_until_it_rejoins(fleet, start_load):
    run_partition(fleet, start_load, fleet.endpoints(*SERVER_HOSTS))


def redis_service(fleet: Fleet) -> str:
    """The fleet's ``redis://`` endpoint; skip when this branch has no discovery yet."""
    if not _runrpc_announces():
        pytest.skip("runrpc has no --announce on this branch yet (issue 15's discovery)")
    if fleet.redis_url is None:
        pytest.skip("redis-server is not installed")
    url = f"{fleet.redis_url}?service={SERVICE}"
    if not _endpoint_accepted(url):
        pytest.skip("RPCClient does not take redis:// endpoints on this branch yet (issue 15)")
    return url


def test_a_partitioned_host_of_a_redis_service_is_avoided_until_it_rejoins(fleet, start_load):
    run_partition(fleet, start_load, [redis_service(fleet)])


def test_an_instance_announced_in_redis_gets_calls_soon_and_leaves_without_failures(
    fleet, start_load
):
    load = start_load([redis_service(fleet)], 12)
    load.wait_seconds(2, timeout=30)
    spare = fleet.start(SPARE_HOST, announce=True)
    try:
        spare.process.wait_for("Serving ", timeout=60)
        announced = time.monotonic()
        load.wait_until(announced + 5)
        stopping = time.monotonic()
        assert spare.process.stop(timeout=15) == 0, spare.process.output  # SIGTERM, drained
        stopped = time.monotonic()
    finally:
        spare.process.stop()
    summary = load.summary()
    report = f"announced at {announced:.2f}, SIGTERM at {stopping:.2f}\n{load.process.output}"
    seconds = load.events("second")
    first = [s for s in seconds if shares(fleet, [s]).get(SPARE_HOST, 0) > 0]
    assert first, f"the new instance got no call\n{report}"
    assert first[0]["t"] - 1 <= announced + 5, report  # that second began within 5 s
    assert load.events("failure") == [], report  # SIGTERM under load: zero failures
    assert summary["failures"] == 0
    gone = [s for s in seconds if s["t"] - 1 > stopped]
    assert gone, report
    assert all(shares(fleet, [s]).get(SPARE_HOST, 0) == 0 for s in gone), report


NAME = "fleet.test"
REFRESH = 1.0


def test_a_dns_name_is_spread_over_its_addresses_and_followed_when_they_change(fleet, start_load):
    url = f"dns:///{NAME}:{PORT}"
    if not _endpoint_accepted(f"dns:///localhost:{PORT}"):
        pytest.skip("RPCClient does not take dns:/// endpoints on this branch yet (issue 15)")
    address = fleet.hosts.address
    fleet.hosts.set_hosts(CLIENT_HOST, {NAME: [address(host) for host in SERVER_HOSTS]})
    spare = fleet.start(SPARE_HOST, announce=False)
    try:
        load = start_load([url], 11, "--option", f"refresh={REFRESH}")
        steady = load.wait_seconds(4, timeout=30)
        spare.process.wait_for("Serving ", timeout=60)
        # One address gone, another new: the resolver's answer, changed under the client.
        changed = time.monotonic()
        fleet.hosts.set_hosts(CLIENT_HOST, {NAME: [address(2), address(3), address(SPARE_HOST)]})
        summary = load.summary()
    finally:
        spare.process.stop()
    report = f"changed at {changed:.2f}\n{load.process.output}"
    assert_even(shares(fleet, steady[1:]), SERVER_HOSTS)
    followed = [s for s in load.events("second") if s["t"] - 1 >= changed + REFRESH + 2]
    assert len(followed) >= 3, report
    for second in followed:
        assert shares(fleet, [second]).get(1, 0) == 0, f"{second}\n{report}"
    assert_even(shares(fleet, followed), (2, 3, SPARE_HOST))
    assert load.events("failure") == [], report
    assert summary["failures"] == 0
