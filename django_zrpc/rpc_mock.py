"""``RPCMock``: answer the calls of ``RPCClient`` and ``AsyncRPCClient`` with ``unittest.mock``.

    def test_checkout(rpc_mock, client):            # pytest, the plugin's fixture
        rpc_mock["place_order"].return_value = {"id": 7}
        client.post("/checkout/", {"ticket": 3})
        rpc_mock["place_order"].assert_called_once_with(ticket=3)

    with RPCMock() as rpc_mock:                     # unittest, or anywhere
        rpc_mock["ticket_list"].return_value = [{"id": 1}, {"id": 2}]

While active, every call of the process is answered here, without sockets or
a server. A function registered in the project is mocked with its signature
(``create_autospec``) and its contract (its type hints, as the server checks
them): a call that does not fit fails as the server would refuse it, and the
mock gets the arguments converted as the function would. Arguments and
results go through the wire encoding both ways, so what could not be sent
fails as it would over the wire; an exception raised by a mock
(``side_effect``) reaches the caller as the server's error would. A call to
a function that has no mock fails with an ``AssertionError`` naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from unittest import mock

from django_zrpc import conf
from django_zrpc.client import tracing
from django_zrpc.client.observed import function_kwargs
from django_zrpc.contracts.validate import Contract
from django_zrpc.registry import Registry, rpc
from django_zrpc.wire import protocol, remote_errors

_unpacker = protocol.Unpacker()


def round_trip(value: Any) -> Any:
    """Return ``value`` as the other side of a call would read it (packed, then unpacked)."""
    blob = protocol.pack("OK", [value], {"message_id": "mock", "v": protocol.PROTOCOL_VERSION})
    return _unpacker.unpack(blob).args[0]


def as_raised(err: Exception) -> Exception:
    """Return the exception a caller gets when a server function raises ``err``."""
    detail = remote_errors.encode(err)
    return remote_errors.decode(type(err).__name__, str(err), None, detail)


class RPCMock:
    """The mocks of RPC functions by name; answers every call while started.

    ``rpc_mock["name"]`` makes the mock on first use (a ``MagicMock`` for a
    function the project does not register). ``add(name, stream=True)``
    says that an unregistered function streams; a registered one streams if
    it is registered so, and an unregistered one whose mock returns an
    iterator (a generator) is answered as a stream too.
    """

    def __init__(self, registry: Registry = rpc) -> None:
        self.registry = registry
        self.mocks: dict[str, Any] = {}
        self._streams: set[str] = set()
        # The contracts of the registered functions mocked, as the server checks them.
        self._contracts: dict[str, Contract] = {}
        self._previous: Any = None

    # -- the mocks -----------------------------------------------------------

    def add(self, name: str, stream: bool | None = None) -> Any:
        """Return the mock of ``name``, made now if it has none."""
        found = self.mocks.get(name)
        if found is None:
            if name in self.registry:
                entry = self.registry[name]
                found = mock.create_autospec(entry.func, name=name)
                if entry.stream:
                    self._streams.add(name)
                spec = entry.spec if entry.validate else None
                if spec is not None:
                    check = bool(conf.get("CHECK_RESULTS"))
                    self._contracts[name] = Contract(spec, check_results=check)
            else:
                found = mock.MagicMock(name=name)
            self.mocks[name] = found
        if stream:
            self._streams.add(name)
        return found

    def __getitem__(self, name: str) -> Any:
        return self.add(name)

    def __contains__(self, name: object) -> bool:
        return name in self.mocks

    # -- active or not -------------------------------------------------------

    def start(self) -> RPCMock:
        """Answer every call of the process from now on, until ``stop()``."""
        self._previous = tracing.set_answerer(self)
        return self

    def stop(self) -> None:
        """Let calls go to their servers again (or to the mock active before this one)."""
        tracing.set_answerer(self._previous)
        self._previous = None

    def __enter__(self) -> RPCMock:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- answering (called through client/tracing.py) ---------------------------

    def _answer(self, name: str, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        found = self.mocks.get(name)
        if found is None:
            raise AssertionError(
                f"RPC function {name!r} was called, and rpc_mock has no mock of it: "
                f"set rpc_mock[{name!r}].return_value (or .side_effect) before the call."
            )
        sent_args, sent_kwargs = round_trip([list(args), function_kwargs(options)])
        contract = self._contracts.get(name)
        try:
            if contract is not None:
                # As the server does before the function runs: checked, converted.
                sent_args, sent_kwargs = contract.bind(sent_args, sent_kwargs)
            result = found(*sent_args, **sent_kwargs)
            if name in self._streams or (
                isinstance(result, Iterator) and name not in self.registry
            ):
                return _items(name, result, contract)
            if contract is not None:
                result = contract.encode_result(result)
        except Exception as err:
            raise as_raised(err) from None
        try:
            return round_trip(result)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"The mock of RPC function {name!r} returned {result!r:.200}, which could "
                f"not be sent over RPC: {err}"
            ) from err

    def call(self, client: Any, name: str, *args: Any, **options: Any) -> Any:
        """Answer ``client.call(name, *args, **options)`` (``RPCClient``)."""
        return self._answer(name, args, options)

    async def call_async(self, client: Any, name: str, *args: Any, **options: Any) -> Any:
        """Answer ``await client.call(name, *args, **options)`` (``AsyncRPCClient``)."""
        result = self._answer(name, args, options)
        if isinstance(result, Iterator):
            return _AsyncItems(result)
        return result


def _items(name: str, result: Any, contract: Contract | None) -> Iterator[Any]:
    if not isinstance(result, Iterable):
        raise TypeError(
            f"The mock of stream {name!r} returned {result!r:.200}, which is not iterable: "
            "set its return_value to a list or a generator of the items."
        )
    if contract is None:
        return (round_trip(item) for item in result)
    return (round_trip(contract.encode_item(item)) for item in result)


class _AsyncItems(AsyncIterator[Any]):
    """A mock's stream items for ``async for``."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    async def __anext__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _AsyncItems:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        pass

    def close(self) -> None:
        pass
