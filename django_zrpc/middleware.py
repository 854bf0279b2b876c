"""Server middleware that keeps Django healthy around every RPC call.

A middleware is an object whose method names are zerorpc's hook names
(``server_before_exec``, ``server_after_exec``, ``server_inspect_exception``,
...), plus django_zrpc's ``server_after_call``. ``ZRPC_MIDDLEWARE`` lists them
by dotted path; each is instantiated once with no arguments, and may raise
``django.core.exceptions.MiddlewareNotUsed`` to switch itself off.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

from django_zrpc.exceptions import LostRemote

logger = logging.getLogger("django_zrpc.server")


class CloseOldConnectionsMiddleware:
    """Close unusable or obsolete DB connections before and after every call.

    This is what Django does around every HTTP request (``request_started`` and
    ``request_finished``). It honours ``CONN_MAX_AGE``: with 0 no connection
    outlives its call; with more, the worker's connection is reused until it
    is too old, broken, or was left in a bad transaction state. With
    ``CONN_HEALTH_CHECKS = True`` a persistent connection that the database
    dropped is replaced before the next call uses it.
    """

    def __init__(self) -> None:
        connection_created.connect(_opened, dispatch_uid="django_zrpc.connection_opened")

    def server_before_exec(self, request_event: Any) -> None:
        _close_old_connections()

    def server_worker_idle(self) -> bool:
        """Close this idle worker's connections past ``CONN_MAX_AGE``; say whether any is left.

        A worker that takes no call for a while would otherwise keep its
        connection open for good, and with it a database backend.
        """
        _close_old_connections()
        return _opened_here()

    def server_after_call(self, request_event: Any, exc_info: Any) -> None:
        # After the reply or error is sent, also for streams (after their last
        # item) and for calls whose caller was lost mid-call.
        if exc_info is None:
            _close_old_connections()
            return
        if _interrupted(exc_info[1]):
            # The call was stopped from outside, perhaps in the middle of a
            # query: the driver may still consider it running, and Django does
            # not count this as a database error. Closing alone would leave the
            # query running in the database: cancel it, then start afresh.
            for connection in connections.all(initialized_only=True):
                _cancel_query(connection.connection)
                connection.close()
        # After any error, sweep whatever the flag says: a connection whose
        # set-up failed half-way is open without connection_created sent.
        _close_old_connections(force=True)


# Whether this thread (under runrpc: this worker greenlet, as gevent patches
# threading.local) has opened a database connection that may still be open.
# Django's close_old_connections() looks every alias up in asgiref's Local,
# which was a sixth of the server's CPU for a call that used no database; a
# worker that holds no connection has nothing to close.
class _State(threading.local):
    # A class default: a missing attribute of gevent's local costs an
    # AttributeError, 1.6 us, and the flag is read twice a call.
    opened = False


_state = _State()


def _opened(sender: Any, connection: Any, **kwargs: Any) -> None:
    _state.opened = True


def _opened_here() -> bool:
    return _state.opened


def _close_old_connections(force: bool = False) -> None:
    if not (force or _opened_here()):
        return
    close_old_connections()
    _state.opened = any(c.connection is not None for c in connections.all(True))


def _cancel_query(raw_connection: Any) -> None:
    # psycopg 3.2+ has cancel_safe() (cooperative under gevent); psycopg 3.1
    # and psycopg2 have cancel().
    cancel = getattr(raw_connection, "cancel_safe", None) or getattr(raw_connection, "cancel", None)
    if cancel is None:
        return
    try:
        cancel()
    except Exception as err:
        logger.warning("Cancelling the query of an interrupted call failed: %s", err)


def _interrupted(error: BaseException) -> bool:
    return isinstance(error, LostRemote) or not isinstance(error, Exception)
