"""``manage.py rpccall NAME [ARG ...]``: call a function on a running server, print its result."""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from django_zrpc import conf
from django_zrpc.addrport import AddrPort, parse_addrport
from django_zrpc.client.gevent.connection import Client, Stream
from django_zrpc.client.options import client_entry, configured_clients, validate_endpoints
from django_zrpc.curve import client_keys
from django_zrpc.exceptions import (
    CurveKeyError,
    LostRemote,
    RemoteError,
    ServerUnavailable,
    TimeoutExpired,
    ZRPCConfigurationError,
)
from django_zrpc.management import require_rpcs_modules

_KEYWORD_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


class _Encoder(DjangoJSONEncoder):
    """Django's JSON encoder, plus sets and bytes."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return sorted(o, key=repr)
        if isinstance(o, bytes):
            return o.decode("utf-8", "backslashreplace")
        return super().default(o)


def parse_arguments(values: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Split ``ARG`` and ``key=ARG`` values into positional and keyword arguments.

    Each ARG is read as JSON (``1``, ``"1"``, ``[1, 2]``, ``{"a": null}``); one
    that is not JSON is taken as a string.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for value in values:
        match = _KEYWORD_RE.match(value)
        if match:
            kwargs[match[1]] = _json_or_text(match[2])
        elif kwargs:
            raise CommandError(f"Positional argument {value!r} follows a keyword argument.")
        else:
            args.append(_json_or_text(value))
    return args, kwargs


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class Command(BaseCommand):
    help = (
        "Call an RPC function on a running server and print its result as JSON "
        "(a stream: one line per item). Each ARG is JSON, or text; key=ARG is a "
        "keyword argument."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The function's registered name.")
        parser.add_argument("arguments", nargs="*", metavar="ARG", help="Arguments.")
        parser.add_argument(
            "--endpoint",
            help="The server, e.g. tcp://127.0.0.1:4242 (default: the first endpoint of "
            "--client, else of ZRPC_CLIENTS['default'], else ZRPC_ADDRPORT on this machine).",
        )
        parser.add_argument(
            "--client",
            metavar="ALIAS",
            help="Take the endpoint, timeout and CURVE keys from ZRPC_CLIENTS[ALIAS].",
        )
        parser.add_argument("--timeout", type=float, help="Seconds to wait (default: 30).")
        parser.add_argument("--curve-secret", metavar="FILE", help="This client's key_secret.")
        parser.add_argument("--curve-server", metavar="FILE", help="The server's public key.")

    def handle(self, *args: Any, **options: Any) -> None:
        # The server is most often this project's runrpc, which cannot serve
        # the broken module either: say so now rather than time out.
        require_rpcs_modules()
        call_args, call_kwargs = parse_arguments(options["arguments"])
        endpoints, config = self._client_entry(options["client"])
        endpoint = options["endpoint"] or (endpoints[0] if endpoints else _local_endpoint())
        try:
            validate_endpoints(endpoint)
            keys = client_keys(
                options["curve_secret"] or config.get("curve_secret"),
                options["curve_server"] or config.get("curve_server"),
            )
        except (ValueError, CurveKeyError) as err:
            raise CommandError(str(err)) from err
        timeout = options["timeout"] or config.get("timeout") or 30.0
        client = Client(endpoint, timeout=timeout, curve=keys)
        try:
            result = client.call(options["name"], *call_args, kwargs=call_kwargs)
            if isinstance(result, Stream):
                for item in result:
                    self.stdout.write(json.dumps(item, cls=_Encoder))
            else:
                self.stdout.write(json.dumps(result, cls=_Encoder, indent=2))
        except RemoteError as err:
            raise CommandError(f"{options['name']} raised {err.name}: {err.msg}") from err
        except ServerUnavailable as err:
            # Its message names the function and the endpoint, and says what to do.
            raise CommandError(str(err)) from err
        except (TimeoutExpired, LostRemote) as err:
            raise CommandError(f"{options['name']} at {endpoint}: {err}") from err
        finally:
            client.close()

    def _client_entry(self, alias: str | None) -> tuple[list[str], dict[str, Any]]:
        """Return the endpoints and options of ``--client``, else of the default client, if any."""
        if alias is None:
            if "default" not in configured_clients():
                return [], {}
            alias = "default"
        try:
            return client_entry(alias)
        except ZRPCConfigurationError as err:
            raise CommandError(str(err)) from err


def _local_endpoint() -> str:
    """Return the endpoint of ``ZRPC_ADDRPORT`` on this machine."""
    try:
        addrport = parse_addrport(conf.get("ADDRPORT"))
    except ValueError as err:
        raise CommandError(f"ZRPC_ADDRPORT is invalid: {err}") from err
    if addrport.host in ("0.0.0.0", "::"):  # listening everywhere: call it here
        addrport = AddrPort("127.0.0.1", addrport.port, ipv6=False)
    return addrport.endpoint
