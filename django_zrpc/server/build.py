"""Build the RPC server from the registry, the settings and the middleware list.

The server is django_zrpc's own implementation of zerorpc's wire protocol
(``django_zrpc.server.engine``). Calls run on ``concurrency`` persistent worker
greenlets: Django keeps one database connection per greenlet, so only
persistent workers let ``CONN_MAX_AGE`` reuse a connection, and their number
bounds the connections the server can open.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string

from django_zrpc import conf
from django_zrpc.autodiscovery import raise_if_broken
from django_zrpc.contracts.validate import Contract
from django_zrpc.curve import ServerKeys
from django_zrpc.registry import Registry, RPCFunction, rpc
from django_zrpc.server.engine import ServedFunction, Server
from django_zrpc.wire.protocol import Unpacker

logger = logging.getLogger("django_zrpc.server")


def load_middleware(paths: Sequence[str]) -> list[Any]:
    """Instantiate each middleware class; one raising MiddlewareNotUsed is left out."""
    loaded = []
    for path in paths:
        factory = import_string(path)
        try:
            loaded.append(factory())
        except MiddlewareNotUsed as err:
            logger.debug("Middleware %s is not used: %s", path, err)
    return loaded


def _with_own_connections(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a blocking function: in its OS thread it opens connections of its own; close them."""

    @functools.wraps(func)
    def run_in_thread(*args: Any) -> Any:
        close_old_connections()
        try:
            return func(*args)
        finally:
            connections.close_all()

    return run_in_thread


def idle_check() -> float | None:
    """Return how often an idle worker looks for connections past ``CONN_MAX_AGE``; None: never.

    A quarter of the shortest positive ``CONN_MAX_AGE`` (between 0.5 and 5 s),
    so that an idle connection closes soon after its age passes. With 0 a
    connection ends with its call; with None it is never too old.
    """
    ages = [db.get("CONN_MAX_AGE", 0) for db in settings.DATABASES.values()]
    positive = [age for age in ages if age]
    if not positive:
        return None
    return max(0.5, min(5.0, min(positive) / 4))


def connection_limits(concurrency: int, registry: Registry = rpc, processes: int = 1) -> list[str]:
    """Return a warning for each PostgreSQL database the server could ask too many connections of.

    Each worker may hold a connection, and a ``blocking=True`` function runs
    in a thread with one of its own, beside its worker's: ``concurrency``, or
    twice that with blocking functions, in each of ``processes`` (``runrpc
    --workers``). The database admits ``max_connections`` less
    ``superuser_reserved_connections``, shared with every other process that uses it.
    """
    blocking = any(entry.blocking for entry in registry)
    most = concurrency * processes * (2 if blocking else 1)
    threads = " and as many threads for blocking functions" if blocking else ""
    workers = f"{concurrency} workers{threads}"
    if processes > 1:
        workers = f"{processes} processes of {workers}"
    warnings = []
    for alias in connections:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW max_connections")
                (allowed,) = cursor.fetchone()
                cursor.execute("SHOW superuser_reserved_connections")
                (reserved,) = cursor.fetchone()
        except Exception as err:  # the database may be down at startup: say so, go on
            warnings.append(f"Cannot read max_connections of database {alias!r}: {err}")
            continue
        admitted = int(allowed) - int(reserved)
        if most > admitted:
            warnings.append(
                f"runrpc may open up to {most} connections to database {alias!r} "
                f"({workers}), and it admits {admitted} "
                f"(max_connections {allowed}, {reserved} reserved), shared with every other "
                "process: lower --concurrency (ZRPC_CONCURRENCY) or raise max_connections."
            )
    return warnings


def build_server(
    *,
    heartbeat: float | None = None,
    concurrency: int | None = None,
    backlog: int | None = None,
    registry: Registry = rpc,
    curve: ServerKeys | None = None,
    check_results: bool | None = None,
    **overrides: Any,
) -> Server:
    """Return an unbound server for every registered function, per the settings.

    ``overrides`` replace the settings' values of ``Server``'s other keyword
    arguments (``middleware``, ``on_worker_exit``, ``stall_after`` ...), and
    ``check_results`` that of ``ZRPC_CHECK_RESULTS``. Raise
    ``BrokenRPCModule`` for the project's registry if an app's rpcs.py failed
    to import: a server without its functions would answer "unknown function".
    """
    if registry is rpc:
        raise_if_broken()
    options: dict[str, Any] = {
        "name": conf.get("SERVER_NAME"),
        "heartbeat": heartbeat if heartbeat is not None else conf.get("HEARTBEAT"),
        "concurrency": concurrency if concurrency is not None else conf.get("CONCURRENCY"),
        "backlog": backlog if backlog is not None else conf.get("BACKLOG"),
        "unpacker": Unpacker(
            max_event_bytes=conf.get("MAX_MESSAGE_BYTES"),
            max_container_len=conf.get("MAX_CONTAINER_LEN"),
            max_containers=conf.get("MAX_CONTAINERS"),
        ),
        # A worker's connections belong to its greenlet: close them with it.
        "on_worker_exit": connections.close_all,
        "log_calls": conf.get("LOG_CALLS"),
        "send_tracebacks": conf.get("SEND_TRACEBACKS"),
        "builtins": conf.get("BUILTINS"),
        "curve": curve,
        "idle_check": idle_check(),
        **overrides,
    }
    if "middleware" not in options:
        options["middleware"] = load_middleware(conf.get("MIDDLEWARE"))
    if check_results is None:
        check_results = bool(conf.get("CHECK_RESULTS"))
    return Server({entry.name: served(entry, check_results) for entry in registry}, **options)


def served(entry: RPCFunction, check_results: bool = False) -> ServedFunction:
    """Return how the server calls ``entry``: with its contract, unless it has none.

    Raise ``UnsupportedAnnotation`` when its hints cannot be checked: a
    server that would refuse every call to a function should not start.
    """
    spec = entry.spec if entry.validate else None
    return ServedFunction(
        _with_own_connections(entry.func) if entry.blocking else entry.func,
        entry.stream,
        entry.blocking,
        contract=None if spec is None else Contract(spec, check_results=check_results),
        deprecated=entry.deprecated,
        name=entry.name,
    )
