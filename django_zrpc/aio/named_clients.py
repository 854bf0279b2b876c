"""``async_clients[...]``: an ``AsyncRPCClient`` per ``ZRPC_CLIENTS`` entry, as ``clients`` is.

    from django_zrpc import async_clients

    async def ticket(request, id):
        ticket = await async_clients["default"].get_ticket(id=id)

One client per name per process, made on first use from the setting as it is
then (each keeps its own pools per event loop); forgotten when the setting
changes.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed

from django_zrpc.aio.rpc_client import AsyncRPCClient
from django_zrpc.client.options import client_entry


class AsyncClientHandler:
    """``async_clients["name"]``: the AsyncRPCClient configured under that name."""

    def __init__(self) -> None:
        self._clients: dict[str, AsyncRPCClient] = {}
        self._lock = threading.Lock()

    def __getitem__(self, alias: str) -> AsyncRPCClient:
        client = self._clients.get(alias)
        if client is not None:
            return client
        with self._lock:
            if alias not in self._clients:
                endpoints, options = client_entry(alias)
                self._clients[alias] = AsyncRPCClient(endpoints, **options)
            return self._clients[alias]

    def reset(self) -> None:
        """Forget the clients made so far (after the setting changed).

        Their connections close with their event loops, or when dropped: a
        setting changes outside any loop, where they cannot be closed.
        """
        with self._lock:
            self._clients = {}


async_clients = AsyncClientHandler()


def _reset_on_change(setting: str, **kwargs: Any) -> None:
    if setting == "ZRPC_CLIENTS":
        async_clients.reset()


setting_changed.connect(_reset_on_change, dispatch_uid="django_zrpc.aio.named_clients.reset")
