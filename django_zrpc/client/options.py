"""What a client may be given, checked in one place: ``RPCClient``'s options and ``ZRPC_CLIENTS``.

Imports no socket code, so that the system checks can use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from django_zrpc.client.retry import RetryBudget
from django_zrpc.discovery import DEFAULT_REFRESH, is_discovery
from django_zrpc.exceptions import CurveKeyError, ZRPCConfigurationError

#: This process's id, renewed in a child made by fork, for both clients to
#: tell their own connections from inherited ones: os.getpid() is a system
#: call each time, and every call checked it twice (2026-11-29: 0.7 of the
#: 4.6 us a call spent in RPCClient). Read it as ``client_options.pid``.
pid = os.getpid()


def _renew_pid() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)

#: Keys of a ZRPC_CLIENTS entry -> RPCClient keyword arguments.
OPTIONS = {
    "TIMEOUT": "timeout",
    "HEARTBEAT": "heartbeat",
    "POOL_SIZE": "pool_size",
    "CALLS_PER_CONNECTION": "calls_per_connection",
    "POOL_TIMEOUT": "pool_timeout",
    "DOWN_FOR": "down_for",
    "CONNECT_TIMEOUT": "connect_timeout",
    "IDEMPOTENT": "idempotent",
    "REFRESH": "refresh",
    "CURVE_SECRET": "curve_secret",
    "CURVE_SERVER": "curve_server",
    "RETRY_BUDGET": "retry_budget",
    "RETRY_RATIO": "retry_ratio",
}

_SECONDS = ("timeout", "heartbeat", "pool_timeout", "down_for", "connect_timeout", "refresh")
_MAY_BE_NONE = ("heartbeat", "pool_timeout")  # no heartbeats; the call's timeout
_COUNTS = ("pool_size", "calls_per_connection")

_ENDPOINT_RE = re.compile(r"^(tcp://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}|ipc://\S+)$")


def validate_endpoints(endpoints: Any) -> list[str]:
    """Return ``endpoints`` as a list, or raise ``ValueError`` quoting the bad one.

    Either ``tcp://``/``ipc://`` endpoints, or one ``dns:///`` or ``redis://``
    source of them (``django_zrpc.discovery``).
    """
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not isinstance(endpoints, list | tuple) or not endpoints:
        raise ValueError(
            f"Endpoints must be a 'tcp://host:port' string or a non-empty list of them, "
            f"not {endpoints!r}."
        )
    sources = [e for e in endpoints if isinstance(e, str) and is_discovery(e)]
    if sources:
        if len(endpoints) > 1:
            raise ValueError(
                f"{sources[0]!r} finds the servers itself: give it alone, not in a list "
                f"with others ({list(endpoints)!r})."
            )
        _check_source(sources[0])
        return list(endpoints)
    for endpoint in endpoints:
        if not isinstance(endpoint, str) or not _ENDPOINT_RE.match(endpoint):
            raise ValueError(
                f"{endpoint!r} is not an endpoint; write it like 'tcp://127.0.0.1:4242', "
                "'dns:///tickets-rpc.internal:4242' or "
                "'redis://redis.internal:6379/0?service=tickets'."
            )
    return list(endpoints)


def _check_source(source: str) -> None:
    if source.startswith("dns:"):
        from django_zrpc.discovery import dns

        dns.split(source)
    else:
        from django_zrpc.discovery import redis_registry

        redis_registry.split(source)


def option_errors(options: dict[str, Any]) -> dict[str, str]:
    """Return, per bad ``RPCClient`` keyword argument in ``options``, what it must be.

    Each message is a sentence without its subject: ``"must be ..., not 0."``.
    """
    errors = {}
    for option in _SECONDS:
        if option not in options:
            continue
        value = options[option]
        if value is None and option in _MAY_BE_NONE:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            errors[option] = f"must be a number of seconds above 0, not {value!r}."
    if not isinstance(options.get("idempotent", False), bool):
        errors["idempotent"] = f"must be True or False, not {options['idempotent']!r}."
    for option in _COUNTS:
        value = options.get(option, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors[option] = f"must be an integer of 1 or more, not {value!r}."
    budget = options.get("retry_budget")
    if budget is not None and not (_is_number(budget) and 0 <= budget <= 1000):
        errors["retry_budget"] = (
            f"must be a number of tokens from 0 to 1000 (0: none), not {budget!r}."
        )
    ratio = options.get("retry_ratio")
    if ratio is not None and not (_is_number(ratio) and 0 < ratio <= 1):
        errors["retry_ratio"] = f"must be a share of a token above 0 and at most 1, not {ratio!r}."
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_options(options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every bad ``RPCClient`` keyword argument in ``options``."""
    errors = option_errors(options)
    if errors:
        raise ValueError(" ".join(f"{option} {error}" for option, error in errors.items()))


