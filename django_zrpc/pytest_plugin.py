"""pytest fixtures for projects that use django-zrpc (loaded by pytest when it is installed).

``rpc_server``: a ``django_zrpc.testing.LiveRPCServer`` for the project's
registry, per test. ``rpc_client``: an ``RPCClient`` of it. Both need
pytest-django (a test that reaches the database also needs its ``db``
fixture or ``django_db`` mark, as any other). ``rpc_mock``: a
``django_zrpc.testing.RPCMock`` answering every call the test makes through
``RPCClient`` or ``AsyncRPCClient``, without a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def rpc_server() -> Iterator[Any]:
    """A live RPC server of the project's registry, on 127.0.0.1 and a free port."""
    from django_zrpc.testing import LiveRPCServer

    server = LiveRPCServer()
    yield server
    server.stop()


@pytest.fixture
def rpc_client(rpc_server: Any) -> Iterator[Any]:
    """An ``RPCClient`` of ``rpc_server``."""
    client = rpc_server.client()
    yield client
    client.close()


@pytest.fixture
def rpc_mock() -> Iterator[Any]:
    """Mocks answering the test's RPC calls: ``rpc_mock["name"].return_value = ...``."""
    from django_zrpc.rpc_mock import RPCMock

    with RPCMock() as mocks:
        yield mocks
