"""Parse runrpc's ``addrport`` argument with runserver's grammar."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

# The same shapes Django's runserver accepts: a port, ipv4:port, [ipv6]:port
# or fqdn:port.
_ADDRPORT_RE = re.compile(
    r"""^(?:
        (?P<addr>
            (?P<ipv4>\d{1,3}(?:\.\d{1,3}){3}) |
            \[(?P<ipv6>[a-fA-F0-9:.]+)\] |
            (?P<fqdn>[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*)
        ):)?(?P<port>\d+)$""",
    re.X,
)

DEFAULT_HOST = "127.0.0.1"


class AddrPort(NamedTuple):
    host: str
    port: int
    ipv6: bool

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the address (127.0.0.0/8, ::1, localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to any address

    @property
    def endpoint(self) -> str:
        """Return the ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:4242``."""
        host = f"[{self.host}]" if self.ipv6 else self.host
        return f"tcp://{host}:{self.port}"


def parse_addrport(value: str) -> AddrPort:
    """Parse ``value`` or raise ``ValueError`` with a message that quotes it."""
    match = _ADDRPORT_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{value!r} is not a port number or address:port pair; "
            "use e.g. 4242, 127.0.0.1:4242 or [::1]:4242."
        )
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"Port {port} in {value!r} is out of range; use 1 to 65535.")
    if match["ipv4"] and any(int(part) > 255 for part in match["ipv4"].split(".")):
        raise ValueError(f"{match['ipv4']!r} in {value!r} is not an IPv4 address.")
    if match["ipv6"]:
        return AddrPort(match["ipv6"], port, ipv6=True)
    return AddrPort(match["addr"] or DEFAULT_HOST, port, ipv6=False)