def entry_errors(alias: Any, config: Any) -> list[str]:
    """Return what is wrong with one ``ZRPC_CLIENTS`` entry, as whole sentences."""
    where = f"ZRPC_CLIENTS[{alias!r}]"
    if not isinstance(config, dict):
        return [f"{where} must be a dict, not {config!r}."]
    errors = []
    unknown = sorted(set(config) - set(OPTIONS) - {"ENDPOINTS"})
    if unknown:
        errors.append(
            f"{where} has unknown keys {unknown}; known: ENDPOINTS, {', '.join(OPTIONS)}."
        )
    try:
        validate_endpoints(config.get("ENDPOINTS"))
    except ValueError as err:
        errors.append(f"{where}['ENDPOINTS']: {err}")
    else:
        errors.extend(_source_errors(where, config["ENDPOINTS"]))
    keys = {option: key for key, option in OPTIONS.items()}
    options = {OPTIONS[key]: value for key, value in config.items() if key in OPTIONS}
    for option, error in option_errors(options).items():
        errors.append(f"{where}['{keys[option]}'] {error}")
    secret, server = config.get("CURVE_SECRET"), config.get("CURVE_SERVER")
    if secret is not None or server is not None:
        from django_zrpc.curve import client_keys  # reads key files; needs pyzmq

        try:
            client_keys(secret, server)
        except CurveKeyError as err:
            errors.append(f"{where}: {err}")
    return errors


def _source_errors(where: str, endpoints: Any) -> list[str]:
    """Say what a source of endpoints needs that is not installed."""
    first = endpoints if isinstance(endpoints, str) else endpoints[0]
    if first.startswith(("redis://", "rediss://")):
        from django_zrpc.discovery.redis_registry import redis_module

        try:
            redis_module()
        except ZRPCConfigurationError as err:
            return [f"{where}['ENDPOINTS']: {err}"]
    return []


def configured_clients() -> dict[str, Any]:
    """Return ``ZRPC_CLIENTS`` as it is now ({} when unset, or with no Django settings at all)."""
    from django_zrpc.conf import settings_available

    return getattr(settings, "ZRPC_CLIENTS", {}) if settings_available() else {}


def client_entry(alias: str) -> tuple[list[str], dict[str, Any]]:
    """Return the endpoints and ``RPCClient`` keyword arguments of ``ZRPC_CLIENTS[alias]``.

    Raises ``ZRPCConfigurationError`` when there is no such entry or it is wrong.
    """
    configured = configured_clients()
    if not isinstance(configured, dict) or alias not in configured:
        names = sorted(configured) if isinstance(configured, dict) else []
        raise ZRPCConfigurationError(
            f"No RPC client named {alias!r}: add it to ZRPC_CLIENTS "
            f"(configured: {names or 'none'})."
        )
    config = configured[alias]
    errors = entry_errors(alias, config)
    if errors:
        raise ZRPCConfigurationError(" ".join(errors))
    options = {OPTIONS[key]: value for key, value in config.items() if key in OPTIONS}
    return validate_endpoints(config["ENDPOINTS"]), options


