"""The registry of RPC functions: name -> function, filled by ``@rpc.register()``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django_zrpc.contracts.signature import FunctionSpec, spec_of
from django_zrpc.exceptions import DuplicateRPCName, InvalidRPCName, ZRPCConfigurationError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RPCFunction:
    """One registered function and how it is served."""

    name: str
    func: Callable[..., Any]
    stream: bool = False
    blocking: bool = False
    #: Why the function is kept and what to call instead; None when it is current.
    deprecated: str | None = None
    #: Whether its type hints are checked on each call (its contract).
    validate: bool = True
    #: Whether it serves only calls made for an active user.
    login_required: bool = False
    #: The permissions (``"app.codename"``) its caller's user must all have.
    permission_required: tuple[str, ...] = ()
    #: ``allow(call)``: whether the call (its ``CallContext``) may run.
    allow: Callable[[Any], bool] | None = None

    @property
    def requirement(self) -> str:
        """What a caller needs, in words ("" for nothing): for rpclist and the docs."""
        needs = []
        if self.login_required:
            needs.append("login")
        if self.permission_required:
            needs.append("perm " + ", ".join(self.permission_required))
        if self.allow is not None:
            needs.append("allow " + getattr(self.allow, "__qualname__", repr(self.allow)))
        return "; ".join(needs)

    @functools.cached_property
    def spec(self) -> FunctionSpec | None:
        """Its contract, read from its type hints on first use; None without annotations.

        Read lazily: hints may name classes defined after the function.
        Raises ``UnsupportedAnnotation`` when they cannot be resolved.
        """
        return spec_of(
            self.func,
            self.name,
            stream=self.stream,
            blocking=self.blocking,
            deprecated=self.deprecated,
            requires=self.requirement,
        )

    @property
    def module(self) -> str:
        return getattr(self.func, "__module__", "?")

    @property
    def qualname(self) -> str:
        return f"{self.module}.{getattr(self.func, '__qualname__', repr(self.func))}"


def validate_name(name: object) -> str:
    """Return ``name`` if zerorpc can route it, else raise ``InvalidRPCName``."""
    if not isinstance(name, str):
        raise InvalidRPCName(f"RPC name {name!r} is not a string; pass name='...' as a str.")
    if not name or name != name.strip():
        raise InvalidRPCName(
            f"RPC name {name!r} is empty or has surrounding white space; "
            "choose a name like 'get_ticket'."
        )
    if name.startswith("_"):
        # zerorpc reserves leading underscores for its own events and
        # built-ins (_zpc_hb, _zpc_more, _zerorpc_list, ...).
        raise InvalidRPCName(
            f"RPC name {name!r} starts with '_', which zerorpc reserves for its "
            "own events and built-ins; rename it."
        )
    return name


class Registry:
    """Map RPC names to functions; ``register`` is the decorator users see."""

    def __init__(self) -> None:
        self._functions: dict[str, RPCFunction] = {}

    def register(
        self,
        name: str | None = None,
        *positional: object,
        stream: bool = False,
        blocking: bool = False,
        deprecated: str | None = None,
        validate: bool = True,
        login_required: bool = False,
        permission_required: str | Sequence[str] = (),
        allow: Callable[[Any], bool] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function under ``name`` (default: its own name).

        With ``stream=True`` the function returns an iterable and callers
        receive it as a zerorpc stream. With ``blocking=True`` it runs in an OS
        thread of gevent's thread pool, so that CPU-bound work does not stop
        the server's heartbeats and other calls. With ``deprecated="use
        place_order_v2"`` it is marked so in the schema, and its callers are
        warned in the log. Its type hints are its contract: arguments are
        checked and converted before it runs, unless ``validate=False``.
        ``login_required=True``, ``permission_required="app.codename"`` (or a
        list, checked with ``user.has_perms``) and ``allow=callable`` (given
        the call's ``CallContext``) refuse calls, before they run, with
        ``PermissionDenied`` (``docs/identity.rst``). The function is
        returned unchanged.
        """
        _check_flags(name, positional, stream, blocking)

        def decorator(func: F) -> F:
            rpc_name = func.__name__ if name is None else name
            _check_deprecated(rpc_name, deprecated)
            permissions = _permissions(rpc_name, permission_required)
            _check_allow(rpc_name, allow)
            entry = RPCFunction(
                validate_name(rpc_name),
                func,
                stream=stream,
                blocking=blocking,
                deprecated=deprecated,
                validate=validate,
                login_required=bool(login_required),
                permission_required=permissions,
                allow=allow,
            )
            self.add(entry)
            return func

        return decorator

    def add(self, entry: RPCFunction) -> None:
        """Add ``entry``; registering the same function again is a no-op."""
        existing = self._functions.get(entry.name)
        if existing is not None and not _same_function(existing, entry):
            raise DuplicateRPCName(
                f"RPC name {entry.name!r} is registered twice: by {existing.qualname} "
                f"and by {entry.qualname}. Pass a different name= to one of them."
            )
        self._functions[entry.name] = entry

    def unregister(self, name: str) -> None:
        """Remove ``name``; raise ``KeyError`` if it is not registered."""
        del self._functions[name]

    def __getitem__(self, name: str) -> RPCFunction:
        return self._functions[name]

    def get(self, name: str) -> RPCFunction | None:
        return self._functions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[RPCFunction]:
        return iter(sorted(self._functions.values(), key=lambda entry: entry.name))

    def __len__(self) -> int:
        return len(self._functions)


