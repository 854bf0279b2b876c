"""Test RPC functions as they are served: a live server in the test's own process.

    # pytest (with pytest-django): the plugin is loaded when django-zrpc is installed
    def test_get_ticket(db, rpc_client):
        ticket = Ticket.objects.create(title="Concert", price=10)
        assert rpc_client.get_ticket(id=ticket.pk)["title"] == "Concert"

    # Django's TestCase
    class TicketTests(RPCTestMixin, TestCase):
        def test_get_ticket(self):
            ticket = Ticket.objects.create(title="Concert", price=10)
            self.assertEqual(self.rpc.get_ticket(id=ticket.pk)["title"], "Concert")

The server is runrpc's, for the project's registry (or one you pass), bound to
127.0.0.1 on a free port, and the calls go over TCP like any other. It runs on
the gevent loop of the test's thread, while the test waits for a reply, so
its functions use the test's database connection and see what the test wrote,
also inside ``TestCase``'s transaction. Three differences from ``runrpc``: the
database middleware is left out (it would close the test's connection), the
process is not monkey-patched, so functions run one at a time, and a typed
function's result that does not fit its annotation is an error
(``ZRPC_CHECK_RESULTS``, unless set, is True here whatever ``DEBUG`` says). A
``blocking=True`` function runs in a thread with a connection of its own,
which does not see the test's uncommitted rows.

Without a server: ``RPCMock`` (the ``rpc_mock`` fixture) answers the calls of
the code under test with ``unittest.mock`` objects, and ``call_local(name,
*args, **kwargs)`` runs one registered function through the server's
middleware in the test's own process::

    def test_checkout(rpc_mock, client):
        rpc_mock["place_order"].return_value = {"id": 7}
        client.post("/checkout/", {"ticket": 3})
        rpc_mock["place_order"].assert_called_once_with(ticket=3)

    class CheckoutTests(TestCase):
        def test_checkout(self):
            with RPCMock() as rpc_mock:
                rpc_mock["place_order"].return_value = {"id": 7}
                self.client.post("/checkout/", {"ticket": 3})
            self.assertEqual(call_local("get_ticket", id=1)["id"], 1)
"""

from __future__ import annotations

from typing import Any

import gevent
from django.conf import settings

from django_zrpc import conf
from django_zrpc.client.gevent.rpc_client import RPCClient
from django_zrpc.registry import Registry, rpc
from django_zrpc.rpc_mock import RPCMock
from django_zrpc.server.build import build_server, load_middleware
from django_zrpc.server.local import call_local

__all__ = ["LiveRPCServer", "RPCMock", "RPCTestMixin", "call_local"]


class LiveRPCServer:
    """runrpc's server for ``registry``, serving in this process on 127.0.0.1 and a free port."""

    def __init__(self, registry: Registry = rpc, **options: Any) -> None:
        options.setdefault(
            "middleware",
            load_middleware([m for m in conf.get("MIDDLEWARE") if m != conf.DB_MIDDLEWARE]),
        )
        # The test's connections are the test's to close; the test's own code
        # holds the loop between calls, which is not a stall.
        options.setdefault("on_worker_exit", None)
        options.setdefault("stall_after", 0)
        options.setdefault("stop_linger", 0)
        options.setdefault("concurrency", 10)
        if getattr(settings, "ZRPC_CHECK_RESULTS", None) is None:
            # Tests run with DEBUG off, and a test is where a result that
            # breaks its function's annotation should fail.
            options.setdefault("check_results", True)
        self.server = build_server(registry=registry, **options)
        bound = self.server.bind("tcp://127.0.0.1:0")  # tcp://[::ffff:127.0.0.1]:PORT
        self.port = int(bound.rsplit(":", 1)[1])
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self._greenlet = gevent.spawn(self.server.run)

    def client(self, **options: Any) -> RPCClient:
        """Return an ``RPCClient`` of this server; ``options`` as RPCClient takes them."""
        options.setdefault("timeout", 10)
        return RPCClient(self.endpoint, **options)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.stop()
        self._greenlet.join(timeout=10)
        self.server.close()

    def __enter__(self) -> LiveRPCServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class RPCTestMixin:
    """A ``LiveRPCServer`` as ``self.rpc_server`` and its client as ``self.rpc``, per test.

    Mix it in before Django's ``TestCase`` (or ``TransactionTestCase``);
    ``rpc_registry`` chooses another registry than the project's.
    """

    rpc_registry: Registry | None = None

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.rpc_server = LiveRPCServer(self.rpc_registry or rpc)
        self.addCleanup(self.rpc_server.stop)  # type: ignore[attr-defined]
        self.rpc = self.rpc_server.client()
        self.addCleanup(self.rpc.close)  # type: ignore[attr-defined]
