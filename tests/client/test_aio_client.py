"""AsyncRPCClient against runrpc and against a stock zerorpc 0.6.3 server (issue 16).

The same calls as ``test_client_core.py`` makes with the gevent client, from
``async def`` tests: results, keyword arguments, Django values, typed remote
errors, streams past the first credit, calls longer than heartbeats,
concurrency on one socket, timeouts.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from decimal import Decimal

import pytest
import pytest_asyncio
from django.core.exceptions import ObjectDoesNotExist, ValidationError

from django_zrpc import AsyncRPCClient, async_clients
from django_zrpc.exceptions import RemoteDoesNotExist, RemoteError, TimeoutExpired
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket
from tests.client.test_client_core import STOCK_ENDPOINTS, StockServer

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", params=["zerorpc", "runrpc"])
def endpoint(request):
    """A server with echo, sleep, fail and count_up, heartbeat 1 s: one of each kind."""
    if request.param == "zerorpc":
        server = StockServer()
        STOCK_ENDPOINTS.add(server.endpoint)
        yield server.endpoint
        server.stop()
    else:
        yield request.getfixturevalue("server").endpoint


@pytest_asyncio.fixture
async def client(endpoint):
    client = AsyncRPCClient(endpoint, timeout=10, heartbeat=1)
    yield client
    await client.aclose()


async def test_call(client):
    assert await client.echo({"a": [1, 2]}) == {"a": [1, 2]}
    assert await client.call("echo", "x", timeout=5) == "x"
    assert await client("echo", 3) == 3


async def test_remote_error_has_name_and_message(client):
    with pytest.raises(RemoteError) as raised:
        await client.fail("boom")
    assert raised.value.name == "ValueError"
    assert raised.value.msg == "boom"


async def test_stream_of_250_items_needs_more_credit_than_the_first_100(client):
    stream = await client.count_up(250)
    assert [item async for item in stream] == list(range(250))


async def test_call_lasting_three_heartbeats(client):
    assert await client.sleep(3) == 3


async def test_sixty_four_concurrent_calls_share_one_socket(endpoint):
    async with AsyncRPCClient(endpoint, timeout=10, heartbeat=1) as client:
        results = await asyncio.gather(*(client.sleep(0.5) for _ in range(64)))
        assert results == [0.5] * 64
        # 64 calls of 0.5 s at once: at 100 calls a connection, they fit on
        # the pool's connections without waiting, and finish together.
        assert client.connections() <= 64 // 4


async def test_calls_ride_one_connection_a_runrpc_process_and_spread_over_a_stock_servers(
    endpoint,
):
    async with AsyncRPCClient(endpoint, timeout=10, heartbeat=1) as client:
        # A burst opens up to SPREAD_AT calls' worth of connections.
        await asyncio.gather(*(client.sleep(0.2) for _ in range(64)))
        pool = client._state().pools[endpoint]
        opened = pool.connections
        calls = asyncio.gather(*(client.sleep(0.5) for _ in range(64)))
        await asyncio.sleep(0.2)
        carrying = [count for count in pool.lending.calls.values() if count]
        await calls
    assert opened == 10
    if endpoint in STOCK_ENDPOINTS:
        assert len(carrying) == 10  # which process each reaches is not known
    else:
        assert carrying == [64]  # runrpc named itself: one connection to its one process


async def test_timeout_is_raised_within_the_timeout(client):
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        await client.sleep(5, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5


async def test_a_slow_stream_reader_is_not_timed_out_between_items(endpoint):
    async with AsyncRPCClient(endpoint, timeout=0.5, heartbeat=1) as client:
        items = []
        async for item in await client.count_up(3):
            await asyncio.sleep(0.7)
            items.append(item)
        assert items == [0, 1, 2]


# -- runrpc only: django_zrpc's own wire extensions -------------------------------


@pytest_asyncio.fixture
async def rpc(server):
    client = AsyncRPCClient(server.endpoint, timeout=10)
    yield client
    await client.aclose()


async def test_keyword_arguments(rpc):
    described = await rpc.describe_args(1, c=5, z=2)
    assert described == {"a": 1, "b": 2, "rest": (), "c": 5, "more": {"z": 2}}
    assert (await rpc.call("describe_args", 1, kwargs={"b": 7}))["b"] == 7


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        datetime.date(2024, 5, 1),
        Decimal("12.50"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        (1, "two"),
        {3, 4},
    ],
)
async def test_django_values_arrive_as_themselves(rpc, value):
    assert await rpc.type_of(value) == [type(value).__name__, value]


async def test_typed_remote_errors(rpc):
    with pytest.raises(Ticket.DoesNotExist) as missing:
        await rpc.get_ticket(id=-1)
    assert isinstance(missing.value, ObjectDoesNotExist | RemoteDoesNotExist)
    with pytest.raises(ValidationError) as invalid:
        await rpc.raise_django_error("validation_fields")
    assert invalid.value.message_dict["price"] == ["Enter a number."]
    with pytest.raises(SoldOut):
        await rpc.raise_django_error("sold_out")


async def test_django_values_go_plain_to_a_stock_server():
    stock = StockServer()
    try:
        async with AsyncRPCClient(stock.endpoint, timeout=10) as client:
            value = {"pair": (1, 2), "when": datetime.date(2026, 11, 23)}
            assert await client.echo(value) == {"pair": [1, 2], "when": "2026-11-23"}
            with pytest.raises(TypeError, match="not a django_zrpc server"):
                await client.echo(1, key="word")
    finally:
        stock.stop()


async def test_async_clients_are_built_from_zrpc_clients(server, settings):
    settings.ZRPC_CLIENTS = {"default": {"ENDPOINTS": [server.endpoint], "TIMEOUT": 5}}
    client = async_clients["default"]
    assert client is async_clients["default"]
    assert client.timeout == 5
    assert await client.echo("named") == "named"
    client.close()


async def test_the_request_id_user_and_language_travel_from_an_async_view(rpc, server):
    from django.contrib.auth.models import User
    from django.http import HttpResponse
    from django.test import AsyncRequestFactory
    from django.utils import translation

    from django_zrpc.context import RequestContextMiddleware

    seen = {}
    user = User(pk=42, username="async")

    async def view(request):
        with translation.override("de"):
            seen["context"] = await rpc.call_context()
        return HttpResponse("ok")

    async def auser():
        return user  # what AuthenticationMiddleware sets: the user, read without blocking

    request = AsyncRequestFactory().get("/", headers={"X-Request-ID": "areq-7"})
    request.auser = auser
    middleware = RequestContextMiddleware(view)
    assert asyncio.iscoroutinefunction(middleware)  # Django runs it in the request's task
    response = await middleware(request)
    assert response["X-Request-ID"] == "areq-7"
    assert seen["context"]["request_id"] == "areq-7"
    assert seen["context"]["user_id"] == 42
    assert seen["context"]["language"] == "de"


async def test_a_bad_option_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="refresh must be a number of seconds above 0, not 0"):
        AsyncRPCClient("tcp://127.0.0.1:4242", refresh=0)


async def test_the_time_left_travels_with_the_call(rpc):
    # Issue 17's deadline header, sent by the asyncio client as by RPCClient.
    left = await rpc.call("time_left", timeout=4)
    assert 3 < left <= 4
