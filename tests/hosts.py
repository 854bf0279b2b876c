"""Test hosts on this machine: network namespaces on a bridge, each with its own address.

``TestHosts(4)`` makes a Linux bridge in the root namespace with the address
``10.A.B.254/24`` (a random private /24 that no address or route here uses),
and four namespaces, each with ``lo`` up and one end of a veth pair as
``10.A.B.N/24`` (N = 1..4), the other end on the bridge. Names carry a random
suffix so that parallel runs do not collide. Then:

- ``run(host, argv)`` starts a process in a host (``ip netns exec``; host
  ``None``: on the test machine itself) and keeps what it prints;
- ``partition(host)`` / ``rejoin(host)`` take the bridge's end of the host's
  link down and up: its packets go nowhere, no connection is closed (a
  partition, not a clean close);
- ``set_hosts(host, {name: [ips]})`` rewrites the host's ``/etc/hosts`` (the
  file ``/etc/netns/NS/hosts`` that ``ip netns exec`` mounts over it) in
  place, so that processes already running in the host resolve the new
  addresses: glibc reads the file at every lookup and returns every address
  it lists for a name. The host's ``resolv.conf`` names no reachable server:
  a name missing from the file fails at once instead of waiting for DNS.

``close()`` stops the processes it started (by their process ids), deletes
the namespaces, the links and ``/etc/netns/NS``, also after a failure. Making
hosts needs root and ``ip``: ``HostsUnavailable`` says why they cannot be made.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# Nothing listens on the namespace's own loopback port 53: a lookup that the
# hosts file does not answer fails at once.
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


class HostsUnavailable(Exception):
    """Test hosts cannot be made here; the message says why."""


def _ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done.stdout


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this machine's addresses and routes (not the default route)."""
    found = []
    for line in _ip("-4", "-o", "addr").splitlines() + _ip("-4", "route").splitlines():
        for word in line.split():
            if word[:1].isdigit():
                try:
                    network = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if network.prefixlen > 0:
                    found.append(network)
    return found


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.A.B.0/24 that overlaps nothing this machine has."""
    used = _networks_in_use()
    for _ in range(200):
        candidate = ipaddress.ip_network(
            f"10.{random.randint(16, 250)}.{random.randint(1, 254)}.0/24"
        )
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise HostsUnavailable(f"No free 10.x.y.0/24 network: {len(used)} in use here.")


def check_possible() -> None:
    """Raise ``HostsUnavailable`` if this process cannot make network namespaces."""
    if os.geteuid() != 0:
        raise HostsUnavailable("making network namespaces needs root")
    if shutil.which("ip") is None:
        raise HostsUnavailable("the ip command (iproute2) is not installed")


class HostProcess:
    """A process started in a test host, and every line it printed (stdout and stderr)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, cwd: Path | None) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid  # ip netns exec runs the command in its own process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float, since: int = 0) -> None:
        """Wait until a line printed after ``since`` contains ``text``; raise if it ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[since:]):
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(
                    f"{self.argv[0]} exited ({self.proc.returncode}) before printing "
                    f"{text!r}:\n{self.output}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"{self.argv} did not print {text!r} within {timeout}s:\n{self.output}"
        )

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; return its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process (by its id), SIGKILL it after ``timeout``; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


class TestHosts:
    """``count`` test hosts on one bridge; use as a context manager, or call ``close()``."""

    __test__ = False  # not a pytest test class

    def __init__(self, count: int) -> None:
        check_possible()
        self.count = count
        self.suffix = secrets.token_hex(3)
        self.bridge = f"zb{self.suffix}"
        self.namespaces: list[str] = []
        self.processes: list[HostProcess] = []
        self._links: list[str] = []  # bridge-side veth ends, host 1 first
        self._bridge_made = False
        self.subnet = _free_subnet()
        try:
            self._make()
        except subprocess.CalledProcessError as err:
            self.close()
            raise HostsUnavailable(
                f"{' '.join(err.cmd)} failed ({err.returncode}): {err.stderr.strip()}"
            ) from err
        except BaseException:
            self.close()
            raise

    def address(self, host: int) -> str:
        """The IPv4 address of host ``host`` (1..count)."""
        return str(self.subnet.network_address + host)

    @property
    def bridge_address(self) -> str:
        """The test machine's own address on the hosts' network."""
        return str(self.subnet.network_address + 254)

    def namespace(self, host: int) -> str:
        return self.namespaces[host - 1]

    def _make(self) -> None:
        _ip("link", "add", "name", self.bridge, "type", "bridge", "forward_delay", "0")
        self._bridge_made = True
        _ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in range(1, self.count + 1):
            namespace = f"zrpc-{self.suffix}-{host}"
            _ip("netns", "add", namespace)
            self.namespaces.append(namespace)
            etc = NETNS_ETC / namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(BASE_HOSTS)
            (etc / "resolv.conf").write_text(RESOLV_CONF)
            outside, inside = f"zv{self.suffix}{host}", f"zp{self.suffix}{host}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._links.append(outside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", self.bridge, "up")
            _ip("link", "set", "lo", "up", netns=namespace)
            _ip("addr", "add", f"{self.address(host)}/24", "dev", inside, netns=namespace)
            _ip("link", "set", inside, "up", netns=namespace)

    # -- processes ---------------------------------------------------------------

    def run(
        self,
        host: int | None,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> HostProcess:
        """Start ``argv`` in host ``host`` (``None``: on the test machine); stopped at close."""
        prefix = [] if host is None else ["ip", "netns", "exec", self.namespace(host)]
        process = HostProcess([*prefix, *argv], env, cwd)
        self.processes.append(process)
        return process

    # -- the network -------------------------------------------------------------

    def partition(self, host: int) -> None:
        """Cut host ``host`` off: its link goes down at the bridge, its connections stay open."""
        _ip("link", "set", self._links[host - 1], "down")

    def rejoin(self, host: int) -> None:
        """Bring host ``host``'s link back up."""
        _ip("link", "set", self._links[host - 1], "up")

    def set_hosts(self, host: int, names: dict[str, list[str]]) -> None:
        """Make ``names`` resolve to their addresses in host ``host``, for running processes too.

        The file is rewritten in place: ``ip netns exec`` bind-mounted this
        inode over the process's /etc/hosts, and a new file (a rename) would
        not be seen.
        """
        lines = [f"{ip}\t{name}\n" for name, ips in names.items() for ip in ips]
        with open(NETNS_ETC / self.namespace(host) / "hosts", "r+") as hosts:
            hosts.write(BASE_HOSTS + "".join(lines))
            hosts.truncate()

    # -- cleaning up ---------------------------------------------------------------

    def close(self) -> None:
        """Stop the processes started here, delete the namespaces, links and files made here."""
        errors = []
        for process in self.processes:  # all at once: each takes its time to stop
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.stop()
            except Exception as err:  # go on cleaning up
                errors.append(f"stopping pid {process.pid}: {err}")
        self.processes = []
        for namespace in self.namespaces:
            # Deleting a namespace deletes its veth end, and so its peer on the bridge.
            done = subprocess.run(
                ["ip", "netns", "del", namespace], capture_output=True, text=True, timeout=30
            )
            if done.returncode != 0:
                errors.append(f"ip netns del {namespace}: {done.stderr.strip()}")
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
        self.namespaces = []
        for link in [*self._links, self.bridge] if self._bridge_made else self._links:
            # Gone already with its namespace, unless making the host stopped halfway.
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        self._links = []
        self._bridge_made = False
        if errors:
            raise RuntimeError("Cleaning up the test hosts: " + "; ".join(errors))

    def __enter__(self) -> TestHosts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