def _check_flags(
    name: object, positional: tuple[object, ...], stream: bool, blocking: bool
) -> None:
    if positional:
        # A flag given by position reads as nothing at the call site
        # (register("charges", True)): the flags are keyword-only.
        flags = ", ".join(
            f"{flag}={value!r}"
            for flag, value in zip(("stream", "blocking"), positional, strict=False)
        )
        raise TypeError(
            f"rpc.register takes its flags by keyword: write "
            f"@rpc.register({name!r}, {flags}), not "
            f"@rpc.register({', '.join(map(repr, (name, *positional)))})."
        )
    if stream and blocking:
        raise ZRPCConfigurationError(
            "blocking=True is not supported for streams: a stream sends as it "
            "iterates, on the event loop. Compute in a blocking function, or "
            "yield from a generator that does little work per item."
        )
    if callable(name):
        raise TypeError("rpc.register must be called: write @rpc.register(), not @rpc.register.")


def _check_deprecated(name: str, deprecated: object) -> None:
    if deprecated is not None and (not isinstance(deprecated, str) or not deprecated):
        raise ZRPCConfigurationError(
            f"deprecated= of rpc {name!r} must say what to use instead, as a "
            "non-empty str: deprecated='use place_order_v2'."
        )


def _permissions(name: str, required: object) -> tuple[str, ...]:
    listed = (required,) if isinstance(required, str) else required
    if not isinstance(listed, list | tuple) or not all(
        isinstance(p, str) and p.count(".") == 1 for p in listed
    ):
        raise ZRPCConfigurationError(
            f"permission_required= of rpc {name!r} must be 'app_label.codename' or a list "
            f"of them, not {required!r}."
        )
    return tuple(listed)


def _check_allow(name: str, allow: object) -> None:
    if allow is not None and not callable(allow):
        raise ZRPCConfigurationError(
            f"allow= of rpc {name!r} must be a callable taking the call's CallContext, "
            f"not {allow!r}."
        )


def _same_function(a: RPCFunction, b: RPCFunction) -> bool:
    # A module executed again (importlib.reload, or a test importing it anew)
    # registers new function objects under the same qualified name: that is a
    # re-registration, not a clash.
    flags = (a.stream, a.blocking, a.deprecated, a.validate, a.requirement)
    return flags == (b.stream, b.blocking, b.deprecated, b.validate, b.requirement) and (
        a.func is b.func or a.qualname == b.qualname
    )


#: The process-wide registry that ``rpcs.py`` modules fill and runrpc serves.
rpc = Registry()
