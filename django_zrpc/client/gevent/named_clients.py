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

from django.core.signals import setting_changed

from django_zrpc.client.gevent.rpc_client import RPCClient
from django_zrpc.client.options import client_entry


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
        endpoints, options = client_entry(alias)
        return RPCClient(endpoints, **options)

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
