"""The pytest fixtures and the TestCase mixin that django-zrpc gives its users."""

from __future__ import annotations

import pytest
from django.test import TestCase

from django_zrpc.registry import Registry
from django_zrpc.testing import LiveRPCServer, RPCTestMixin
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket


def test_the_plugin_is_loaded_from_the_installed_package(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("django_zrpc")


@pytest.mark.django_db
def test_rpc_client_calls_the_projects_functions_and_sees_the_tests_rows(rpc_server, rpc_client):
    assert rpc_server.endpoint.startswith("tcp://127.0.0.1:")
    # Rows another test committed (the demo tickets) go too, in this test's
    # transaction: the server sees what the test sees, whatever ran before.
    Ticket.objects.all().delete()
    ticket = Ticket.objects.create(title="Concert", price="10.50")
    assert rpc_client.get_ticket(id=ticket.pk)["title"] == "Concert"
    assert [row["id"] for row in rpc_client.ticket_list(5)] == [ticket.pk]
    with pytest.raises(SoldOut):
        rpc_client.reserve(ticket.pk, seats=5)


def test_a_live_server_of_another_registry(db):
    registry = Registry()

    @registry.register()
    def add(a, b=1):
        return a + b

    with LiveRPCServer(registry) as live:
        client = live.client()
        assert client.add(2, b=3) == 5
        assert client._zerorpc_list() == ["add"]
        client.close()


class MixinTests(RPCTestMixin, TestCase):
    def test_the_mixin_gives_a_server_and_a_client_inside_the_tests_transaction(self):
        ticket = Ticket.objects.create(title="Opera", price=3)
        assert self.rpc.get_ticket(ticket.pk)["title"] == "Opera"
        with pytest.raises(Ticket.DoesNotExist):
            self.rpc.get_ticket(ticket.pk + 1000)
        assert self.rpc_server.endpoint.startswith("tcp://127.0.0.1:")


@pytest.mark.django_db
def test_a_view_that_calls_rpc_is_tested_against_rpc_server(rpc_server, settings, client):
    # As docs/topics/testing.rst shows: the view's named client points at the
    # live server, which answers from the test's own database.
    settings.ZRPC_CLIENTS = {"default": {"ENDPOINTS": [rpc_server.endpoint]}}
    ticket = Ticket.objects.create(title="Recital", price="12.00")
    response = client.get(f"/tickets/{ticket.pk}/")
    assert response.status_code == 200
    assert response.json()["title"] == "Recital"
    assert client.get("/tickets/0/").status_code == 404
