"""Report exceptions raised by RPC functions to Sentry with sentry-sdk.

Configure sentry-sdk as usual (``sentry_sdk.init(...)`` in settings.py); this
middleware is in the default ``ZRPC_MIDDLEWARE`` whenever sentry-sdk is
installed, and switches itself off when ``sentry_sdk.init()`` did not run.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed

from django_zrpc.exceptions import InvalidArguments

try:
    import sentry_sdk
    from sentry_sdk.utils import event_from_exception
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImproperlyConfigured(
        'django_zrpc.contrib.sentry needs sentry-sdk: pip install "django-zrpc[sentry]"'
    ) from err

# sentry-sdk 2 takes the client's options as an argument; sentry-sdk 3 reads
# them from the current client itself and refuses the argument. Without them
# sentry-sdk 2 would ignore the user's own options (include_local_variables,
# max_value_length...), so they are passed wherever they are still taken.
_TAKES_CLIENT_OPTIONS = "client_options" in inspect.signature(event_from_exception).parameters


class SentryMiddleware:
    """Capture every exception an RPC function raises, tagged with its RPC name.

    A call refused by its function's contract (``InvalidArguments``) never
    ran the function, and is not reported.
    """

    def __init__(self) -> None:
        if not sentry_sdk.get_client().is_active():
            raise MiddlewareNotUsed("sentry_sdk.init() was not called.")

    def server_inspect_exception(
        self, request_event: Any, reply_event: Any, task_context: Any, exc_info: Any
    ) -> None:
        if isinstance(exc_info[1], InvalidArguments):
            # Refused before the function ran: the caller's mistake, which
            # the caller gets as an error, not a fault of this service.
            return
        client = sentry_sdk.get_client()
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("rpc", request_event.name)
            scope.set_transaction_name(f"rpc {request_event.name}")
            scope.set_context("rpc", {"name": request_event.name, "context": task_context})
            options = {"client_options": client.options} if _TAKES_CLIENT_OPTIONS else {}
            event, hint = event_from_exception(
                tuple(exc_info),  # zerorpc passes a list
                mechanism={"type": "django_zrpc", "handled": False},
                **options,
            )
            sentry_sdk.capture_event(event, hint=hint)
