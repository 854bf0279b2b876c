"""``manage.py rpchealth [ENDPOINT]``: exit 0 when the server answers a ping in time, 1 if not.

For exec probes (Kubernetes' ``livenessProbe.exec``) and scripts: it asks the
server for zerorpc's ``_zerorpc_ping`` over the RPC socket itself, so it
proves what a caller needs, and says why in one line when it cannot.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_zrpc.addrport import AddrPort, parse_addrport
from django_zrpc.client.gevent.connection import Client
from django_zrpc.client.options import validate_endpoints
from django_zrpc.curve import client_keys
from django_zrpc.exceptions import CurveKeyError, RemoteError, TimeoutExpired
from django_zrpc.management.commands.rpccall import _local_endpoint

#: Seconds to wait for the answer by default: a probe's own timeout is often 1-5 s.
DEFAULT_TIMEOUT = 2.0


class Command(BaseCommand):
    help = "Ping an RPC server: exit 0 if it answers within --timeout, 1 saying why if not."

    requires_system_checks: list[str] = []  # a probe runs often: it only pings

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "endpoint",
            nargs="?",
            help="tcp://host:port, or runrpc's [addr:]port (default: ZRPC_ADDRPORT here).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help=f"Seconds to wait for the answer (default: {DEFAULT_TIMEOUT:g}).",
        )
        parser.add_argument("--curve-secret", metavar="FILE", help="This client's key_secret.")
        parser.add_argument("--curve-server", metavar="FILE", help="The server's public key.")

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = options["timeout"]
        if not timeout > 0:
            raise CommandError(f"--timeout must be greater than 0, not {timeout!r}.")
        endpoint = _endpoint(options["endpoint"])
        try:
            keys = client_keys(options["curve_secret"], options["curve_server"])
        except CurveKeyError as err:
            raise CommandError(str(err)) from err
        started = time.monotonic()
        client = Client(endpoint, timeout=timeout, connect_timeout=timeout, curve=keys)
        try:
            answer = client.call("_zerorpc_ping")
        except RemoteError as err:
            message = f"{endpoint} answered the ping with {err.name}: {err.msg}"
            raise CommandError(_one_line(message)) from err
        except TimeoutExpired as err:  # ServerUnavailable and HandshakeFailed among them
            raise CommandError(_one_line(f"{endpoint} did not answer a ping: {err}")) from err
        except Exception as err:
            raise CommandError(_one_line(f"{endpoint} cannot be pinged: {err}")) from err
        finally:
            client.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        name = answer[1] if isinstance(answer, list | tuple) and len(answer) > 1 else answer
        self.stdout.write(f"{endpoint}: pong from {name} in {elapsed_ms:.1f} ms")


def _endpoint(value: str | None) -> str:
    """Return the endpoint to ping: ``value`` (an endpoint or an addrport), else ZRPC_ADDRPORT's."""
    if value is None:
        return _local_endpoint()
    if "://" in value:
        try:
            validate_endpoints(value)
        except ValueError as err:
            raise CommandError(str(err)) from err
        return value
    try:
        addrport = parse_addrport(value)
    except ValueError as err:
        raise CommandError(f"{value!r} is neither an endpoint nor an addrport: {err}") from err
    if addrport.host in ("0.0.0.0", "::"):  # a server listening everywhere: ping it here
        addrport = AddrPort("127.0.0.1", addrport.port, ipv6=False)
    return addrport.endpoint


def _one_line(message: str) -> str:
    return " ".join(message.split())
