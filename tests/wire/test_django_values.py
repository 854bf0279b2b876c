"""Django-native calls against a real runrpc: values, typed errors, keyword arguments, context."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from django.core.exceptions import (
    MultipleObjectsReturned,
    ObjectDoesNotExist,
    PermissionDenied,
    ValidationError,
)
from django.test import RequestFactory
from django.utils import translation

from django_zrpc import RemoteError, RPCClient
from django_zrpc.context import RequestContextMiddleware
from django_zrpc.exceptions import (
    RemoteDoesNotExist,
    RemotePermissionDenied,
    RemoteValidationError,
)
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket

VALUES = {
    "aware": datetime.datetime(2026, 11, 23, 5, 0, 1, 5, tzinfo=datetime.UTC),
    "naive": datetime.datetime(2026, 11, 23, 5, 0, 1),
    "date": datetime.date(2026, 11, 23),
    "time": datetime.time(5, 0, 1),
    "decimal": decimal.Decimal("7.99"),
    "uuid": uuid.uuid4(),
    "tuple": (1, (2, "3")),
    "set": {1, 2},
    "frozenset": frozenset({"x"}),
}


@pytest.fixture
def client(server):
    with RPCClient(server.endpoint, timeout=10) as client:
        yield client


@pytest.mark.parametrize("name", VALUES)
def test_values_reach_the_function_and_come_back_as_the_same_type(client, name):
    value = VALUES[name]
    type_name, back = client.type_of(value)
    assert type_name == type(value).__name__
    assert back == value
    assert type(back) is type(value)


def test_a_plain_zerorpc_client_gets_readable_values(server):
    with server.client() as stock:
        ticket = stock.get_ticket(1)
    assert ticket["price"] == "1.99"
    assert datetime.datetime.fromisoformat(ticket["created_at"]).tzinfo is not None
    # A django_zrpc caller gets the model's own types.
    with RPCClient(server.endpoint) as client:
        ticket = client.get_ticket(1)
    assert ticket["price"] == decimal.Decimal("1.99")
    assert isinstance(ticket["created_at"], datetime.datetime)


def test_an_unsendable_result_is_a_remote_error_naming_type_and_function(client):
    with pytest.raises(RemoteError) as raised:
        client.unsendable()
    assert raised.value.name == "TypeError"
    assert "rpc unsendable cannot send its result" in raised.value.msg
    assert "complex cannot be sent over RPC" in raised.value.msg
    assert client.echo(1) == 1


def test_an_unsendable_argument_fails_before_it_is_sent(client):
    with pytest.raises(TypeError, match=r"Cannot call echo: complex cannot be sent"):
        client.echo(1j)
    assert client.connections() == 1


# -- errors ---------------------------------------------------------------------


def test_model_does_not_exist_is_raised_as_the_models_own_class(client):
    with pytest.raises(Ticket.DoesNotExist) as raised:
        client.get_ticket(-5)
    error = raised.value
    assert isinstance(error, ObjectDoesNotExist)
    assert isinstance(error, RemoteDoesNotExist)
    assert isinstance(error, RemoteError)
    assert error.name == "DoesNotExist"
    assert error.model == "tickets.Ticket"
    assert "matching query does not exist" in error.msg


def test_multiple_objects_returned_keeps_its_model_class(client):
    with pytest.raises(Ticket.MultipleObjectsReturned) as raised:
        client.raise_django_error("multiple")
    assert isinstance(raised.value, MultipleObjectsReturned)


def test_permission_denied_is_permission_denied(client):
    with pytest.raises(PermissionDenied, match="Only the back office") as raised:
        client.raise_django_error("permission")
    assert isinstance(raised.value, RemotePermissionDenied)


def test_validation_error_keeps_fields_messages_and_codes(client):
    with pytest.raises(ValidationError) as raised:
        client.raise_django_error("validation_fields")
    error = raised.value
    assert isinstance(error, RemoteValidationError)
    assert error.message_dict == {
        "title": ["Ensure this value has at least 3 characters."],
        "price": ["Enter a number."],
    }
    assert [e.code for e in error.error_dict["title"]] == ["min_length"]
    with pytest.raises(ValidationError) as raised:
        client.raise_django_error("validation_list")
    assert raised.value.messages == ["First.", "Second."]
    assert [e.code for e in raised.value.error_list] == ["one", None]


def test_a_registered_exception_is_raised_as_its_class_with_its_arguments(client):
    with pytest.raises(SoldOut) as raised:
        client.reserve(id=1, seats=9)
    error = raised.value
    assert (error.ticket_id, error.wanted) == (1, 9)
    assert str(error) == "Ticket 1 has no 9 seats left."
    assert isinstance(error, RemoteError)
    assert error.name == "SoldOut"


def test_other_exceptions_stay_remote_errors(client):
    with pytest.raises(RemoteError) as raised:
        client.raise_django_error("nothing")
    assert type(raised.value) is RemoteError
    assert raised.value.name == "KeyError"


# -- keyword arguments ------------------------------------------------------------


def test_keyword_arguments_reach_the_function(client):
    assert client.describe_args(1, c=5, d=6) == {
        "a": 1,
        "b": 2,
        "rest": (),
        "c": 5,
        "more": {"d": 6},
    }
    assert client.describe_args(a=1, b=3)["b"] == 3
    assert client.describe_args(1, 2, 3, 4)["rest"] == (3, 4)
    assert client.call("describe_args", 1, kwargs={"timeout": 9})["more"] == {"timeout": 9}
    assert client.get_ticket(id=1)["id"] == 1


def test_a_wrong_keyword_is_a_remote_type_error(client):
    with pytest.raises(RemoteError) as raised:
        client.get_ticket(pk=1)
    assert raised.value.name == "TypeError"
    assert "unexpected keyword argument 'pk'" in raised.value.msg


def test_plain_zerorpc_clients_still_call_positionally(server):
    with server.client() as stock:
        assert stock.describe_args(1, 2, 3)["rest"] == [3]
        assert stock.get_ticket(1)["id"] == 1


# -- context ----------------------------------------------------------------------


def test_the_request_id_user_and_language_travel_into_the_function_and_nested_calls(server, client):
    mark = server.mark()
    seen = {}

    class User:
        pk = 42
        is_authenticated = True

    def view(request):
        with translation.override("de"):
            seen["direct"] = client.call_context()
            seen["nested"] = client.nested_call_context(server.endpoint)
            seen["yes"] = client.translated_yes()
        from django.http import HttpResponse

        return HttpResponse("ok")

    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="req-123")
    request.user = User()
    response = RequestContextMiddleware(view)(request)
    assert response["X-Request-ID"] == "req-123"
    for key in ("direct", "nested"):
        assert seen[key]["request_id"] == "req-123"
        assert seen[key]["user_id"] == 42
        assert seen[key]["language"] == "de"
    assert seen["direct"]["function"] == "call_context"
    assert seen["yes"] == "Ja"
    # The server's log line names the request.
    server.wait_for("rpc call_context [request req-123] OK", since=mark)


def test_a_request_without_an_id_gets_one(client):
    seen = {}

    def view(request):
        seen["context"] = client.call_context()
        from django.http import HttpResponse

        return HttpResponse("ok")

    response = RequestContextMiddleware(view)(RequestFactory().get("/"))
    assert len(response["X-Request-ID"]) == 32
    assert seen["context"]["request_id"] == response["X-Request-ID"]
    assert seen["context"]["user_id"] is None
    # Outside a request, no id goes.
    assert client.call_context()["request_id"] is None


def test_context_values_that_could_forge_log_lines_are_left_out():
    from django.http import HttpResponse

    from django_zrpc.context import CallContext

    seen = {}

    def view(request):
        seen["id"] = request.request_id
        return HttpResponse("ok")

    RequestContextMiddleware(view)(
        RequestFactory().get("/", HTTP_X_REQUEST_ID="a\n[INFO] forged line")
    )
    assert len(seen["id"]) == 32
    context = CallContext.from_header(
        "f", {"request_id": "x\ny", "user_id": True, "language": 5}, None
    )
    assert (context.request_id, context.user_id, context.language) == (None, None, None)
