"""Named clients from the ``ZRPC_CLIENTS`` setting, the way ``CACHES`` works.

    ZRPC_CLIENTS = {
        "default": {"ENDPOINTS": ["tcp://10.0.0.5:4242", "tcp://10.0.0.6:4242"], "TIMEOUT": 5},
    }

    from django_zrpc import clients, default_client
    clients["default"].get_ticket(1)
    default_client.get_ticket(1)          # the same client

One ``RPCClient`` per name per process (it keeps its own pools per thread), made
on first use from the setting as it is then.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from django_zrpc.client import RPCClient, client_keys, validate_endpoints
from django_zrpc.curve import CurveKeyError
from django_zrpc.exceptions import ZRPCConfigurationError

#: Keys of a ZRPC_CLIENTS entry -> RPCClient keyword arguments.
OPTIONS = {
    "TIMEOUT": "timeout",
    "HEARTBEAT": "heartbeat",
    "POOL_SIZE": "pool_size",
    "CALLS_PER_CONNECTION": "calls_per_connection",
    "POOL_TIMEOUT": "pool_timeout",
    "DOWN_FOR": "down_for",
    "CURVE_SECRET": "curve_secret",
    "CURVE_SERVER": "curve_server",
}


def client_errors(alias: Any, config: Any) -> list[str]:
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
    for key in ("TIMEOUT", "POOL_TIMEOUT", "DOWN_FOR", "HEARTBEAT"):
        if key not in config:
            continue
        value = config[key]
        if value is None and key in ("HEARTBEAT", "POOL_TIMEOUT"):
            continue  # no heartbeats; the call's timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            errors.append(f"{where}['{key}'] must be a number of seconds above 0, not {value!r}.")
    try:
        client_keys(config.get("CURVE_SECRET"), config.get("CURVE_SERVER"))
    except CurveKeyError as err:
        errors.append(f"{where}: {err}")
    for key in ("POOL_SIZE", "CALLS_PER_CONNECTION"):
        size = config.get(key, 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            errors.append(f"{where}['{key}'] must be an integer of 1 or more, not {size!r}.")
    return errors


class ClientHandler:
    """``clients["name"]``: the RPCClient configured under that name."""

    def __init__(self) -> None:
        self._clients: dict[str, RPCClient] = {}
        self._lock = threading.Lock()

    def __getitem__(self, alias: str) -> RPCClient:
        client = self._clients.get(alias)
        if client is not None:
            return client
        with self._lock:
            if alias not in self._clients:
                self._clients[alias] = self._create(alias)
            return self._clients[alias]

    def _create(self, alias: str) -> RPCClient:
        configured = getattr(settings, "ZRPC_CLIENTS", {})
        if alias not in configured:
            raise ZRPCConfigurationError(
                f"No RPC client named {alias!r}: add it to ZRPC_CLIENTS "
                f"(configured: {sorted(configured) or 'none'})."
            )
        config = configured[alias]
        errors = client_errors(alias, config)
        if errors:
            raise ZRPCConfigurationError(" ".join(errors))
        options = {OPTIONS[key]: value for key, value in config.items() if key in OPTIONS}
        return RPCClient(config["ENDPOINTS"], **options)

    def reset(self) -> None:
        """Forget the clients made so far (after the setting changed)."""
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


clients = ClientHandler()


class _DefaultClient:
    """``default_client``: ``clients["default"]``, looked up at each use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(clients["default"], name)

    def __call__(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        return clients["default"].call(name, *args, timeout=timeout, kwargs=kwargs)

    def __repr__(self) -> str:
        return "<default_client: clients['default']>"


default_client = _DefaultClient()


def _reset_on_change(setting: str, **kwargs: Any) -> None:
    if setting == "ZRPC_CLIENTS":
        clients.reset()


setting_changed.connect(_reset_on_change, dispatch_uid="django_zrpc.named_clients.reset")
