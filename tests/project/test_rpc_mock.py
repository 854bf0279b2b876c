"""``rpc_mock`` answers both clients' calls without a server; ``call_local`` runs one in-process.

The clients point at a port nothing listens on: a call that reached for a
socket would time out, so an answer proves it came from the mock.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import unittest

import pytest
from django.test import TestCase

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.exceptions import InvalidArguments, RemoteError
from django_zrpc.registry import Registry
from django_zrpc.testing import RPCMock, call_local
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket
from tests.conftest import free_port
from tests.typed.rpcs import Line


@pytest.fixture
def nowhere() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def client(nowhere):
    with RPCClient(nowhere, timeout=2) as made:
        yield made


def test_a_mock_answers_and_records_the_calls_of_rpcclient(rpc_mock, client):
    rpc_mock["get_ticket"].return_value = {"id": 7, "title": "Concert"}
    assert client.get_ticket(id=7) == {"id": 7, "title": "Concert"}
    assert client.call("get_ticket", 8) == {"id": 7, "title": "Concert"}
    rpc_mock["get_ticket"].assert_any_call(id=7)
    assert [c.args for c in rpc_mock["get_ticket"].call_args_list] == [(), (8,)]
    assert client.connections() == 0


def test_a_mock_answers_the_asyncio_client(rpc_mock, nowhere):
    rpc_mock["reserve"].return_value = {"id": 3, "seats": 2}
    rpc_mock["ticket_list"].return_value = [{"id": 1}, {"id": 2}]

    async def calls():
        async with AsyncRPCClient(nowhere, timeout=2) as aclient:
            reserved = await aclient.reserve(3, seats=2)
            items = [item async for item in await aclient.ticket_list(2)]
            return reserved, items

    assert asyncio.run(calls()) == ({"id": 3, "seats": 2}, [{"id": 1}, {"id": 2}])
    rpc_mock["reserve"].assert_called_once_with(3, seats=2)


def test_a_registered_function_is_mocked_with_its_signature(rpc_mock, client):
    rpc_mock["reserve"].return_value = {"id": 1, "seats": 1}
    # reserve(id, seats=1): the server would refuse an unknown keyword.
    with pytest.raises(RemoteError, match="unexpected keyword argument 'chairs'"):
        client.reserve(1, chairs=2)
    rpc_mock["reserve"].assert_not_called()


def test_a_registered_function_is_mocked_with_its_contract(rpc_mock, client):
    rpc_mock["place_order"].return_value = 3
    lines = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]
    assert client.place_order(lines, ship_to="here") == 3
    # The mock got what the function would: the lines as the dataclass of its hints.
    rpc_mock["place_order"].assert_called_once_with([Line("a", 1), Line("b", 2)], ship_to="here")
    with pytest.raises(InvalidArguments) as caught:
        client.place_order([{"sku": "a", "qty": "two"}], ship_to="here")
    assert [path for path, _ in caught.value.errors] == ["lines[0].qty"]
    assert rpc_mock["place_order"].call_count == 1
    # A result that does not fit the promise fails as the server would refuse it.
    rpc_mock["typed_echo"].return_value = 5
    with pytest.raises(RemoteError, match="does not fit its annotation str") as refused:
        client.typed_echo("x")
    assert refused.value.name == "InvalidResult"


def test_a_call_without_a_mock_names_the_function_and_the_fix(rpc_mock, client):
    with pytest.raises(AssertionError, match=r"'get_ticket'.*rpc_mock\['get_ticket'\]"):
        client.get_ticket(id=1)


def test_arguments_and_results_go_through_the_wire_encoding(rpc_mock, client):
    rpc_mock["echo"].side_effect = lambda value: value
    when = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
    assert client.echo((1, decimal.Decimal("2.50"), when)) == (1, decimal.Decimal("2.50"), when)
    rpc_mock["echo"].side_effect = None
    rpc_mock["echo"].return_value = object()
    with pytest.raises(TypeError, match="could not be sent over RPC"):
        client.echo(1)


def test_an_error_of_a_mock_reaches_the_caller_as_the_servers_would(rpc_mock, client):
    rpc_mock["reserve"].side_effect = SoldOut(1, 9)
    with pytest.raises(SoldOut, match="Ticket 1 has no 9 seats left"):
        client.reserve(1, seats=9)


def test_a_mock_returning_an_iterable_answers_a_stream(rpc_mock, client):
    rpc_mock["ticket_list"].return_value = [{"id": 1}, {"id": 2}]
    assert list(client.ticket_list(2)) == [{"id": 1}, {"id": 2}]
    # A function the project does not register streams when its mock yields.
    rpc_mock["elsewhere"].return_value = iter([1, 2, 3])
    assert list(client.elsewhere()) == [1, 2, 3]


def test_no_mock_once_it_stopped(nowhere):
    with RPCMock() as mocks:
        mocks["get_ticket"].return_value = {"id": 1}
        with RPCClient(nowhere, timeout=0.5) as client:
            assert client.get_ticket(id=1) == {"id": 1}
    with RPCClient(nowhere, timeout=0.5) as client:
        with pytest.raises(Exception, match=r"127\.0\.0\.1"):
            client.get_ticket(id=1)


class RPCMockInUnittest(unittest.TestCase):
    def test_the_context_manager(self):
        with RPCMock() as mocks:
            mocks["fail"].return_value = "fine"
            with RPCClient(f"tcp://127.0.0.1:{free_port()}", timeout=2) as client:
                assert client.fail("x") == "fine"
            mocks["fail"].assert_called_once_with("x")


# -- call_local ------------------------------------------------------------------


@pytest.mark.django_db
def test_call_local_runs_the_function_and_encodes_its_result():
    ticket = Ticket.objects.create(title="Local", price="3.25")
    assert call_local("get_ticket", id=ticket.pk)["title"] == "Local"
    items = call_local("ticket_list", 1000)
    assert ticket.pk in [item["id"] for item in items]


@pytest.mark.django_db
def test_call_local_raises_what_a_caller_would_catch():
    with pytest.raises(Ticket.DoesNotExist):
        call_local("get_ticket", id=-1)
    with pytest.raises(RemoteError, match="boom") as caught:
        call_local("fail", "boom")
    assert caught.value.name == "ValueError"
    with pytest.raises(RemoteError, match="get_tickt") as caught:
        call_local("get_tickt", id=1)
    assert caught.value.name == "NameError"


def test_call_local_checks_and_converts_by_the_contract():
    assert call_local("place_order", [{"sku": "a", "qty": 2}], ship_to="x") == 2
    with pytest.raises(InvalidArguments, match=r"lines\[0\]\.qty"):
        call_local("place_order", [{"sku": "a", "qty": "two"}], ship_to="x")
    assert call_local("count_lines", 2) == [
        {"sku": "sku-0", "qty": 0, "price": decimal.Decimal(0)},
        {"sku": "sku-1", "qty": 1, "price": decimal.Decimal(0)},
    ]
    with pytest.raises(RemoteError, match="does not fit its annotation int") as refused:
        call_local("wrong_result", 1)
    assert refused.value.name == "InvalidResult"


HOOKS_SEEN: list[str] = []


class RecordingMiddleware:
    def server_before_exec(self, request):
        HOOKS_SEEN.append(f"before {request.name}")

    def server_after_exec(self, request, reply):
        HOOKS_SEEN.append(f"after {reply.args[0]!r}")

    def server_inspect_exception(self, request, reply, task_context, exc_info):
        HOOKS_SEEN.append(f"error {reply.args[0]}")

    def server_after_call(self, request, exc_info):
        HOOKS_SEEN.append("end")


def test_call_local_runs_the_middleware_hooks_in_order():
    registry = Registry()

    @registry.register()
    def add(a, b=1):
        return a + b

    HOOKS_SEEN.clear()
    middleware = [f"{__name__}.RecordingMiddleware"]
    assert call_local("add", 2, b=3, registry=registry, middleware=middleware) == 5
    with pytest.raises(RemoteError):
        call_local("add", "x", registry=registry, middleware=middleware)
    assert HOOKS_SEEN == ["before add", "after 5", "end", "before add", "error TypeError", "end"]


def test_call_local_sets_the_calls_context():
    registry = Registry()

    @registry.register()
    def where():
        from django_zrpc import current_call

        return current_call().function

    assert call_local("where", registry=registry) == "where"


class CallLocalInTestCase(TestCase):
    def test_the_test_transaction_survives_the_database_middleware(self):
        ticket = Ticket.objects.create(title="In the transaction", price="1.00")
        assert call_local("get_ticket", id=ticket.pk)["title"] == "In the transaction"
        assert Ticket.objects.filter(pk=ticket.pk).exists()


def test_call_local_closes_the_calls_connection_as_runrpc_does(django_db_setup, django_db_blocker):
    from django.db import connection

    # Outside a test transaction, as runrpc is, but not with
    # django_db(transaction=True): its flush at the end would empty the demo
    # tickets that this worker's later tests read through runrpc.
    with django_db_blocker.unblock():
        ticket = Ticket.objects.create(title="Committed", price="2.00")
        try:
            connection.close()
            # CONN_MAX_AGE is 0: the database middleware closes what the call opened.
            assert call_local("get_ticket", id=ticket.pk)["title"] == "Committed"
            assert connection.connection is None
            assert call_local("get_ticket", id=ticket.pk, middleware=[])["title"] == "Committed"
            assert connection.connection is not None
        finally:
            ticket.delete()
