"""``dns:///name:port``: every address a name resolves to, as gRPC's DNS resolver does.

The name is resolved with ``getaddrinfo`` (the system's resolver: DNS,
``/etc/hosts``, a Kubernetes headless Service's A records), again every
``refresh`` seconds, and soon after a call finds an address dead, but not
more than once a second.
"""

from __future__ import annotations

import socket
import time

from django_zrpc.discovery.directory import WatchedDirectory

#: Seconds between two lookups at the least, however often failures ask for one.
MIN_INTERVAL = 1.0


def split(source: str) -> tuple[str, int]:
    """Return the host and port of ``dns:///host:port``; raise ``ValueError`` if it is not one."""
    prefix = "dns:///"
    rest = source[len(prefix) :] if source.startswith(prefix) else ""
    host, _, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ValueError(
            f"{source!r} is not a DNS endpoint; write it like 'dns:///tickets-rpc.internal:4242' "
            "(three slashes: the system's resolver is used)."
        )
    return host, int(port)


def endpoint(address: str, port: int) -> str:
    """Return the ZeroMQ endpoint of an IPv4 or IPv6 ``address``."""
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


class DNSDirectory(WatchedDirectory):
    """The addresses of one name, resolved every ``refresh`` seconds."""

    def __init__(self, source: str, refresh: float) -> None:
        self.host, self.port = split(source)
        self.refresh = refresh
        self._last = 0.0
        super().__init__(source)

    def watch_once(self) -> float:
        wait = self._last + MIN_INTERVAL - time.monotonic()
        if wait > 0:
            return wait
        self._last = time.monotonic()
        try:
            found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as err:
            self.unreachable(err, f"Cannot resolve {self.host!r} for {self.source}")
            return self.refresh
        self.reached()
        self.update([endpoint(str(info[4][0]), self.port) for info in found])
        return self.refresh
