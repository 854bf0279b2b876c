"""``call_local``: one call of a registered function as ``runrpc`` serves it, in this process.

No socket and no worker: the call's context (``current_call()``, the
caller's language), the middleware's hooks in their order, the function's
contract (its arguments checked and converted, its result encoded), the wire
encoding of arguments and result, and the error a caller would get in place
of the function's own exception. For tests, where a real server is more than the
test needs.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.utils import translation

from django_zrpc import conf
from django_zrpc import context as call_context
from django_zrpc.context import CallContext
from django_zrpc.context import _current as _current_call
from django_zrpc.registry import Registry, RPCFunction, rpc
from django_zrpc.server import build
from django_zrpc.server.builtins import unknown_function
from django_zrpc.server.calls import ServedFunction, activate_language, split_kwargs
from django_zrpc.server.hooks import Hooks
from django_zrpc.wire import protocol, remote_errors, values

_unpacker = protocol.Unpacker()


def _sent(name: str, args: Any, header: dict[str, Any]) -> protocol.Event:
    """Return the event as the other side reads it: packed with django_zrpc's types, unpacked."""
    return _unpacker.unpack(protocol.pack(name, args, header))


def _middleware(paths: Sequence[str] | None) -> list[Any]:
    if paths is None:
        paths = conf.get("MIDDLEWARE")
        if any(connections[alias].in_atomic_block for alias in connections):
            # Inside a test's transaction (TestCase) the database middleware
            # would close the test's connection and lose what it wrote, as
            # Django's test client leaves close_old_connections out for its
            # requests.
            paths = [path for path in paths if path != conf.DB_MIDDLEWARE]
    return build.load_middleware(paths)


def call_local(
    name: str,
    /,
    *args: Any,
    registry: Registry = rpc,
    middleware: Sequence[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``name`` as the server would and return what a caller gets: a value, or a list.

    ``middleware``: dotted paths instead of ``ZRPC_MIDDLEWARE``. A stream's
    items come back as a list. An exception raised by the function is raised
    as the caller's client would raise it (``RemoteError``, or the class the
    error codec maps it to); ``NameError`` for a name that is not registered.
    """
    header = {
        "message_id": uuid.uuid4().hex,
        "v": protocol.PROTOCOL_VERSION,
        **call_context.outgoing(None),
    }
    sent = [*args, values.Kwargs(kwargs)] if kwargs else list(args)
    request = _sent(name, sent, header)
    hooks = Hooks(_middleware(middleware))
    context = CallContext.from_header(name, request.header, None, None)
    token = _current_call.set(context)
    language = activate_language(context.language)
    exc_info: Any = None
    try:
        hooks.call("load_task_context", request.header)
        if name not in registry:
            raise NameError(unknown_function(name, [entry.name for entry in registry]))
        served = _served(registry[name])
        hooks.call("server_before_exec", request)
        result = _run(served, request)
        reply = _sent(protocol.OK, [result], {**header, "response_to": request.message_id})
        hooks.call("server_after_exec", request, reply)
        return reply.args[0]
    except Exception:
        exc_info = sys.exc_info()
        raise _as_caller_sees(request, hooks, exc_info) from None
    finally:
        try:
            hooks.call("server_after_call", request, exc_info)
        finally:
            del exc_info
            if language:
                translation.deactivate()
            _current_call.reset(token)


def _served(entry: RPCFunction) -> ServedFunction:
    """Return ``entry`` as runrpc serves it (its contract, its deprecation), in this thread."""
    served = build.served(entry, bool(conf.get("CHECK_RESULTS")))
    # runrpc runs a blocking function in a thread of its own, with database
    # connections of its own that it closes; here it runs in the test's.
    served.func = entry.func
    return served


def _run(served: ServedFunction, request: protocol.Event) -> Any:
    """Run the function as a worker does (its contract first); return its result or items."""
    args, kwargs = split_kwargs(request.args)
    admit = served.admit
    if admit is not None:
        args, kwargs = admit(args, kwargs)
    contract = served.contract if admit is not None else None
    if served.stream:
        items = served(*args, **kwargs)
        return list(items) if contract is None else [contract.encode_item(i) for i in items]
    result = served(*args, **kwargs)
    return result if contract is None else contract.encode_result(result)


def _as_caller_sees(request: protocol.Event, hooks: Hooks, exc_info: Any) -> Exception:
    """Run the error hooks as the server does; return what the caller's client would raise."""
    error = exc_info[1]
    message = str(error)
    detail = remote_errors.encode(error)
    header = {"response_to": request.message_id, **request.header}
    if detail is not None:
        header[remote_errors.HEADER] = detail
    reply = protocol.Event(protocol.ERR, [type(error).__name__, message, None], header)
    hooks.call("server_inspect_exception", request, reply, hooks.get_task_context(), exc_info)
    return remote_errors.decode(type(error).__name__, message, None, detail)