def _client_contracts(schema: Any) -> Any:
    """The contracts of an OpenRPC document, or ClientContracts given as they are."""
    from django_zrpc.contracts.client_side import client_contracts

    return client_contracts(schema)


class ClientOptions:
    """What ``RPCClient`` and ``AsyncRPCClient`` are given, checked once and kept.

    Also their ``Balancer`` (``django_zrpc.balancer``): where calls go among
    the endpoints, or among the addresses a ``dns:///`` or ``redis://``
    source lists.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 30.0,
        heartbeat: float | None = 5.0,
        pool_size: int = 10,
        calls_per_connection: int = 100,
        pool_timeout: float | None = None,
        down_for: float = 5.0,
        connect_timeout: float = 1.0,
        idempotent: bool = False,
        refresh: float = DEFAULT_REFRESH,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_server: str | os.PathLike[str] | None = None,
        retry_budget: float | None = None,
        retry_ratio: float | None = None,
        schema: Any = None,
    ) -> None:
        from django_zrpc import conf
        from django_zrpc.client.balancer import Balancer
        from django_zrpc.curve import client_keys  # reads key files; needs pyzmq

        self.endpoints = validate_endpoints(endpoints)
        check_options(
            {
                "timeout": timeout,
                "heartbeat": heartbeat,
                "pool_size": pool_size,
                "calls_per_connection": calls_per_connection,
                "pool_timeout": pool_timeout,
                "down_for": down_for,
                "connect_timeout": connect_timeout,
                "idempotent": idempotent,
                "refresh": refresh,
                "retry_budget": retry_budget,
                "retry_ratio": retry_ratio,
            }
        )
        self.curve = client_keys(curve_secret, curve_server)
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.pool_size = pool_size
        self.calls_per_connection = calls_per_connection
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self.down_for = down_for
        self.connect_timeout = connect_timeout
        self.idempotent = idempotent
        self.refresh = refresh
        self.retry_budget = conf.get("RETRY_BUDGET") if retry_budget is None else retry_budget
        self.retry_ratio = conf.get("RETRY_RATIO") if retry_ratio is None else retry_ratio
        # Per endpoint, made at its first failure: one that never failed
        # costs a call nothing but a dictionary lookup.
        self._budgets: dict[str, RetryBudget] = {}
        self._balancer = Balancer(self.endpoints, refresh, down_for)
        self._closed = False
        # Calls are checked against the schema before they are sent; without one, a test.
        self._contracts = None if schema is None else _client_contracts(schema)

    def _connection_options(self) -> dict[str, Any]:
        """What each connection of either client's pools is made with."""
        return {
            "timeout": self.timeout,
            "heartbeat": self.heartbeat,
            "connect_timeout": self.connect_timeout,
            "curve": self.curve,
        }

    def _give_back_failed(
        self, pool: Any, endpoint: str, connection: Any, error: BaseException
    ) -> None:
        """End a failed attempt's hold on ``connection``, in either client's pool.

        A server gone silent, unreachable or stopping retires the connection
        (its other calls end on their own); otherwise (a function's error, a
        timeout, the caller giving up) the connection is fine.
        """
        if self._balancer.failed(endpoint, error):
            pool.discard(connection)
        else:
            pool.release(connection)

    def _budget(self, endpoint: str) -> RetryBudget:
        budget = self._budgets.get(endpoint)
        if budget is None:
            # setdefault: of two threads failing here first, one bucket is kept.
            budget = self._budgets.setdefault(
                endpoint, RetryBudget(self.retry_budget, self.retry_ratio)
            )
        return budget

    def _attempt_succeeded(self, endpoint: str) -> None:
        """Give back to ``endpoint``'s retry budget, if it has spent any."""
        budget = self._budgets.get(endpoint)
        if budget is not None:
            budget.succeeded()
