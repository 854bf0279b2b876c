"""The caller's side of a contract: what generated stubs and a client given a schema use.

- ``encode`` and ``decode``: a dataclass argument to the map the wire
  carries, a result back to its annotation (msgspec, strict);
- ``ClientContracts``: an OpenRPC document's functions as ``Contract``\\ s,
  so that ``RPCClient(..., schema=document)`` refuses a bad call with
  ``InvalidArguments`` before it leaves the process;
- ``TypedRPCClient`` and ``TypedAsyncRPCClient``: what mypy sees as the
  base of a generated ``Client``: the clients without ``CallByName``'s
  ``__getattr__`` (which returns ``Any`` for any name), so that a misspelt
  function is an error. At run time the base is the real client.

Like the rest of ``contracts/``, it imports no client, socket or settings.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from django_zrpc.contracts.from_schema import Runtime, shape
from django_zrpc.contracts.signature import REQUIRED, FunctionSpec, ParamSpec
from django_zrpc.exceptions import InvalidResult, UnsupportedAnnotation

#: What the wire packs itself (``wire/values.py``): ``encode`` leaves them as they are.
_WIRE_TYPES = (
    bytes,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
    set,
    frozenset,
)


# typing.Self is Python 3.11's; the package runs on 3.10 too.
_Client = TypeVar("_Client")


class _Omitted:
    """The default of a parameter whose default the schema does not say: left out of the call."""

    def __repr__(self) -> str:
        return "OMITTED"


#: Typed ``Any`` so that it is every parameter's valid default for mypy.
OMITTED: Any = _Omitted()


def encode(value: Any) -> Any:
    """Return ``value`` as the wire carries it: dataclasses and Structs as maps."""
    return msgspec.to_builtins(value, builtin_types=_WIRE_TYPES)


def decode(value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation``; raise ``InvalidResult`` if it does not fit."""
    try:
        return msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError as err:
        raise InvalidResult(
            f"The server returned {value!r}, which does not fit {_name(annotation)}: {err}. "
            "Regenerate the client if the server's functions changed."
        ) from err


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def decode_items(stream: Iterable[Any], annotation: Any) -> Iterator[Any]:
    """Iterate over a stream's items decoded; closing it closes the stream."""
    try:
        for item in stream:
            yield decode(item, annotation)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


async def decode_async_items(stream: Any, annotation: Any) -> AsyncIterator[Any]:
    """Iterate over an asyncio stream's items decoded; closing it closes the stream."""
    try:
        async for item in stream:
            yield decode(item, annotation)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def given(
    names: Sequence[str], values: Sequence[Any], positional: int
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Split a generated method's arguments into what to send by position and by name.

    The first ``positional`` go by position until one is ``OMITTED``; the
    rest go by name, those left out not at all, so that the server's own
    defaults apply.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for index, (name, value) in enumerate(zip(names, values, strict=True)):
        if value is OMITTED:
            continue
        if index < positional and len(args) == index:
            args.append(value)
        else:
            kwargs[name] = value
    return tuple(args), kwargs


class ClientContracts:
    """The contracts of an OpenRPC document's functions, for checks on the caller's side.

    Made once per client: each function's parameter schemas become Python
    types (``from_schema``) and a ``Contract`` the server would build from
    the same hints, so that a bad call is refused with the server's words.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("methods"), list):
            raise TypeError(
                f"schema= takes an OpenRPC document (a dict with 'methods', as "
                f"manage.py rpcschema prints it), not {type(document).__name__}."
            )
        from django_zrpc.contracts.validate import Contract

        runtime = Runtime(document.get("components", {}).get("schemas", {}))
        self._contracts: dict[str, Any] = {}
        for method in document["methods"]:
            if not isinstance(method, Mapping) or not isinstance(method.get("name"), str):
                continue
            try:
                self._contracts[method["name"]] = Contract(_spec(method, runtime))
            except (UnsupportedAnnotation, TypeError):
                # Types msgspec cannot check as rebuilt here (a union of two
                # object types, say): the server checks that function alone.
                continue

    def __contains__(self, name: object) -> bool:
        return name in self._contracts

    def check(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> None:
        """Raise ``InvalidArguments`` if a call of ``name`` does not fit its contract.

        A function the document does not list is the server's to judge.
        """
        contract = self._contracts.get(name)
        if contract is not None:
            contract.bind(tuple(args), kwargs or {})


def _spec(method: Mapping[str, Any], runtime: Runtime) -> FunctionSpec:
    params = []
    for param in method.get("params", []):
        schema = param.get("schema", {})
        annotation = runtime.type_of(shape(schema))
        required = bool(param.get("required"))
        default = REQUIRED
        if not required and isinstance(schema, Mapping) and "default" in schema:
            default = runtime.default_of(schema, annotation)
        params.append(ParamSpec(param["name"], annotation, required, default, "positional"))
    result = runtime.type_of(shape((method.get("result") or {}).get("schema", {})))
    return FunctionSpec(
        method["name"],
        method.get("x-python", method["name"]),
        method.get("description", ""),
        tuple(params),
        result,
        stream=bool(method.get("x-stream")),
        deprecated=method.get("x-deprecated-message") if method.get("deprecated") else None,
    )


def client_contracts(schema: Any) -> ClientContracts:
    """Return ``schema`` as ``ClientContracts``: a document, or contracts made already."""
    return schema if isinstance(schema, ClientContracts) else ClientContracts(schema)


class TypedRPCClient:
    """What mypy sees of ``RPCClient`` as a generated ``Client``'s base (never instantiated)."""

    def __init__(
        self, endpoints: str | Sequence[str], *, schema: Any = None, **options: Any
    ) -> None:
        raise NotImplementedError

    def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        raise NotImplementedError

    def connections(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Client) -> _Client:
        raise NotImplementedError

    def __exit__(self, *exc_info: Any) -> None:
        raise NotImplementedError


class TypedAsyncRPCClient:
    """What mypy sees of ``AsyncRPCClient`` as a generated ``AsyncClient``'s base."""

    def __init__(
        self, endpoints: str | Sequence[str], *, schema: Any = None, **options: Any
    ) -> None:
        raise NotImplementedError

    async def call(
        self,
        name: str,
        /,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool | None = None,
        kwargs: dict[str, Any] | None = None,
        **more: Any,
    ) -> Any:
        raise NotImplementedError

    def connections(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _Client) -> _Client:
        raise NotImplementedError

    async def __aexit__(self, *exc_info: Any) -> None:
        raise NotImplementedError
